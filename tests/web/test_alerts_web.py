"""Alerts in the REST API and the web UI: /api/alerts (filters, search, paging, bad input), one alert
with its timeline, a review that applies to the alert; in Chromium the home page's list, search,
the alert page, times in the viewer's time zone with the zone named, the date filter read in that
zone, and screenshots at desktop and phone width."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from support.events import new_event
from support.helpers import CHROMIUM, free_port, wait_for
from support.web import Site, jpeg_bytes

from streamwatch.config import WebConfig
from streamwatch.store.events import EventStore
from streamwatch.web.app import create_app


def seed(store: EventStore) -> None:
    fence = {"camera": "yard", "rule": "fence-climb", "title": "Person climbing the fence"}
    for uid, kind, confidence, description in (
        ("a1", "open", 0.81, "A person in a red jacket climbs the fence."),
        ("a2", "update", 0.96, None),
        ("a3", "resolved", 0.08, None),
    ):
        event = new_event(uid, alert_id="a1", kind=kind, confidence=confidence, description=description, **fence)
        store.record(event, None if kind == "resolved" else jpeg_bytes((40 * len(uid), 90, 90)))
    truck = {"camera": "aisle", "rule": "forklift-blocking-aisle", "title": "Forklift blocking the aisle"}
    store.record(dataclasses.replace(new_event("b1", severity="warning", **truck), clip="aisle/b1.mp4"), jpeg_bytes())


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    site = Site(tmp_path)
    seed(site.store)
    with TestClient(create_app(site, WebConfig()), base_url="http://127.0.0.1:8080") as client:
        yield client
    site.close()


def test_alerts_in_the_api(client: TestClient) -> None:
    listed = client.get("/api/alerts").json()
    assert listed["total"] == 2 and [a["alert_id"] for a in listed["items"]] == ["b1", "a1"]
    fence: dict[str, Any] = listed["items"][1]
    assert fence["state"] == "resolved" and fence["events"] == 3 and fence["peak_confidence"] == pytest.approx(0.96)
    assert fence["first_snapshot_url"] == "/api/events/a1/snapshot"
    assert fence["last_snapshot_url"] == "/api/events/a2/snapshot"
    assert fence["description"] == "A person in a red jacket climbs the fence." and fence["clip_url"] is None
    assert fence["resolved_at"] is not None and fence["duration_s"] >= 0 and fence["verdict"] is None
    assert client.get(fence["last_snapshot_url"]).headers["content-type"] == "image/jpeg"
    truck = listed["items"][0]
    assert truck["state"] == "open" and truck["clip_url"] == "/api/events/b1/clip.mp4" and truck["resolved_at"] is None

    def ids(query: str) -> list[str]:
        return [a["alert_id"] for a in client.get(f"/api/alerts?{query}").json()["items"]]

    assert ids("q=red+jacket") == ["a1"] and ids("q=forklift") == ["b1"] and ids("q=forklift&state=resolved") == []
    assert ids("state=open") == ["b1"] and ids("camera=yard") == ["a1"] and ids("severity=warning") == ["b1"]
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert ids(f"since={later}") == [] and ids("limit=1") == ["b1"] and ids("limit=1&offset=1") == ["a1"]
    for bad, field in (
        ("state=gone", "state"),
        ("q=" + "x" * 201, "q"),
        ("since=tuesday", "since"),
        ("limit=0", "limit"),
    ):
        refused = client.get(f"/api/alerts?{bad}")
        assert refused.status_code == 422 and field in str(refused.json()["detail"]), bad

    one = client.get("/api/alerts/a1").json()
    assert [e["event_id"] for e in one["timeline"]] == ["a1", "a2", "a3"]
    assert client.get("/api/alerts/nope").status_code == 404
    reviewed = client.post("/api/alerts/a1/review", json={"verdict": "false_positive", "note": "a shadow"})
    assert reviewed.status_code == 403  # a cookie-less client without a token still needs the CSRF token
    token = client.get("/alerts/a1").text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    reviewed = client.post(
        "/api/alerts/a1/review", json={"verdict": "false_positive", "note": "a shadow"}, headers={"X-CSRF-Token": token}
    )
    assert reviewed.status_code == 200 and reviewed.json()["verdict"] == "false_positive"
    assert client.get("/api/events/a1").json()["verdict"] == "false_positive"  # the alert's open event
    assert ids("q=shadow") == ["a1"] and ids("verdict=false_positive") == ["a1"] and ids("reviewed=false") == ["b1"]


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (scripts/install-test-deps.sh)")
def test_alerts_in_chromium_in_the_viewers_time_zone(client: TestClient, browser: Any, tmp_path: Path) -> None:
    import threading

    import uvicorn

    app = client.app
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: server.started, 30, "the web server")
        context = browser.new_context(timezone_id="America/New_York", viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.goto(base + "/")
        assert page.locator("li.alert").count() == 2
        shown = page.locator("li.alert[data-alert=a1] time").inner_text()
        assert shown.endswith(("EST", "EDT", "GMT-5", "GMT-4")), shown  # the viewer's zone, named
        opened = datetime.fromisoformat(page.locator("li.alert[data-alert=a1] time").get_attribute("datetime"))
        assert shown.startswith(opened.astimezone(_new_york()).strftime("%Y-%m-%d %H:%M"))
        assert page.locator("label.since span").inner_text() == "Opened from (in America/New_York)"
        page.screenshot(path=str(tmp_path / "alerts-desktop.png"), full_page=True)
        page.fill("#q", "red jacket")
        page.click("#filters button[type=submit]")
        page.wait_for_url("**/?*q=red+jacket*")
        assert [e.get_attribute("data-alert") for e in page.locator("li.alert").all()] == ["a1"]
        # the date filter: a local time in New York goes to the server as that moment in UTC
        page.fill("#q", "")
        page.fill("input[name=since_local]", "2030-01-15T09:30")
        page.click("#filters button[type=submit]")
        page.wait_for_url("**/?*since=*")
        assert "since=2030-01-15T14%3A30%3A00.000Z" in page.url and page.locator("#none").count() == 1
        assert page.locator("input[name=since_local]").input_value() == "2030-01-15T09:30"  # shown back as given
        page.goto(base + "/alerts/a1")
        assert page.locator("#state").inner_text() == "resolved"
        assert page.locator("#first").evaluate("img => img.complete && img.naturalWidth > 0")
        assert page.locator("#last").evaluate("img => img.complete && img.naturalWidth > 0")
        assert [li.get_attribute("data-event") for li in page.locator("#timeline li").all()] == ["a1", "a2", "a3"]
        page.screenshot(path=str(tmp_path / "alert-desktop.png"), full_page=True)
        page.fill("#note", "the neighbour's ladder")
        page.click("button[value=confirmed]")
        page.wait_for_url("**/alerts/a1")
        assert page.locator("#verdict").inner_text() == "confirmed — the neighbour's ladder"
        phone = browser.new_context(timezone_id="Europe/Berlin", viewport={"width": 390, "height": 844}).new_page()
        for path, name in (("/", "alerts-phone.png"), ("/alerts/a1", "alert-phone.png")):
            phone.goto(base + path)
            assert phone.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0, path
            phone.screenshot(path=str(tmp_path / name), full_page=True)
        assert phone.locator("dd time").first.inner_text().endswith(("CET", "CEST", "GMT+1", "GMT+2"))
    finally:
        server.should_exit = True
        thread.join(10)
    assert all((tmp_path / name).stat().st_size > 1000 for name in ("alerts-desktop.png", "alert-phone.png"))


def _new_york() -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo("America/New_York")
