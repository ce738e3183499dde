"""The web UI in headless Chromium (Debian's, driven by Playwright) against the running service."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import av
import pytest
from support.events import new_event
from support.helpers import CHROMIUM, REPO, wait_for
from support.service import Running, write_site

from streamwatch.clips.mp4 import write_mp4
from streamwatch.clips.ring import PacketRing
from streamwatch.config import load_settings
from streamwatch.store import measures
from streamwatch.store.db import Database
from streamwatch.store.events import EventStore, NewEvent
from streamwatch.store.labels import LabelStore, NewLabelRequest

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (scripts/install-test-deps.sh)")


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[str, EventStore]]:
    config = write_site(tmp_path, str(REPO / "samples" / "yard.mp4"), None)
    # no label requests of its own: the labelling test counts exactly the ones it adds
    config.write_text(config.read_text(encoding="utf-8") + "[labels]\nsample_no = 0\n", encoding="utf-8")
    settings = load_settings(config)
    store = EventStore(Database.open(settings.database_url()), settings.path(settings.storage.snapshot_dir))
    for uid, rule, title in (
        ("fence1", "right-side", "Person on the right side of the fence"),
        ("gate1", "gate-open", "Gate left open"),
    ):
        store.record(
            NewEvent(
                uid=uid,
                alert_id=uid,
                kind="open",
                camera="gate",
                rule=rule,
                severity="critical",
                title=title,
                question=f"{title}? Answer yes or no.",
                answer="yes",
                confidence=0.87,
                latency_s=0.2,
                model="m",
                description=None,
                frame_at=datetime.now(UTC),
            ),
            (REPO / "tests" / "data" / "snapshot.jpg").read_bytes(),
        )
    measured = {"rule": "right-side", "camera": "gate", "n": 40, "positives": 12, "threshold": 0.5}
    measured |= {"precision": 0.9, "recall": 0.75, "f1": 0.82, "suggested_threshold": 0.42}
    measured |= {"false_alerts_per_day": 3.1, "false_alert_open_share": 0.004}
    measures.save(store.db, "m", [measured])  # as `streamwatch eval` leaves them
    running = Running(settings)
    try:
        yield f"http://127.0.0.1:{settings.web.port}", store
    finally:
        running.stop()


def test_filter_the_timeline_open_an_event_and_mark_it_false_positive(
    service: tuple[str, EventStore], browser: object
) -> None:
    base, store = service
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(base + "/events")
    assert page.locator("li.event[data-event=fence1]").count() == 1
    assert page.locator("li.event[data-event=gate1]").count() == 1
    page.select_option("select[name=rule]", "gate-open")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**/events?*rule=gate-open*")
    assert page.locator("li.event[data-event=gate1]").count() == 1
    assert page.locator("li.event[data-event=fence1]").count() == 0
    page.select_option("select[name=rule]", "")
    page.select_option("select[name=reviewed]", "no")
    page.click("#filters button[type=submit]")
    page.click("li.event[data-event=fence1] a")
    page.wait_for_url("**/events/fence1")
    assert page.locator("#answer").inner_text() == "yes"
    assert page.locator("img.snapshot").evaluate("img => img.complete && img.naturalWidth > 0")
    page.fill("#note", "the flag's shadow")
    page.click("button[value=false_positive]")
    page.wait_for_url("**/events/fence1")
    assert page.locator("#verdict").inner_text() == "false positive — the flag's shadow"
    marked = store.get("fence1")
    assert marked is not None and marked.verdict == "false_positive" and marked.note == "the flag's shadow"
    page.goto(base + "/events?reviewed=no")  # the review queue no longer lists it
    assert page.locator("li.event[data-event=fence1]").count() == 0


def test_pages_fit_a_phone_and_show_live_cameras_and_rules(service: tuple[str, EventStore], browser: object) -> None:
    base, _ = service
    phone = browser.new_page(viewport={"width": 390, "height": 844})  # type: ignore[attr-defined]
    for path in ("/", "/alerts/gate1", "/events", "/events/gate1", "/cameras", "/rules", "/labels", "/jobs", "/ask"):
        phone.goto(base + path)
        overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} is {overflow}px wider than a phone"
    phone.goto(base + "/cameras")
    wait_for(
        lambda: phone.locator("img.live").evaluate("img => img.complete && img.naturalWidth > 0"),
        15,
        "the latest frame",
    )
    assert phone.locator("li.card[data-camera=gate] .badge").inner_text() == "online"
    phone.goto(base + "/rules")
    assert phone.locator("li.card[data-rule=right-side]").count() == 1
    shown = phone.locator("li.card[data-rule=right-side] .measured[data-camera=gate]").inner_text()
    assert shown == (
        "gate, measured on 40 labelled frames: precision 0.90 · recall 0.75 · false alerts where nothing happens: "
        "3.1 opened a day, one open 0.4 % of the time · suggested threshold 0.42 (now 0.50)"
    )


def test_ask_page_answers_an_uploaded_image(service: tuple[str, EventStore], browser: object) -> None:
    base, _ = service
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(base + "/ask")
    page.set_input_files("#image", str(REPO / "tests" / "data" / "snapshot.jpg"))
    page.fill("#question", "Is a person standing at the right side? Answer yes or no.")
    page.click("form.ask button[type=submit]")
    page.wait_for_selector("#result")
    assert page.locator("#result dd").first.inner_text() in ("yes", "no")


def test_the_event_page_plays_the_alerts_clip(
    service: tuple[str, EventStore], browser: object, clips: dict[str, Path]
) -> None:
    """A clip written as the service writes them (a stream copy of kept packets) plays in Chromium."""
    base, store = service
    ring = PacketRing("gate", keep_s=60.0, max_bytes=100_000_000)
    with av.open(str(clips["cam"])) as container:
        stream = container.streams.video[0]
        ring.start_segment(stream)
        for packet in container.demux(stream):
            ring.add(packet)
    span = ring.span_from(0.0)
    assert span is not None
    new = new_event("clip1")
    new = dataclasses.replace(new, clip=EventStore.media_relative(new, ".mp4"))
    store.record(new, (REPO / "tests" / "data" / "snapshot.jpg").read_bytes())
    seconds = write_mp4(store.snapshot_dir / str(new.clip), span.segment, span.packets)
    store.clip_written("clip1", seconds)
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(base + "/events/clip1")
    video = page.locator("video.clip")
    video.evaluate("v => new Promise(done => v.readyState >= 1 ? done() : v.addEventListener('loadedmetadata', done))")
    assert video.evaluate("v => v.duration") == pytest.approx(seconds, abs=0.2) and seconds > 0
    video.evaluate("v => { v.muted = true; return v.play(); }")
    wait_for(lambda: video.evaluate("v => v.currentTime") > 0.3, 15, "the clip to play")
    assert video.evaluate("v => v.error") is None


def test_labelling_with_the_keyboard(service: tuple[str, EventStore], browser: object) -> None:
    base, store = service
    labels = LabelStore(store.db, store.snapshot_dir, max_pending=9, max_labelled=9)
    frame = (REPO / "tests" / "data" / "snapshot.jpg").read_bytes()
    for uid in ("k1", "k2"):
        labels.add(
            NewLabelRequest(
                uid, "gate", "right-side", "Is a person there?", "m", "no", 0.48, 0.5, "uncertain", datetime.now(UTC)
            ),
            frame,
        )
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(base + "/labels")
    assert page.locator("#pending").inner_text() == "2 waiting"
    assert page.locator("img.snapshot").evaluate("img => img.complete && img.naturalWidth > 0")
    page.keyboard.press("y")
    # a selector, not wait_for_function: the page's CSP forbids the eval Playwright's polling may need
    page.locator("#pending", has_text="1 waiting").wait_for()
    page.keyboard.press("s")
    page.wait_for_selector("#empty")
    assert [(r.uid, r.label) for r in labels.list(labelled=True)] == [("k2", "skip"), ("k1", "yes")]
