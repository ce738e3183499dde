"""Signed session cookies and CSRF tokens (stored passwords and tokens: streamwatch.config.passwords).
Standard library only."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time

from streamwatch.config.passwords import b64, unb64

MAX_REVOKED = 100_000  # logged-out sessions remembered until they expire


class Signer:
    """Signed, expiring session cookies and per-session CSRF tokens. The key lives in memory: a
    restart logs everyone out, and nothing secret is ever written to disk."""

    def __init__(self, max_age_s: float, key: bytes | None = None) -> None:
        self.key = key or secrets.token_bytes(32)
        self.max_age_s = max_age_s
        self._revoked: dict[str, float] = {}  # session id -> its expiry: logged out before it ran out

    def revoke(self, cookie: str | None) -> None:
        """Log a session out for good (until its expiry, after which it is refused anyway)."""
        data = self.load(cookie)
        if data is None:
            return
        now = time.time()
        self._revoked = {sid: until for sid, until in self._revoked.items() if until > now}
        if len(self._revoked) >= MAX_REVOKED:  # more logouts than anyone makes: start over, everyone logs in again
            self.key, self._revoked = secrets.token_bytes(32), {}
            return
        self._revoked[str(data.get("sid"))] = float(data.get("exp", now))  # type: ignore[arg-type]

    def _mac(self, data: bytes) -> str:
        return b64(hmac.new(self.key, data, hashlib.sha256).digest())

    def session(self, user: str = "operator") -> str:
        payload = b64(
            json.dumps({"u": user, "sid": secrets.token_hex(8), "exp": time.time() + self.max_age_s}).encode()
        )
        return f"{payload}.{self._mac(payload.encode())}"

    def load(self, cookie: str | None) -> dict[str, object] | None:
        """The session's data, or None when the cookie is missing, forged or expired."""
        if not cookie or "." not in cookie:
            return None
        payload, mac = cookie.rsplit(".", 1)
        if not hmac.compare_digest(mac, self._mac(payload.encode())):
            return None
        try:
            data: dict[str, object] = json.loads(unb64(payload))
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        expires = data.get("exp")
        if not isinstance(expires, int | float) or expires <= time.time() or str(data.get("sid")) in self._revoked:
            return None
        return data

    def csrf(self, session: dict[str, object] | None) -> str:
        """A form token bound to the session (or, without login, to this server's key)."""
        sid = str(session.get("sid")) if session else "anonymous"
        return self._mac(f"csrf:{sid}".encode())

    def check_csrf(self, session: dict[str, object] | None, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token, self.csrf(session))
