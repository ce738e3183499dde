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
MIN_ITERATIONS, MAX_ITERATIONS = 10_000, 2_000_000  # below: weak; above: seconds per login
MAX_SECRET_CHARS = 1024  # a longer password or token is refused without hashing it
MAX_REVOKED = 100_000  # logged-out sessions remembered until they expire


def hash_secret(secret: str, *, iterations: int = ITERATIONS) -> str:
    """`pbkdf2_sha256$ITERATIONS$SALT$HASH` (salt and hash in base64): what goes in config.toml."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, iterations)
    return f"{ALGORITHM}${iterations}${_b64(salt)}${_b64(digest)}"


def hash_problem(value: str) -> str | None:
    """Why `value` is not a usable stored hash (so that no login can fail on it later), or None."""
    parts = value.split("$")
    if len(parts) != 4 or parts[0] != ALGORITHM:
        return "expected pbkdf2_sha256$ITERATIONS$SALT$HASH, not a password"
    iterations, salt, digest = parts[1:]
    if not iterations.isdigit() or not MIN_ITERATIONS <= int(iterations) <= MAX_ITERATIONS:
        return f"the iteration count must be a number from {MIN_ITERATIONS} to {MAX_ITERATIONS}"
    try:
        salt_bytes, digest_bytes = _unb64(salt), _unb64(digest)
    except ValueError:
        return "the salt and the hash must be base64"
    if len(salt_bytes) < 8 or len(digest_bytes) != 32:
        return "the salt must hold at least 8 bytes and the hash 32 (SHA-256)"
    return None


def verify_secret(secret: str, stored: str) -> bool:
    if hash_problem(stored) is not None or len(secret) > MAX_SECRET_CHARS:
        return False
    _, iterations, salt, digest = stored.split("$")
    candidate = hashlib.pbkdf2_hmac("sha256", secret.encode(), _unb64(salt), int(iterations))
    return hmac.compare_digest(candidate, _unb64(digest))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    """Base64 (URL-safe alphabet, padding optional); ValueError for anything else."""
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


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
