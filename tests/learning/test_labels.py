"""Label requests: which answers become one (uncertain, a sampled "no"; rate-limited; never reused or
non-yes/no answers), their bounded store, the REST API and page (keys y/n/s in Chromium), the CLI, and
end to end through `streamwatch run` (frames kept, nothing published)."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from support.helpers import REPO, random_image, wait_for
from support.service import Running, write_site
from support.web import Site

from streamwatch.config import CameraConfig, LabelsConfig, WebConfig, load_settings
from streamwatch.inference.backends.base import Backend, YesNo
from streamwatch.inference.types import Answer, Prompt
from streamwatch.learning.labels import LabelCollector
from streamwatch.rules.model import Rule
from streamwatch.store.db import Database
from streamwatch.store.labels import LabelStore, NewLabelRequest
from streamwatch.vocabulary import Label, LabelReason
from streamwatch.web.app import create_app

YARD = CameraConfig(id="yard", url="yard.mp4")
RULE = Rule(id="fence", title="Fence", question="Is anyone climbing the fence? Answer yes or no.", threshold=0.6)


def answer(p: float, *, reused: bool = False) -> Answer:
    return Answer("yes" if p >= 0.5 else "no", p, 0.1, 1, "tiny-glm4v", reused)


def store(tmp_path: Path, **bounds: int) -> LabelStore:
    limits = {"max_pending": 50, "max_labelled": 50} | bounds
    return LabelStore(Database.open(f"sqlite:///{tmp_path / 'events.db'}"), tmp_path / "snapshots", **limits)


def new_request(uid: str) -> NewLabelRequest:
    return NewLabelRequest(uid, "yard", "fence", RULE.question, "m", "no", 0.55, 0.6, "uncertain", datetime.now(UTC))


@pytest.mark.parametrize(
    ("p", "reused", "rule", "expected"),
    [
        (0.6, False, RULE, LabelReason.UNCERTAIN),  # at the threshold
        (0.46, False, RULE, LabelReason.UNCERTAIN),  # within the band below
        (0.72, False, RULE, LabelReason.UNCERTAIN),  # ... and above (the band is in log-odds: 0.35..0.65 at 0.5)
        (0.9, False, RULE, LabelReason.SAMPLE_YES),  # a confident yes, sampled (the rng below always samples)
        (0.02, False, RULE, LabelReason.SAMPLE),  # a plain no, sampled
        (0.0005, False, RULE.model_copy(update={"threshold": 0.0004}), LabelReason.UNCERTAIN),
        (0.0002, False, RULE.model_copy(update={"threshold": 0.0004}), LabelReason.SAMPLE),  # not "uncertain"
        (0.01, False, RULE.model_copy(update={"threshold": 0.0004}), LabelReason.SAMPLE_YES),
        (0.6, True, RULE, None),  # a reused answer adds nothing
        (0.6, False, RULE.model_copy(update={"answer": "text"}), None),  # only yes/no rules
    ],
)
def test_which_answers_are_label_requests(
    tmp_path: Path, p: float, reused: bool, rule: Rule, expected: LabelReason | None
) -> None:
    always = random.Random(0)
    always.random = lambda: 0.0  # type: ignore[method-assign]
    collector = LabelCollector(store(tmp_path), LabelsConfig(band=0.15, sample_no=0.01), rng=always)
    assert collector.reason(rule, answer(p, reused=reused)) == expected


@pytest.mark.parametrize(("p", "setting"), [(0.02, "sample_no"), (0.95, "sample_yes")])
def test_plain_nos_and_confident_yeses_are_sampled_at_the_configured_share(
    tmp_path: Path, p: float, setting: str
) -> None:
    collector = LabelCollector(store(tmp_path), LabelsConfig(**{setting: 0.05}), rng=random.Random(3))
    sampled = sum(collector.reason(RULE, answer(p)) is not None for _ in range(4000))
    assert 120 <= sampled <= 280  # 5 % of 4000 = 200
    never = LabelCollector(store(tmp_path), LabelsConfig(**{setting: 0.0}), rng=random.Random(3))
    assert all(never.reason(RULE, answer(p)) is None for _ in range(200))


def test_requests_spread_over_the_score_range_and_never_repeat_a_picture(tmp_path: Path) -> None:
    """Each quarter of the band has its own turn; the same picture (the rule's region) is asked once
    per camera x rule, also after a restart; a different picture, or another rule's region, is new."""
    now = [1000.0]
    labels = store(tmp_path)
    collector = LabelCollector(labels, LabelsConfig(every_s=600, sample_no=0), clock=lambda: now[0])
    frames = [random_image(seed, 320, 180) for seed in range(8)]

    def offer(p: float, frame: Image.Image, rule: Rule = RULE) -> bool:
        return asyncio.run(collector.offer(YARD, rule, "q", answer(p), frame, 1_700_000_000.0))

    # 0.6 is the threshold: 0.52 and 0.58 fall in the two quarters below, 0.62 and 0.7 in those above
    assert [offer(p, frames[i]) for i, p in enumerate((0.52, 0.58, 0.62, 0.7))] == [True] * 4
    assert not offer(0.59, frames[4])  # the second quarter's turn is taken
    now[0] += 601
    assert not offer(0.59, frames[1])  # its turn again, but the same picture as one kept
    noisy = Image.fromarray(
        (np.asarray(frames[1], dtype=np.int16) + np.random.default_rng(0).integers(-4, 5, (180, 320, 3)))
        .clip(0, 255)
        .astype(np.uint8)
    )
    assert not offer(0.59, noisy)  # the same scene with sensor noise: still the same picture
    assert collector.duplicates == 2
    rng = np.random.default_rng(1)

    def lawn(person: bool) -> Image.Image:  # a still, flat scene with sensor noise; a small, distant person
        pixels = np.full((360, 640, 3), 110, dtype=np.int16) + rng.integers(-4, 5, (360, 640, 3))
        if person:
            pixels[200:230, 300:312] = 60  # 12 x 30 pixels of a 640 x 360 frame
        return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))

    now[0] += 601
    assert offer(0.52, lawn(False)) and not offer(0.52, lawn(False))  # the lawn again: the same picture
    now[0] += 601
    assert offer(0.52, lawn(True))  # a person walked in: a new picture
    assert offer(0.59, frames[5])  # a new picture
    corner = RULE.model_copy(update={"id": "corner", "roi": (0.0, 0.0, 0.25, 0.25)})
    assert offer(0.59, frames[5], corner)  # another rule: its own memory
    half = frames[6].copy()
    half.paste(frames[5].crop((0, 0, 80, 45)), (0, 0))  # frame 5's corner: the same picture for `corner`
    now[0] += 601
    assert not offer(0.59, half, corner)
    restarted = LabelCollector(labels, LabelsConfig(every_s=600, sample_no=0), clock=lambda: now[0])
    assert not asyncio.run(restarted.offer(YARD, RULE, "q", answer(0.59), frames[0], 0.0))  # remembered
    assert asyncio.run(restarted.offer(YARD, RULE, "q", answer(0.59), frames[7], 0.0))


def test_requests_are_rate_limited_per_camera_and_rule_and_keep_the_full_frame(tmp_path: Path) -> None:
    now = [1000.0]
    labels = store(tmp_path)
    collector = LabelCollector(labels, LabelsConfig(every_s=600), clock=lambda: now[0])
    frames = iter(random_image(seed, 640, 360) for seed in range(10))

    def offer(camera: CameraConfig = YARD) -> bool:
        frame = next(frames)
        return asyncio.run(collector.offer(camera, RULE, "the question as asked", answer(0.58), frame, 1_700_000_000.0))

    assert offer() and not offer()  # the second within every_s
    assert offer(CameraConfig(id="dock", url="dock.mp4"))  # another camera has its own turn
    now[0] += 601
    assert offer()
    kept = labels.list(labelled=False)
    assert [r.camera for r in kept] == ["yard", "dock", "yard"]  # the queue: oldest first
    first = kept[0]
    assert (first.question, first.model, first.threshold, first.reason) == (
        "the question as asked",
        "tiny-glm4v",
        0.6,
        "uncertain",
    )
    with Image.open(labels.frame_path(first)) as image:
        assert image.size == (640, 360)  # the full frame, not a crop
    disabled = LabelCollector(labels, LabelsConfig(enabled=False))
    assert not asyncio.run(disabled.offer(YARD, RULE, "q", answer(0.6), next(frames), 0.0))


def test_the_store_is_bounded_oldest_first(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    labels = store(tmp_path, max_pending=3, max_labelled=2)
    for index in range(5):
        labels.add(new_request(f"r{index}"), b"\xff\xd8jpeg")
    assert [r.uid for r in labels.list(labelled=False)] == ["r2", "r3", "r4"]
    assert sorted(p.name for p in (tmp_path / "snapshots").rglob("*.jpg")) == ["r2.jpg", "r3.jpg", "r4.jpg"]
    for uid in ("r2", "r3", "r4"):
        assert labels.set_label(uid, Label.NO) is not None
    assert [r.uid for r in labels.list(labelled=True)] == ["r4", "r3"]
    assert "deleted the 1 oldest labelled requests" in caplog.text
    assert labels.set_label("nope", Label.YES) is None


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, Site]]:
    site = Site(tmp_path)
    for index in range(3):
        site.labels.add(new_request(f"q{index}"), (Path(__file__).parents[1] / "data" / "snapshot.jpg").read_bytes())
    with TestClient(create_app(site, WebConfig()), base_url="http://127.0.0.1:8080") as test_client:
        yield test_client, site
    site.close()


def test_the_rest_api_lists_serves_and_labels(client: tuple[TestClient, Site]) -> None:
    http, _site = client
    queue = http.get("/api/labels").json()
    assert queue["pending"] == 3 and [item["id"] for item in queue["items"]] == ["q0", "q1", "q2"]
    frame = http.get(queue["items"][0]["frame_url"])
    assert frame.status_code == 200 and frame.headers["content-type"] == "image/jpeg"
    assert http.post("/api/labels/q0", json={"label": "yes"}).status_code == 403  # a browser session needs CSRF
    token = {"X-CSRF-Token": http.get("/labels").text.split('name="csrf" value="')[1].split('"')[0]}
    done = http.post("/api/labels/q0", json={"label": "yes"}, headers=token)
    assert done.status_code == 200 and done.json()["label"] == "yes" and done.json()["labelled_at"]
    assert http.post("/api/labels/q1", json={"label": "maybe"}, headers=token).status_code == 422
    assert http.post("/api/labels/zz", json={"label": "no"}, headers=token).status_code == 404
    assert [item["id"] for item in http.get("/api/labels", params={"state": "labelled"}).json()["items"]] == ["q0"]
    assert http.get("/api/labels", params={"state": "later"}).status_code == 422
    assert http.get("/api/labels/q1").json()["label"] is None


def test_the_labelling_page_takes_one_frame_after_another(client: tuple[TestClient, Site]) -> None:
    http, site = client
    page = http.get("/labels").text
    assert "3 waiting" in page and "/api/labels/q0/frame" in page
    csrf = page.split('name="csrf" value="')[1].split('"')[0]
    response = http.post("/labels/q0", data={"label": "no", "csrf": csrf}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/labels"
    assert "2 waiting" in http.get("/labels").text and site.labels.get("q0").label == "no"  # type: ignore[union-attr]
    assert http.post("/labels/q1", data={"label": "no", "csrf": "forged"}).status_code == 403


def test_the_cli_lists_and_labels(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[storage]\ndatabase_url = "sqlite:///events.db"\nsnapshot_dir = "snapshots"\n')
    labels = LabelStore(
        Database.open(f"sqlite:///{tmp_path / 'events.db'}"), tmp_path / "snapshots", max_pending=9, max_labelled=9
    )
    labels.add(new_request("c1"), b"\xff\xd8jpeg")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "streamwatch", "labels", *args, "-c", str(config)]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    listed = cli("--json")
    assert listed.returncode == 0 and [item["id"] for item in json.loads(listed.stdout)] == ["c1"]
    assert "c1  yard/fence  p_yes=0.550  uncertain" in cli().stdout
    done = cli("set", "c1", "yes")
    assert done.returncode == 0 and json.loads(done.stdout)["label"] == "yes"
    assert cli().stdout.strip() == "nothing to label"
    wrong = cli("set", "c1", "maybe")
    assert wrong.returncode == 2 and "invalid choice: 'maybe'" in wrong.stderr
    missing = cli("set", "zz", "no")
    assert missing.returncode == 1 and "no label request 'zz'" in missing.stderr


def test_the_service_keeps_uncertain_frames_and_publishes_nothing_about_them(tmp_path: Path) -> None:
    """`streamwatch run` with a model that is always unsure (P(yes) 0.55 on a rule at 0.6): one label
    request per camera x rule per labels.every_s, its frame on disk, and no alert."""
    settings = load_settings(write_site(tmp_path, str(REPO / "samples" / "yard.mp4"), None))
    rules = tmp_path / "rules" / "perimeter.toml"
    rules.write_text(rules.read_text().replace("threshold = 0.5", "threshold = 0.6"))
    running = Running(settings, lambda _s: UnsureBackend())
    try:
        wait_for(lambda: len(running.decisions) >= 3, 30, "three decisions")
    finally:
        running.stop()
    kept = store(tmp_path / "data").list(labelled=False)
    assert len(kept) == 1 and kept[0].reason == "uncertain" and kept[0].confidence == pytest.approx(0.55)
    assert kept[0].question == running.decisions[0].question and kept[0].model == "unsure-double"
    assert (tmp_path / "data" / "snapshots" / kept[0].frame).is_file()
    assert not any(d.transition for d in running.decisions)  # below the threshold: no alert, nothing published


class UnsureBackend(Backend):
    name = "unsure-double"

    def score_yes_no(self, prompts: Sequence[Prompt]) -> list[YesNo]:
        return [YesNo(0.55) for _ in prompts]

    def generate(self, prompts: Sequence[Prompt], max_new_tokens: int) -> list[str]:
        return ["-" for _ in prompts]


def test_without_an_rng_the_sample_is_drawn_from_the_picture(tmp_path: Path) -> None:
    """The same footage gives the same label requests (a fresh collector, a restart, a re-run); over
    many pictures the share is the configured one."""
    from streamwatch.learning.labels import picture_draw, thumbnail

    pictures = [random_image(seed, 64, 36) for seed in range(2000)]
    draws = [picture_draw(thumbnail(p, None), RULE.id) for p in pictures]
    assert 60 <= sum(d < 0.05 for d in draws) <= 140  # 5 % of 2000 = 100
    assert draws == [picture_draw(thumbnail(p, None), RULE.id) for p in pictures]
    other = [picture_draw(thumbnail(p, None), "other-rule") for p in pictures[:50]]
    assert other != draws[:50]  # each rule draws for itself

    def kept(folder: Path) -> list[str]:
        labels = store(folder)
        collector = LabelCollector(labels, LabelsConfig(sample_no=0.05, every_s=0))
        for index, picture in enumerate(pictures[:300]):
            asyncio.run(collector.offer(YARD, RULE, "q", answer(0.01), picture, float(index)))
        return [item.frame_at.isoformat() for item in labels.list(limit=1000)]

    first = kept(tmp_path / "a")
    assert first and first == kept(tmp_path / "b")
