"""Rules over several frames in the learning loop: the frames a question was asked on are kept with its
event and its label requests (one strip, oldest first), shown to the labelling operator, and replayed
by `streamwatch eval` as the service asked them, giving the same answers; their files go with their
rows."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from PIL import Image
from support.helpers import random_image, wait_for
from support.service import MOTION_RULE, MotionBackend, Running, figure_x, write_site

from streamwatch.config import load_settings
from streamwatch.ingest.preprocess import fit_longest_side
from streamwatch.learning.evaluation.examples import Example, all_examples, from_clips
from streamwatch.learning.evaluation.manifest import load_manifest
from streamwatch.learning.evaluation.replay import replay
from streamwatch.rules.loader import load_rules
from streamwatch.store.db import Database
from streamwatch.store.events import EventFilter, EventStore
from streamwatch.store.labels import LabelStore, NewLabelRequest
from streamwatch.store.windows import beside, split, strip
from streamwatch.vocabulary import Label, Verdict


def test_a_strip_splits_back_into_its_frames() -> None:
    frames = [random_image(seed, 64, 48) for seed in range(3)]
    back = split(strip(frames), 3)
    assert [f.size for f in back] == [(64, 48)] * 3 and [f.tobytes() for f in back] == [f.tobytes() for f in frames]
    resized = strip([random_image(7, 32, 24), frames[1]])  # a resolution change within the window
    assert resized.size == (128, 48)
    for count in (0, 5, 99):
        with pytest.raises(ValueError, match=f"does not hold {count} frames"):
            split(strip(frames), count)
    assert beside("labels/gate/2026-11-29/abc.jpg") == "labels/gate/2026-11-29/abc.frames.jpg"


def test_motion_events_and_label_requests_keep_their_frames_and_replay_the_same(
    tmp_path: Path, clips: dict[str, Path]
) -> None:
    config = write_site(tmp_path, str(clips["cam"]), None)
    config.write_text(config.read_text() + "[labels]\nband = 0.5\nevery_s = 0\n", encoding="utf-8")
    (tmp_path / "rules" / "perimeter.toml").write_text(MOTION_RULE, encoding="utf-8")
    settings = load_settings(config)
    live = MotionBackend()
    running = Running(settings, lambda _s: live)
    database = Database.open(settings.database_url())
    snapshots = settings.path(settings.storage.snapshot_dir)
    store, labels = EventStore(database, snapshots), LabelStore(database, snapshots, max_pending=500, max_labelled=5)
    base = f"http://127.0.0.1:{settings.web.port}"
    try:
        wait_for(lambda: store.count(EventFilter(kind="open")) >= 1, 60, "the walking figure's alert")
        wait_for(lambda: labels.count(labelled=False) >= 2, 60, "label requests")
        (item, *_) = labels.list(labelled=False)
        payload = httpx.get(f"{base}/api/labels/{item.uid}").json()
        assert payload["window_frames"] == 3 and payload["frames_url"] == f"/api/labels/{item.uid}/frames"
        shown = httpx.get(base + payload["frames_url"])
        assert shown.status_code == 200 and shown.headers["content-type"] == "image/jpeg"
        page = httpx.get(f"{base}/labels").text
        assert 'id="frames"' in page and "Asked over 3 frames, oldest on the left" in page
    finally:
        running.stop()

    (event, *_) = store.list(EventFilter(kind="open"))
    assert event.window_frames == 3
    sheet = Image.open(snapshots / beside(str(event.snapshot)))
    assert sheet.width == 3 * sheet.height * 640 // 360  # three frames of the 640 x 360 camera, at model size
    store.review(event.uid, Verdict.CONFIRMED, None)
    asked = {request.uid: request.confidence for request in labels.list(labelled=False)[:3]}
    for uid in asked:
        labels.set_label(uid, Label.NO)

    # eval's examples carry the three frames; replayed, the model sees them and answers as it did live
    notes: list[str] = []
    examples = list(all_examples(settings, database, [], notes))
    assert not notes and {len(e.frames) for e in examples} == {3} and len(examples) == 1 + len(asked)
    rules = {rule.id: rule for rule in load_rules(tmp_path / "rules", settings.cameras).rules}
    replayed, skipped = MotionBackend(), Counter[str]()
    scored = replay(replayed, rules, {c.id: c for c in settings.cameras}, iter(examples), skipped)
    assert not skipped and {n for n, _q in replayed.prompts} == {3}
    measured = scored[("gate", "walking-right")]
    assert measured.truth == [True] + [False] * len(asked)
    assert measured.p_yes[0] == event.confidence  # the same answers as live
    assert sorted(measured.p_yes[1:]) == sorted(c for c in asked.values() if c is not None)

    # a single kept frame cannot stand in for three
    single = Example("gate", "walking-right", True, "review", "x", examples[0].image)
    replay(replayed, rules, {}, iter([single]), skipped)
    assert skipped == {"rule walking-right: asks over 3 frames; the example kept 1": 1}

    # the strips go with their rows: retention, and the bound on labelled requests
    strips = [snapshots / beside(r.frame) for r in labels.list(labelled=True)]
    assert all(path.is_file() for path in strips)
    for extra in range(6):  # max_labelled = 5 here: the oldest labelled ones go, their strips too
        uid = f"more{extra}"
        at = datetime.now(UTC)
        labels.add(NewLabelRequest(uid, "gate", "walking-right", "q", "m", "no", 0.1, 0.5, "sample", at), b"j")
        labels.set_label(uid, Label.NO)
    assert not any(path.is_file() for path in strips)
    event_strip = snapshots / beside(str(event.snapshot))
    store.prune(datetime.now(UTC) + timedelta(days=1))
    assert not event_strip.exists()


def test_a_labelled_clip_gives_a_rule_over_several_frames_its_frames_before_each_sample(
    tmp_path: Path, clips: dict[str, Path]
) -> None:
    """The walking figure's clip labelled "yes" throughout, for the rule over 3 frames 1 s apart: each
    sample after the first second comes with the frames 1 s and 0.5 s before it, cropped and sized as
    the service keeps them; the motion double sees the figure move right in each of them."""
    write_site(tmp_path, str(clips["cam"]), None)
    (tmp_path / "rules" / "perimeter.toml").write_text(MOTION_RULE, encoding="utf-8")
    manifest = tmp_path / "walk.toml"
    manifest.write_text(
        f'clip = "{clips["cam"]}"\ncamera = "gate"\nrule = "walking-right"\nevery_s = 1.5\n'
        '[[intervals]]\nfrom_s = 0\nto_s = 6\ntruth = "yes"\n',
        encoding="utf-8",
    )
    settings = load_settings(tmp_path / "config.toml")
    rules = {rule.id: rule for rule in load_rules(tmp_path / "rules", settings.cameras).rules}
    examples = list(from_clips([load_manifest(manifest)], rules, 320))
    assert [e.ref.rsplit("@", 1)[1] for e in examples] == ["0", "1.5", "3", "4.5", "6"]
    assert [len(e.frames) for e in examples] == [0, 3, 3, 3, 3]  # the first second has no frames before it
    for example in examples[1:]:
        assert {frame.size for frame in example.frames} == {(320, 180)}
        assert example.frames[-1].tobytes() == fit_longest_side(example.image, 320).tobytes()
        found = [figure_x(frame) for frame in example.frames]
        xs = [x for x in found if x is not None]
        assert len(xs) == len(found) and xs == sorted(xs) and xs[0] != xs[-1]  # oldest first, moving right
    backend, skipped = MotionBackend(), Counter[str]()
    scored = replay(backend, rules, {c.id: c for c in settings.cameras}, iter(examples), skipped)
    assert skipped == {"rule walking-right: asks over 3 frames; the example kept 1": 1}
    assert scored[("gate", "walking-right")].p_yes == [0.95] * 4
    assert list(from_clips([load_manifest(manifest)]))[1].frames == ()  # no rules given: single frames
