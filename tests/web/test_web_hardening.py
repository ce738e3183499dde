"""The web UI and API against careless and hostile clients, over a real socket where it matters: nobody is
made to wait on (or can fill the disk with) a body before authentication, bodies and pixels are bounded,
Host headers of other sites are refused, pages cannot be framed, logging out ends the session, guessing
is throttled and a wrong token is cheap to refuse."""

from __future__ import annotations

import http.client
import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from support.helpers import wait_for
from support.web import LiveServer, Site, add_event, jpeg_bytes

import streamwatch.web.guard as guard_module
from streamwatch.config import WebConfig
from streamwatch.config.passwords import hash_secret
from streamwatch.web.app import create_app
from streamwatch.web.gate import Throttle

TOKEN = "tok-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    site = Site(tmp_path)
    add_event(site.store, "e1", snapshot=jpeg_bytes())
    yield site
    site.close()


def protected() -> WebConfig:
    return WebConfig(host="127.0.0.1", password_hash=hash_secret("correct horse"), token_hash=hash_secret(TOKEN))


@pytest.fixture
def live(site: Site) -> Iterator[LiveServer]:
    server = LiveServer(create_app(site, protected()))
    yield server
    server.stop()


def head(method: str, path: str, port: int, *lines: str) -> str:
    return "\n".join([f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", *lines, ""])


@pytest.mark.parametrize(
    ("path", "content_type", "status"),
    [
        ("/api/ask", "multipart/form-data; boundary=x", 401),  # a 2 GB upload, no credentials
        ("/ask", "multipart/form-data; boundary=x", 303),  # the page form: to the login page
        ("/api/events/e1/review", "application/json", 401),  # a 300 MB JSON document
        ("/metrics", "text/plain", 401),
    ],
)
def test_no_body_is_read_before_authentication(live: LiveServer, path: str, content_type: str, status: int) -> None:
    code, _ = live.raw(
        head("POST", path, live.port, f"Content-Type: {content_type}", "Content-Length: 2000000000"), b"--x\r\n"
    )
    assert code == status


@pytest.mark.parametrize(
    ("path", "length"),
    [("/api/ask", 50_000_000), ("/api/events/e1/review", 300_000_000), ("/api/events/e1/review", 70_000)],
)
def test_bodies_past_their_limit_are_refused_unread(live: LiveServer, path: str, length: int) -> None:
    code, body = live.raw(
        head(
            "POST",
            path,
            live.port,
            f"Authorization: Bearer {TOKEN}",
            "Content-Type: application/json",
            f"Content-Length: {length}",
        ),
        b"{",
    )
    assert code == 413 and b"request body larger than" in body


def test_a_chunked_body_is_counted_as_it_arrives(live: LiveServer) -> None:
    chunk = b"x" * 16384
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(8)) + b"0\r\n\r\n"  # 128 KiB
    code, _ = live.raw(
        head(
            "POST",
            "/api/events/e1/review",
            live.port,
            f"Authorization: Bearer {TOKEN}",
            "Content-Type: application/json",
            "Transfer-Encoding: chunked",
        ),
        body,
    )
    assert code == 413
    small = b'{"verdict": "confirmed"}'
    body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(small), small)
    code, _ = live.raw(
        head(
            "POST",
            "/api/events/e1/review",
            live.port,
            f"Authorization: Bearer {TOKEN}",
            "Content-Type: application/json",
            "Transfer-Encoding: chunked",
        ),
        body,
    )
    assert code == 200


def bomb(format: str, side: int) -> bytes:
    """A small file that declares `side` x `side` pixels."""
    buffer = io.BytesIO()
    Image.new("1", (side, side)).save(buffer, format=format)
    return buffer.getvalue()


@pytest.fixture
def client(site: Site) -> Iterator[TestClient]:
    with TestClient(create_app(site, WebConfig()), base_url="http://127.0.0.1:8080") as client:
        yield client


def csrf_of(client: TestClient) -> str:
    page = client.get("/ask").text
    return page.split('name="csrf" value="', 1)[1].split('"', 1)[0]


@pytest.mark.parametrize(("format", "side"), [("PNG", 30_000), ("PNG", 12_000), ("GIF", 20_000), ("BMP", 7_000)])
def test_decompression_bombs_are_refused_before_decoding(client: TestClient, format: str, side: int) -> None:
    data = bomb(format, side)
    assert len(data) < 7_000_000
    response = client.post(
        "/api/ask", files={"image": ("b", data, "image/png")}, data={"question": "Bright?", "csrf": csrf_of(client)}
    )
    assert response.status_code == 413, response.text
    detail = response.json()["detail"]
    assert f"{side}x{side} pixels" in detail or f"declares {side * side / 1e6:g} million pixels" in detail
    assert "at most 36 million pixels are decoded" in detail


def test_questions_past_the_limit_are_refused(client: TestClient) -> None:
    response = client.post(
        "/api/ask",
        files={"image": ("w.jpg", jpeg_bytes(), "image/jpeg")},
        data={"question": "Is it bright? " * 30, "csrf": csrf_of(client)},
    )
    assert response.status_code == 422 and "the question is 420 characters long; at most 200" in response.text


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "127.0.0.1.nip.io:8080", ""])
def test_a_loopback_instance_answers_only_to_its_own_names(site: Site, host: str) -> None:
    with TestClient(create_app(site, WebConfig()), base_url="http://127.0.0.1:8080") as client:
        assert client.get("/api/events", headers={"Host": host}).status_code == 421
        for own in ("localhost:8080", "127.0.0.1:8080", "[::1]:8080", "LOCALHOST"):
            assert client.get("/api/events", headers={"Host": own}).status_code == 200, own


def test_off_loopback_hosts_may_be_limited(site: Site) -> None:
    config = WebConfig(host="0.0.0.0", token_hash=hash_secret(TOKEN), allowed_hosts=["cams.example.com"])
    with TestClient(create_app(site, config)) as client:
        assert client.get("/api/events", headers=AUTH | {"Host": "cams.example.com"}).status_code == 200
        assert client.get("/api/events", headers=AUTH | {"Host": "evil.example"}).status_code == 421
    with TestClient(create_app(site, WebConfig(host="0.0.0.0", token_hash=hash_secret(TOKEN)))) as client:
        assert client.get("/api/events", headers=AUTH | {"Host": "anything.example"}).status_code == 200
        assert client.get("/api/events/e1", headers=AUTH).json()["snapshot_url"] == "/api/events/e1/snapshot"


def test_pages_cannot_be_framed_and_run_only_their_own_scripts(client: TestClient) -> None:
    for path in ("/", "/cameras", "/api/events", "/login"):
        response = client.get(path)
        assert response.headers["x-frame-options"] == "DENY"
        policy = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy
        assert response.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in client.get("/cameras").text  # the refresh script is a file: no inline scripts


def test_api_docs_need_a_login_where_the_ui_does(site: Site) -> None:
    with TestClient(create_app(site, protected()), base_url="http://127.0.0.1:8080") as client:
        assert client.get("/docs", follow_redirects=False).status_code == 303
        assert client.get("/openapi.json").status_code == 401
        assert client.get("/openapi.json", headers=AUTH).status_code == 200


def test_logging_out_ends_the_session_on_the_server(site: Site) -> None:
    with TestClient(create_app(site, protected()), base_url="http://127.0.0.1:8080") as client:
        client.post("/login", data={"password": "correct horse", "next": "/"}, follow_redirects=False)
        cookie = client.cookies["sw_session"]
        page = client.get("/")
        assert page.status_code == 200
        token = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        assert client.post("/logout", data={"csrf": "forged"}).status_code == 403
        assert client.post("/logout", data={"csrf": token}, follow_redirects=False).status_code == 303
        client.cookies.set("sw_session", cookie)  # a copy of the cookie kept from before
        assert client.get("/", follow_redirects=False).status_code == 303
        assert client.get("/api/events").status_code == 401


@pytest.mark.parametrize(
    "query", ["offset=9223372036854775808", "offset=9223372036854775807", "offset=-1", "limit=0", "limit=100000"]
)
def test_paging_out_of_range_is_a_client_error(client: TestClient, query: str) -> None:
    assert client.get(f"/api/events?{query}").status_code == 422


def test_an_out_of_range_page_is_a_client_error(client: TestClient) -> None:
    for path in ("/", "/events"):
        assert client.get(f"{path}?page=9223372036854775808").status_code == 422
        assert client.get(f"{path}?page=33333").status_code == 200


def test_guessing_passwords_locks_the_client_out(site: Site) -> None:
    with TestClient(create_app(site, protected()), base_url="http://127.0.0.1:8080") as client:
        wrong = 0
        for attempt in range(500):  # guesses past the shared hash budget are refused (429) before hashing
            response = client.post("/login", data={"password": f"guess {attempt}"})
            assert response.status_code in (401, 429)
            wrong += response.status_code == 401
            if wrong == 10:
                break
            if response.status_code == 429:
                time.sleep(0.2)
        assert wrong == 10
        locked = client.post("/login", data={"password": "correct horse"}, follow_redirects=False)
        assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 60  # even the right one, for now
        assert client.get("/api/events", headers={"Authorization": "Bearer wrong"}).status_code == 429


def guess_until_locked(post: Callable[[int], int]) -> list[int]:
    """Wrong passwords until ten were checked (refusals of the shared hash budget waited out); the codes."""
    codes: list[int] = []
    for attempt in range(500):
        codes.append(post(attempt))
        if codes.count(401) == 10:
            return codes
        if codes[-1] in (429, -429):  # the shared hash budget (or a lockout, which fails below)
            time.sleep(0.2)
    raise AssertionError(f"never locked out: {codes[-20:]}")


def test_a_browser_that_logged_in_before_is_never_locked_out_by_others(site: Site) -> None:
    config = protected()  # one password hash: the same config.toml before and after a restart
    with TestClient(create_app(site, config), base_url="http://127.0.0.1:8080") as before:
        assert before.post("/login", data={"password": "correct horse"}, follow_redirects=False).status_code == 303
        device = before.cookies["sw_device"]
    app = create_app(site, config)  # a restart: the device cookie still counts (same password)
    with (
        TestClient(app, base_url="http://127.0.0.1:8080") as operator,
        TestClient(app, base_url="http://127.0.0.1:8080") as guesser,  # the same address
        TestClient(app, base_url="http://127.0.0.1:8080") as forged,
    ):
        operator.cookies.set("sw_device", device)
        forged.cookies.set("sw_device", "0" * 24 + "." + "0" * 32)  # not signed for this password
        guess_until_locked(lambda i: guesser.post("/login", data={"password": f"guess {i}"}).status_code)
        assert guesser.post("/login", data={"password": "correct horse"}).status_code == 429  # an unknown browser
        assert forged.post("/login", data={"password": "correct horse"}).status_code == 429
        assert operator.post("/login", data={"password": "correct horse"}, follow_redirects=False).status_code == 303


def test_a_devices_own_guesses_lock_only_that_device(site: Site) -> None:
    config = protected()  # one password hash: the same config.toml before and after a restart
    with TestClient(create_app(site, config), base_url="http://127.0.0.1:8080") as before:
        assert before.post("/login", data={"password": "correct horse"}, follow_redirects=False).status_code == 303
        device = before.cookies["sw_device"]
    app = create_app(site, config)
    with (
        TestClient(app, base_url="http://127.0.0.1:8080") as stolen,
        TestClient(app, base_url="http://127.0.0.1:8080") as other,
    ):
        stolen.cookies.set("sw_device", device)
        guess_until_locked(lambda i: stolen.post("/login", data={"password": f"guess {i}"}).status_code)
        assert stolen.post("/login", data={"password": "correct horse"}).status_code == 429
        assert other.post("/login", data={"password": "correct horse"}, follow_redirects=False).status_code == 303


def login_through(server: LiveServer, password: str, forwarded_for: str | None) -> int:
    """The status of a login over a real socket; 429 for a lockout, -429 for the shared hash budget."""
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("POST", "/login", body=f"password={password.replace(' ', '+')}", headers=headers)
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    if response.status == 429 and int(response.headers["Retry-After"]) <= 1:
        return -429
    return response.status


def test_forwarded_headers_count_only_from_trusted_proxies(site: Site) -> None:
    untrusted = LiveServer(create_app(site, protected()))
    try:  # a rotating X-Forwarded-For from a client that is no proxy: one client all the same
        guess_until_locked(lambda i: login_through(untrusted, f"guess {i}", f"10.9.{i // 250}.{i % 250}"))
        assert login_through(untrusted, "guess again", "10.200.0.1") == 429
    finally:
        untrusted.stop()
    proxied = LiveServer(create_app(site, protected()), trusted_proxies=("127.0.0.0/8",))
    try:  # behind a trusted proxy each forwarded client is its own
        guess_until_locked(lambda i: login_through(proxied, f"guess {i}", "203.0.113.7"))
        assert login_through(proxied, "guess again", "203.0.113.7") == 429
        wait_for(lambda: login_through(proxied, "correct horse", "203.0.113.8") == 303, 30, "another client's login")
    finally:
        proxied.stop()


def test_a_wrong_token_is_cheap_and_a_right_one_is_hashed_once(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    hashed: list[str] = []
    real = guard_module.verify_secret  # type: ignore[attr-defined]  # the name the guard calls

    def counting(secret: str, stored: str) -> bool:
        hashed.append(secret)
        return real(secret, stored)

    monkeypatch.setattr(guard_module, "verify_secret", counting)
    with TestClient(create_app(site, protected()), base_url="http://127.0.0.1:8080") as client:
        for _ in range(20):
            assert client.get("/api/events", headers=AUTH).status_code == 200
        assert hashed == [TOKEN]  # later requests with the verified token cost one HMAC
        statuses = [
            client.get("/api/events", headers={"Authorization": f"Bearer guess-{i}"}).status_code for i in range(50)
        ]
        assert len(hashed) <= 1 + 10  # at most the lock-out's worth of slow hashes for 50 guesses
        assert set(statuses) <= {401, 429} and statuses[-1] == 429
        assert client.get("/api/events", headers=AUTH).status_code == 200  # the verified token still works


def test_the_slow_hash_budget_is_shared_and_refills() -> None:
    now = [100.0]
    throttle = Throttle(checks_per_s=5, clock=lambda: now[0])
    assert sum(throttle.may_hash() for _ in range(20)) <= 5  # a burst gets one second's worth
    now[0] += 1.0
    assert sum(throttle.may_hash() for _ in range(20)) == 5
    for _ in range(10):
        throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") > 0 and throttle.retry_after("10.0.0.2") == 0  # per client
    now[0] += 601
    assert throttle.retry_after("10.0.0.1") == 0  # the failures aged out
