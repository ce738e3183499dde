"""Who may use the web UI and API: login sessions, API tokens, CSRF, and throttled guessing.

Off loopback (or with a password/token configured) every route but /healthz, /readyz, /login and
/static needs a session cookie or `Authorization: Bearer TOKEN`; the check runs in the `Gate`
before any body is read. A token or password is checked with the slow hash once: a right token is
then remembered (by a keyed digest, never in clear) and later requests cost one HMAC; a wrong one
counts against its client (`Throttle`), and the slow hash runs only within a shared budget. Logging
out revokes the session on the server, not only in the browser.

A client is the address that connected (forwarded headers count only from `web.trusted_proxies`).
A browser that logged in once carries a device cookie (signed with a key derived from the password's
hash: it outlives restarts and ends with a password change); its logins are throttled on their own, so
guesses from the same address (another local process, the same NAT) never lock the operator out.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from streamwatch.config import WebConfig
from streamwatch.config.passwords import MAX_SECRET_CHARS, verify_secret
from streamwatch.web.auth import Signer
from streamwatch.web.gate import Throttle, client_of, too_many

OPEN_PATHS = ("/healthz", "/readyz", "/login", "/logout")
REMEMBER_S = 3600.0  # a verified token is trusted without the slow hash for this long


class Guard:
    def __init__(self, config: WebConfig, throttle: Throttle | None = None) -> None:
        self.config = config
        self.signer = Signer(config.session_hours * 3600)
        self.throttle = throttle or Throttle()
        self._key = secrets.token_bytes(32)
        self._verified: dict[str, float] = {}  # keyed digest of a right token -> until when

    # -- the Gate's check: before the body is read ------------------------------------------------
    async def check(self, request: Request) -> Response | None:
        path = request.url.path
        if not self.config.auth_required or path in OPEN_PATHS or path.startswith("/static/"):
            request.scope.setdefault("state", {})["auth"] = "open"
            return None
        if self.session(request) is not None:
            request.scope.setdefault("state", {})["auth"] = "session"
            return None
        token = bearer_token(request)
        if token:
            allowed, refusal = await self.verify(request, token, self.config.token_hash)
            if allowed:
                request.scope.setdefault("state", {})["auth"] = "token"
                return None
            if refusal is not None:
                return refusal
        if path.startswith("/api/") or path in ("/metrics", "/openapi.json"):
            return JSONResponse(
                {"detail": "login or an API token required"}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
        return RedirectResponse(f"/login?next={path}", status_code=303)

    async def verify(
        self, request: Request, secret: str, stored: str | None, *, who: str | None = None
    ) -> tuple[bool, Response | None]:
        """(right?, the response refusing a throttled client). Known-good secrets cost one HMAC. Failures
        count against `who` (a known device, which the shared hash budget does not hold up) or else the
        client's address."""
        if stored is None or not secret or len(secret) > MAX_SECRET_CHARS:
            return False, None
        digest = hmac.new(self._key, f"{stored}\0{secret}".encode(), hashlib.sha256).hexdigest()
        if self._verified.get(digest, 0.0) > time.monotonic():
            return True, None
        client = who or client_of(request)
        wait = self.throttle.retry_after(client)
        if wait > 0:
            return False, too_many(wait)
        if who is None and not self.throttle.may_hash():  # a known device has its own lockout, not this budget
            return False, too_many(1.0)
        if await asyncio.to_thread(verify_secret, secret, stored):
            if len(self._verified) > 1000:
                self._verified.clear()
            self._verified[digest] = time.monotonic() + REMEMBER_S
            return True, None
        self.throttle.failed(client)
        return False, None

    # -- devices: browsers that logged in before --------------------------------------------------
    def device(self, request: Request) -> str | None:
        """The id of the browser's device cookie when it is one this password signed, else None."""
        value = request.cookies.get(DEVICE_COOKIE, "")
        device, _, mac = value.partition(".")
        if not device or len(value) > 200 or not hmac.compare_digest(mac, self._device_mac(device)):
            return None
        return device

    def new_device(self) -> str:
        device = secrets.token_hex(12)
        return f"{device}.{self._device_mac(device)}"

    def _device_mac(self, device: str) -> str:
        key = hashlib.sha256(b"streamwatch device\0" + (self.config.password_hash or "").encode()).digest()
        return hmac.new(key, device.encode(), hashlib.sha256).hexdigest()[:32]

    # -- sessions and CSRF ------------------------------------------------------------------------
    def session(self, request: Request) -> dict[str, object] | None:
        return self.signer.load(request.cookies.get(SESSION_COOKIE))

    def csrf_ok(self, request: Request, token: str | None) -> bool:
        if request.scope.get("state", {}).get("auth") == "token":
            return True  # an API client, not a browser session: no cookie to ride on
        return self.signer.check_csrf(self.session(request), token or request.headers.get("x-csrf-token"))


SESSION_COOKIE = "sw_session"
DEVICE_COOKIE = "sw_device"
DEVICE_S = 365 * 24 * 3600


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else ""
