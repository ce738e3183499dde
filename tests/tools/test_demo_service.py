"""`streamwatch run` end to end with the shipped demo model through the real transformers backend:
the yard clip's intruder climbs the fence and the shipped fence-climb rule opens an alert while they are
on it and resolves it after they have left it (no test double: the model looks at the frames)."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
from support.helpers import REPO, wait_for
from support.service import Running

from streamwatch.config import load_settings
from streamwatch.inference.build import build_backend
from streamwatch.pipeline.decision import Decision
from streamwatch.tools.demo.clips import event_window

MODEL = REPO / "models" / "demo-glm4v"


@pytest.mark.slow
def test_the_demo_model_opens_and_resolves_the_fence_climb_alert_on_the_yard_clip(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    shutil.copy(REPO / "rules" / "perimeter.toml", tmp_path / "rules" / "perimeter.toml")
    (tmp_path / "config.toml").write_text(
        textwrap.dedent(f"""
        rules_dir = "rules"
        [model]
        id = "{MODEL}"
        device = "cpu"
        [[cameras]]
        id = "yard"
        url = "{REPO / "samples" / "yard.mp4"}"
        sample_interval_s = 1.0
        tags = ["perimeter"]
        location = "the north yard"
        zone = "fence line"
        [storage]
        database_url = "sqlite:///data/events.db"
        snapshot_dir = "data/snapshots"
        [web]
        enabled = false
        [mqtt]
        enabled = false
    """).lstrip(),
        encoding="utf-8",
    )
    start, end = event_window("yard", "fence-climb") or (0.0, 0.0)
    running = Running(load_settings(tmp_path / "config.toml"), backend_factory=build_backend)  # as `run` builds it
    try:

        def climb() -> list[Decision]:
            return [d for d in running.decisions if d.rule.id == "fence-climb" and d.frame_pts is not None]

        # the clip is paced to real time: wait until the first pass is 4 s past the climb
        wait_for(
            lambda: any(d.frame_pts is not None and d.frame_pts > end + 4 for d in climb()),
            120,
            "the yard clip to play past the climb",
        )
    finally:
        running.stop()
    first_pass: list[Decision] = []
    for d in climb():
        if first_pass and d.frame_pts is not None and d.frame_pts < (first_pass[-1].frame_pts or 0):
            break  # the clip started again
        first_pass.append(d)
    events = [(d.transition, d.frame_pts) for d in first_pass if d.transition]
    assert [kind for kind, _ in events] == ["open", "resolved"], [
        (d.frame_pts, d.answer.confidence) for d in first_pass
    ]
    (_, opened), (_, resolved) = events
    assert opened is not None and resolved is not None
    assert start < opened <= end  # confirmed (2 of 3 samples) while the intruder is on the fence
    assert end <= resolved <= end + 4  # three samples in a row without them
    assert any(d.frame_pts is not None and d.frame_pts < start - 4 for d in first_pass)  # the walk was watched too
