"""`[[notify]]`: push notifications through Apprise (ntfy, Telegram, Pushover, Signal, email, Slack,
Discord, Matrix, webhooks, ...), routed by severity, rule, camera and event kind, with quiet hours
and a rate limit per target."""

from __future__ import annotations

import logging
import re
from datetime import time
from urllib.parse import parse_qsl, urlsplit

from pydantic import Field, field_validator

from streamwatch.config.fields import identifier
from streamwatch.config.sections import _Section
from streamwatch.redact import SECRETS
from streamwatch.vocabulary import EventKind, Severity

QUIET = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


class NotifyConfig(_Section):
    name: str = Field(description="Short id of this target group: in metrics and logs (never its URLs).")
    _name = field_validator("name")(identifier)
    urls: list[str] = Field(
        min_length=1,
        max_length=20,
        description="Apprise URLs (ntfys://, tgram://, pover://, mailtos://, json://, ...); each is its own "
        "target with its own queue. Put tokens in the environment: ${NTFY_TOPIC}.",
    )
    severities: list[Severity] = Field(default_factory=lambda: list(Severity), description="Which severities.")
    rules: list[str] = Field(default_factory=list, max_length=500, description="Rule ids; empty: every rule.")
    cameras: list[str] = Field(
        default_factory=list, max_length=500, description="Camera ids or tag:NAME; empty: every camera."
    )
    kinds: list[EventKind] = Field(default_factory=lambda: [EventKind.OPEN], description="open, update, resolved.")
    quiet_hours: str | None = Field(None, description='"22:00-07:00" (local time): nothing is sent then...')
    quiet_except: list[Severity] = Field(
        default_factory=lambda: [Severity.CRITICAL], description="...but these severities are."
    )
    max_per_hour: int = Field(30, ge=1, le=3600, description="At most this many a target an hour; the rest skipped.")
    attach: bool = Field(True, description="Attach the snapshot (and link the clip, with web.public_url).")
    attach_clip: bool = Field(
        False, description="Also attach the alert's clip: an open alert's notification then waits for it."
    )
    wait_for_description_s: float = Field(
        0.0,
        ge=0,
        le=120,
        description="An open alert of a rule with `describe`: wait up to this long for its description "
        "(0: send at once; the description follows as an update, for targets that route updates).",
    )

    @field_validator("urls")
    @classmethod
    def _urls(cls, urls: list[str]) -> list[str]:
        for index, url in enumerate(urls):
            _register(url)
            if "://" not in url or len(url) > 2000:
                raise ValueError("each url is an Apprise URL such as ntfys://TOPIC or mailtos://user:pass@host")
            if not _apprise_parses(url):
                scheme = url.split("://", 1)[0]
                raise ValueError(
                    f"url {index + 1} ({scheme}://...) is not a URL Apprise can use: check its form for the "
                    "service (https://github.com/caronc/apprise/wiki) and that its ${...} variables are set"
                )
        return urls

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, value: str | None) -> str | None:
        if value is not None and not QUIET.match(value):
            raise ValueError('expected "HH:MM-HH:MM", e.g. "22:00-07:00"')
        return value

    def quiet_at(self, moment: time) -> bool:
        """Whether `moment` (local time of day) falls in the quiet hours (which may span midnight)."""
        if self.quiet_hours is None:
            return False
        start_text, end_text = self.quiet_hours.split("-")
        start, end = time.fromisoformat(start_text), time.fromisoformat(end_text)
        return start <= moment < end if start <= end else moment >= start or moment < end


def _apprise_parses(url: str) -> bool:
    """Whether Apprise understands `url` (its service, and the parts that service needs); Apprise's own
    complaint, which may show the URL, is kept out of the log."""
    import apprise

    quiet = logging.getLogger("apprise")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL + 1)
    try:
        return apprise.Apprise.instantiate(url, suppress_exceptions=True) is not None
    finally:
        quiet.setLevel(level)


def _register(url: str) -> None:
    """An Apprise URL holds its token, in places that differ by service (the user, the password, the
    "host" of ntfy and Telegram URLs, a path segment, a query value): the whole URL and each of those
    parts the user wrote (but host names and short words) are masked wherever they would be shown."""
    SECRETS.add(url)
    parts = urlsplit(url)
    pieces = re.split(r"[@:]", parts.netloc) + parts.path.split("/")
    pieces += [value for _key, value in parse_qsl(parts.query)]
    for piece in pieces:
        if len(piece) >= 8 and "." not in piece:
            SECRETS.add(piece)
