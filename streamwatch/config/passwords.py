"""Stored passwords and tokens: `pbkdf2_sha256$ITERATIONS$SALT$HASH`, made by `streamwatch
hash-password`, checked when config.toml is loaded (so that no login can fail on a malformed hash
later) and verified by the web UI and `streamwatch serve`. Standard library only."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

ALGORITHM = "pbkdf2_sha256"
ITERATIONS = 200_000
MIN_ITERATIONS, MAX_ITERATIONS = 10_000, 2_000_000  # below: weak; above: seconds per login
MAX_SECRET_CHARS = 1024  # a longer password or token is refused without hashing it


def hash_secret(secret: str, *, iterations: int = ITERATIONS) -> str:
    """`pbkdf2_sha256$ITERATIONS$SALT$HASH` (salt and hash in base64): what goes in config.toml."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, iterations)
    return f"{ALGORITHM}${iterations}${b64(salt)}${b64(digest)}"


def hash_problem(value: str) -> str | None:
    """Why `value` is not a usable stored hash (so that no login can fail on it later), or None."""
    parts = value.split("$")
    if len(parts) != 4 or parts[0] != ALGORITHM:
        return "expected pbkdf2_sha256$ITERATIONS$SALT$HASH, not a password"
    iterations, salt, digest = parts[1:]
    if not iterations.isdigit() or not MIN_ITERATIONS <= int(iterations) <= MAX_ITERATIONS:
        return f"the iteration count must be a number from {MIN_ITERATIONS} to {MAX_ITERATIONS}"
    try:
        salt_bytes, digest_bytes = unb64(salt), unb64(digest)
    except ValueError:
        return "the salt and the hash must be base64"
    if len(salt_bytes) < 8 or len(digest_bytes) != 32:
        return "the salt must hold at least 8 bytes and the hash 32 (SHA-256)"
    return None


def verify_secret(secret: str, stored: str) -> bool:
    if hash_problem(stored) is not None or len(secret) > MAX_SECRET_CHARS:
        return False
    _, iterations, salt, digest = stored.split("$")
    candidate = hashlib.pbkdf2_hmac("sha256", secret.encode(), unb64(salt), int(iterations))
    return hmac.compare_digest(candidate, unb64(digest))


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64(text: str) -> bytes:
    """Base64 (URL-safe alphabet, padding optional); ValueError for anything else."""
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
