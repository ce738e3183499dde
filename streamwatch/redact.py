"""Keep secrets out of logs, the database, MQTT and the UI: redact what the user gave, by parsing it.

Secrets enter in a few known places (camera URLs, the MQTT password, API keys, database URLs, URLs
given on the command line). Each is registered here as it is read (`SECRETS.add_url`, `SECRETS.add`),
then masked wherever it shows up: a URL is displayed with its password replaced (`display_url`), and
free text (FFmpeg's errors, exception messages, tracebacks, every log line) has every registered
secret replaced by `***` (`scrub`), whatever characters the secret holds. A URL's password is taken
from the URL as written: everything between the first `:` after `scheme://` and the last `@`, so a
password with `#`, `?`, `/`, spaces, quotes or `@` that was not percent-encoded is still found whole
(where the path itself holds an `@`, more is masked than needed, never less).
"""

from __future__ import annotations

import logging
import re
import threading
from urllib.parse import quote, unquote

MASK = "***"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# A URL-looking credential in text streamwatch did not register (e.g. a server's error echoing one).
_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^:/\s@'\"]*):[^@\s/'\"]+@")
MIN_SCRUB_LENGTH = 3  # shorter secrets are masked in URLs, not searched for in free text


def split_userinfo(url: str) -> tuple[str, str, str] | None:
    """(`scheme://`, userinfo, rest after its `@`) of a URL as written, or None without credentials."""
    match = _SCHEME.match(url)
    if not match:
        return None
    head, tail = url[: match.end()], url[match.end() :]
    at = tail.rfind("@")
    if at < 0:
        return None
    return head, tail[:at], tail[at + 1 :]


def url_secret(url: str) -> str | None:
    """The secret part of a URL's userinfo: the password (after the first ':'), or the whole userinfo
    when it has no ':' (a token used as the user name)."""
    parts = split_userinfo(url)
    if parts is None or not parts[1]:
        return None
    user, colon, password = parts[1].partition(":")
    return password if colon else user


def display_url(url: str) -> str:
    """`rtsp://user:pass@host/x` -> `rtsp://user:***@host/x`; `https://token@host` -> `https://***@host`."""
    parts = split_userinfo(url)
    if parts is None:
        return scrub(url)
    head, userinfo, rest = parts
    user, colon, _password = userinfo.partition(":")
    shown = f"{user}:{MASK}" if colon else MASK
    return scrub(f"{head}{shown}@{rest}")


class Secrets:
    """Every secret this process was given (thread-safe); `scrub` masks them in any text."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add(self, secret: str | None) -> None:
        """Register a secret, with the forms it may take in other text (percent-encoded and decoded)."""
        if not secret:
            return
        forms = {secret, unquote(secret), quote(secret, safe=""), quote(unquote(secret), safe="")}
        forms = {form for form in forms if len(form) >= MIN_SCRUB_LENGTH}
        with self._lock:
            if forms <= self._known:
                return
            self._known |= forms
            alternatives = sorted(self._known, key=len, reverse=True)  # the longest form wins
            self._pattern = re.compile("|".join(re.escape(form) for form in alternatives))

    def add_url(self, url: str | None) -> None:
        if url:
            self.add(url_secret(url))

    def scrub(self, text: str) -> str:
        pattern = self._pattern
        return pattern.sub(MASK, text) if pattern is not None else text


SECRETS = Secrets()


def scrub(text: str) -> str:
    """Mask every registered secret in free text, and the password of any other URL in it."""
    return _CREDENTIALS.sub(r"\1:***@", SECRETS.scrub(text))


def redact_url(url: str) -> str:
    """A URL safe to show: registered as a secret holder, and displayed with its password masked."""
    SECRETS.add_url(url)
    return display_url(url)


class RedactingFormatter(logging.Formatter):
    """Log lines (tracebacks included) with every registered secret masked."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))
