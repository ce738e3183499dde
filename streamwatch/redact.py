"""Keep secrets out of logs, the database and the UI."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^:/\s@'\"]*):[^@\s/'\"]+@")


def redact_url(url: str) -> str:
    """`rtsp://user:pass@host/x` -> `rtsp://user:***@host/x`; anything unparsable is returned masked."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    if parts.password is None and "@" not in parts.netloc:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{user}:***@{host}" if user else f"***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def scrub(text: str) -> str:
    """Mask the password of every URL inside free text, e.g. an FFmpeg error message."""
    return _CREDENTIALS.sub(r"\1:***@", text)
