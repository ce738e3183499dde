"""Fetching an image URL for `streamwatch serve`, on the operator's terms.

Off unless `serve.fetch_image_urls = true`. Then only http(s) URLs whose host matches
`serve.fetch_allow_hosts` (any host when the list is empty), and only to public addresses: every
address the name resolves to is checked, and loopback, private, link-local (cloud metadata), carrier
NAT, multicast and reserved ones are refused unless `serve.fetch_allow_private = true`. The
connection goes to the address that was checked (a second DNS answer cannot swap it), redirects are
followed by hand (at most `MAX_REDIRECTS`) and each hop is checked again, and the whole fetch has
one deadline and one size cap. The deadline holds against a peer that trickles a byte (or a header
line) at a time: a watchdog closes the connection when it passes, wherever the read is. Whatever
goes wrong on the network side, the caller gets the same message, so a client cannot map which hosts
and ports answer; the log says what happened.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from fnmatch import fnmatchcase
from urllib.parse import urljoin, urlsplit

from streamwatch.errors import InputError
from streamwatch.redact import redact_url
from streamwatch.serve.errors import ApiError

log = logging.getLogger(__name__)

MAX_REDIRECTS = 3
PARAM = "messages[].content[].image_url"
NOT_FETCHED = (
    "image_url could not be fetched: this server fetches only public http(s) image URLs it is "
    "allowed to, that answer with an image; send the image as a data: URI instead"
)


@dataclass(frozen=True)
class FetchPolicy:
    enabled: bool = False
    allow_hosts: tuple[str, ...] = ()  # globs, e.g. "*.example.com"; empty: any host
    allow_private: bool = False
    max_bytes: int = 20_000_000
    timeout_s: float = 10.0


class UrlRefused(InputError):
    """Why a fetch did not happen or failed; logged, never shown to the client."""


def fetch(url: str, policy: FetchPolicy) -> bytes:
    """The body of an allowed image URL, or ApiError: 400 with what to change (fetching off, a
    scheme or host the policy names), the uniform 400 for everything else, 413 when too large."""
    if not policy.enabled:
        raise ApiError(
            400,
            "this server does not fetch image URLs (serve.fetch_image_urls = false): send the image as a data: URI",
            PARAM,
        )
    deadline = time.monotonic() + policy.timeout_s
    watchdog = _Watchdog(policy.timeout_s)
    try:
        for _hop in range(MAX_REDIRECTS + 1):
            status, location, body = _get(url, policy, deadline, watchdog)
            if location is None:
                if status != 200:
                    raise UrlRefused(f"HTTP {status}")
                return body
            url = urljoin(url, location)
        raise UrlRefused(f"more than {MAX_REDIRECTS} redirects")
    except UrlRefused as exc:
        reason = f"timed out after {policy.timeout_s:g} s (serve.fetch_timeout_s)" if watchdog.fired else exc
        log.info("serve: image URL %s not fetched: %s", redact_url(url), reason)
        raise ApiError(400, NOT_FETCHED, PARAM) from None
    finally:
        watchdog.cancel()


class _Watchdog:
    """Closes the fetch's current connection when its deadline passes, so that no read of a trickling
    peer (a header line, a body chunk) outlives it."""

    def __init__(self, timeout_s: float) -> None:
        self.fired = False
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._timer = threading.Timer(timeout_s, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock
            if self.fired:
                _shut(sock)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            if self._sock is not None:
                _shut(self._sock)

    def cancel(self) -> None:
        self._timer.cancel()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _get(url: str, policy: FetchPolicy, deadline: float, watchdog: _Watchdog) -> tuple[int, str | None, bytes]:
    """One request: (status, redirect target or None, body)."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in ("http", "https") or not host:
        raise UrlRefused(f"not an http(s) URL with a host: {scheme or 'no scheme'}")
    if policy.allow_hosts and not any(fnmatchcase(host, pattern.lower()) for pattern in policy.allow_hosts):
        raise ApiError(400, f"image_url host {host!r} is not in serve.fetch_allow_hosts", PARAM)
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise UrlRefused("bad port") from None
    address = _checked_address(host, port, policy.allow_private)
    connection = _Pinned(host, port, address, _remaining(deadline), watchdog, tls=scheme == "https")
    try:
        target = parts.path or "/"
        connection.request(
            "GET",
            f"{target}?{parts.query}" if parts.query else target,
            headers={"User-Agent": "streamwatch", "Accept": "image/*"},
        )
        response = connection.getresponse()
        if response.status in (301, 302, 303, 307, 308):
            return response.status, response.getheader("location") or "", b""
        return response.status, None, _read(response, policy.max_bytes, deadline, url)
    except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out, TLS, garbage
        raise UrlRefused(f"{type(exc).__name__}: {exc}") from None
    finally:
        connection.close()


def _checked_address(host: str, port: int, allow_private: bool) -> str:
    """The first address of `host`, after checking that every address it resolves to is allowed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UrlRefused(f"cannot resolve {host}: {exc}") from None
    addresses = [str(info[4][0]) for info in infos]
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if not allow_private and not _public(ip):
            raise UrlRefused(f"{host} resolves to {address}, which is not a public address")
    return addresses[0]


def _public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return _public(ip.ipv4_mapped)
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_loopback or ip.is_link_local)


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise UrlRefused("timed out")
    return left


def _read(response: http.client.HTTPResponse, max_bytes: int, deadline: float, url: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        _remaining(deadline)
        chunk = response.read(min(65536, max_bytes + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(413, f"image at {redact_url(url)} is larger than {max_bytes / 1e6:g} MB", PARAM)


class _Pinned(http.client.HTTPConnection):
    """An HTTP(S) connection to a checked address, speaking to `host` (Host header, TLS name)."""

    def __init__(self, host: str, port: int, address: str, timeout: float, watchdog: _Watchdog, *, tls: bool) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address, self._watchdog = address, watchdog
        self._tls = ssl.create_default_context() if tls else None

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self._watchdog.watch(sock)  # the raw socket: shutting it down ends a TLS read as well
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host) if self._tls is not None else sock
