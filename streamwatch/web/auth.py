"""Passwords and tokens (stored hashed), signed session cookies and CSRF tokens. Standard library only."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time

ALGORITHM = "pbkdf2_sha256"
ITERATIONS = 200_000


def hash_secret(secret: str, *, iterations: int = ITERATIONS) -> str:
    """`pbkdf2_sha256$ITERATIONS$SALT$HASH` (salt and hash in base64): what goes in config.toml."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, iterations)
    return f"{ALGORITHM}${iterations}${_b64(salt)}${_b64(digest)}"


def is_hash(value: str) -> bool:
    parts = value.split("$")
    return len(parts) == 4 and parts[0] == ALGORITHM and parts[1].isdigit()


def verify_secret(secret: str, stored: str) -> bool:
    if not is_hash(stored):
        return False
    _, iterations, salt, digest = stored.split("$")
    candidate = hashlib.pbkdf2_hmac("sha256", secret.encode(), _unb64(salt), int(iterations))
    return hmac.compare_digest(candidate, _unb64(digest))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """Signed, expiring session cookies and per-session CSRF tokens. The key lives in memory: a
    restart logs everyone out, and nothing secret is ever written to disk."""

    def __init__(self, max_age_s: float, key: bytes | None = None) -> None:
        self.key = key or secrets.token_bytes(32)
        self.max_age_s = max_age_s

    def _mac(self, data: bytes) -> str:
        return _b64(hmac.new(self.key, data, hashlib.sha256).digest())

    def session(self, user: str = "operator") -> str:
        payload = _b64(
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
            data: dict[str, object] = json.loads(_unb64(payload))
        except ValueError:
            return None
        expires = data.get("exp")
        return data if isinstance(expires, int | float) and expires > time.time() else None

    def csrf(self, session: dict[str, object] | None) -> str:
        """A form token bound to the session (or, without login, to this server's key)."""
        sid = str(session.get("sid")) if session else "anonymous"
        return self._mac(f"csrf:{sid}".encode())

    def check_csrf(self, session: dict[str, object] | None, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token, self.csrf(session))
