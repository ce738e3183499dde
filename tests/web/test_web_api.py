"""REST API, auth and metrics over HTTP against a real SQLite file, a real camera worker and the real queue.

The context here stands in for the running service (which implements the same interface and is
driven through the browser in test_web_browser.py); the answering backend is the queue test's double.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from support.helpers import wait_for
from support.web import Site, add_event, jpeg_bytes

from streamwatch.config import WebConfig
from streamwatch.config.passwords import hash_secret
from streamwatch.web.app import create_app


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    site = Site(tmp_path)
    add_event(site.store, "e1", snapshot=jpeg_bytes())
    add_event(site.store, "e2", camera="dock", rule="forklift", severity="warning")
    add_event(site.store, "e3", kind="resolved")
    yield site
    site.close()


@pytest.fixture
def client(site: Site) -> Iterator[TestClient]:
    with TestClient(create_app(site, WebConfig()), base_url="http://127.0.0.1:8080") as client:
        yield client


def csrf_of(client: TestClient, path: str = "/ask") -> str:
    page = client.get(path).text
    return page.split('name="csrf" value="')[1].split('"')[0]


def test_events_filter_and_page(client: TestClient) -> None:
    everything = client.get("/api/events").json()
    assert everything["total"] == 3 and [e["event_id"] for e in everything["items"]] == ["e3", "e2", "e1"]
    page = client.get("/api/events", params={"limit": 2}).json()
    assert len(page["items"]) == 2 and page["next_offset"] == 2
    assert client.get("/api/events", params={"limit": 2, "offset": 2}).json()["next_offset"] is None
    assert [e["event_id"] for e in client.get("/api/events", params={"camera": "dock"}).json()["items"]] == ["e2"]
    assert client.get("/api/events", params={"kind": "resolved", "severity": "critical"}).json()["total"] == 1
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert client.get("/api/events", params={"since": future}).json()["total"] == 0
    assert client.get("/api/events", params={"reviewed": "false"}).json()["total"] == 3
    assert client.get("/api/events", params={"severity": "loud"}).status_code == 422
    assert client.get("/api/events", params={"limit": 0}).status_code == 422


def test_event_detail_and_snapshot(client: TestClient) -> None:
    event = client.get("/api/events/e1").json()
    assert event["question"].startswith("Is anyone climbing") and event["confidence"] == 0.91
    assert event["snapshot_url"].endswith("/api/events/e1/snapshot") and "snapshot_file" not in event
    snapshot = client.get("/api/events/e1/snapshot")
    assert snapshot.headers["content-type"] == "image/jpeg" and snapshot.content[:2] == b"\xff\xd8"
    assert client.get("/api/events/e2/snapshot").status_code == 404
    assert client.get("/api/events/nope").status_code == 404


def test_review_needs_the_csrf_token_and_is_stored(client: TestClient, site: Site) -> None:
    refused = client.post("/api/events/e1/review", json={"verdict": "false_positive"})
    assert refused.status_code == 403
    token = csrf_of(client)
    done = client.post(
        "/api/events/e1/review",
        json={"verdict": "false_positive", "note": "flag shadow"},
        headers={"X-CSRF-Token": token},
    )
    assert done.status_code == 200 and done.json()["verdict"] == "false_positive"
    stored = site.store.get("e1")
    assert stored is not None and stored.verdict == "false_positive" and stored.note == "flag shadow"
    assert client.get("/api/events", params={"verdict": "false_positive"}).json()["total"] == 1
    bad = client.post("/api/events/e1/review", json={"verdict": "maybe"}, headers={"X-CSRF-Token": token})
    assert bad.status_code == 422


def test_cameras_with_live_frames_and_rules_with_last_answers(client: TestClient, site: Site) -> None:
    wait_for(lambda: site.worker.latest() is not None, 10, "a frame")
    cameras = client.get("/api/cameras").json()
    assert cameras[0]["id"] == "yard" and cameras[0]["state"] == "online"
    frame = client.get(cameras[0]["frame_url"])
    assert frame.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(frame.content)).size == (640, 360)
    assert client.get("/api/cameras/nope/frame.jpg").status_code == 404
    rules = client.get("/api/rules").json()
    assert rules[0]["id"] == "fence-climb" and rules[0]["last_answers"][0]["answer"] == "no"


def test_ask_goes_through_the_queue(client: TestClient, site: Site) -> None:
    token = csrf_of(client)
    white = io.BytesIO()
    Image.new("RGB", (32, 32), (255, 255, 255)).save(white, format="PNG")
    answer = client.post(
        "/api/ask",
        files={"image": ("w.png", white.getvalue(), "image/png")},
        data={"question": "Is it bright? Answer yes or no.", "csrf": token},
    ).json()
    assert answer["answer"] == "yes" and answer["confidence"] == pytest.approx(1.0) and answer["model"] == "brightness"
    text = client.post(
        "/api/ask",
        files={"image": ("w.jpg", jpeg_bytes(), "image/jpeg")},
        data={"question": "What is this?", "kind": "text", "csrf": token},
    ).json()
    assert text["answer"] == "you asked: What is this?" and text["confidence"] is None
    broken = client.post(
        "/api/ask",
        files={"image": ("x.jpg", b"not an image", "image/jpeg")},
        data={"question": "Is it?", "csrf": token},
    )
    assert broken.status_code == 422 and "not a readable image" in broken.json()["detail"]
    assert site.queue.stats().answered == 2


def test_metrics_parse_and_move_when_requests_flow(client: TestClient) -> None:
    def samples() -> dict[str, float]:
        text = client.get("/metrics").text
        return {
            s.name + str(sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    before = samples()
    token = csrf_of(client)
    for _ in range(3):
        client.post(
            "/api/ask",
            files={"image": ("w.jpg", jpeg_bytes(), "image/jpeg")},
            data={"question": "Bright?", "csrf": token},
        )
    after = samples()
    answered = "streamwatch_requests_total[('outcome', 'answered')]"
    assert after[answered] == before[answered] + 3
    assert after["streamwatch_batch_size_count[]"] >= before["streamwatch_batch_size_count[]"] + 1
    assert (
        "streamwatch_queue_depth[]" in after and "streamwatch_dropped_requests_total[('reason', 'deadline')]" in after
    )
    assert "streamwatch_camera_up[('camera', 'yard')]" in after
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["ready"] is True
    assert "/api/events" in client.get("/openapi.json").json()["paths"]


def test_off_loopback_everything_needs_a_login_or_a_token(site: Site) -> None:
    config = WebConfig(host="0.0.0.0", password_hash=hash_secret("correct horse"), token_hash=hash_secret("tok-123456"))
    with TestClient(create_app(site, config)) as client:
        assert client.get("/api/events").status_code == 401
        assert client.get("/metrics").status_code == 401
        assert client.get("/healthz").status_code == 200  # for load balancers
        page = client.get("/", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/login?next=/"
        headers = {"Authorization": "Bearer tok-123456"}
        assert client.get("/api/events", headers=headers).json()["total"] == 3
        assert client.get("/api/events", headers={"Authorization": "Bearer wrong"}).status_code == 401
        review = client.post("/api/events/e1/review", json={"verdict": "confirmed"}, headers=headers)
        assert review.status_code == 200  # token clients need no CSRF token
        wrong = client.post("/login", data={"password": "nope", "next": "/"}, follow_redirects=False)
        assert wrong.status_code == 401 and "sw_session" not in wrong.cookies
        right = client.post(
            "/login", data={"password": "correct horse", "next": "//evil.example/"}, follow_redirects=False
        )
        assert right.status_code == 303 and right.headers["location"] == "/"  # no open redirect
        assert (
            "httponly" in right.headers["set-cookie"].lower()
            and "samesite=strict" in right.headers["set-cookie"].lower()
        )
        assert client.get("/").status_code == 200 and client.get("/api/events").status_code == 200
        forged = client.post("/events/e1/review", data={"verdict": "false_positive", "csrf": "forged"})
        assert forged.status_code == 403


def test_settings_refuse_an_open_web_ui_without_a_password(tmp_path: Path) -> None:
    from streamwatch.config import load_settings
    from streamwatch.errors import DataFileError

    path = tmp_path / "config.toml"
    path.write_text('[model]\nid = "hub/model"\n[web]\nhost = "0.0.0.0"\n')
    with pytest.raises(DataFileError) as error:
        load_settings(path)
    assert f"{path}:4: web.host: the web UI would listen on 0.0.0.0" in error.value.problems[0]
    path.write_text('[model]\nid = "hub/model"\n[web]\nhost = "0.0.0.0"\npassword_hash = "hunter2"\n')
    with pytest.raises(DataFileError) as error:
        load_settings(path)
    assert "web.password_hash: expected pbkdf2_sha256$ITERATIONS$SALT$HASH, not a password" in error.value.problems[0]
    assert "hunter2" not in error.value.problems[0]
