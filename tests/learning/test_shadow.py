"""Shadow rules (mode = "shadow"): checked with file:line errors; run live through `streamwatch run` on
the live rule's frames, their decisions stored beside the live answers, never an alert, never on MQTT, a
disagreement kept as a label request of the live rule; measured by `streamwatch eval` on the live rule's
labelled frames beside it, with the running service's record; retention prunes them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from support.demo_site import demo_site, label_boards
from support.events import new_event
from support.helpers import REPO, wait_for
from support.mqtt import Broker, Subscriber
from support.service import RULES, Running, write_site

from streamwatch.alerts.recorder import jpeg
from streamwatch.config import load_settings
from streamwatch.errors import DataFileError
from streamwatch.learning.shadow_rules import with_shadows
from streamwatch.rules.loader import load_rules
from streamwatch.store.db import Database
from streamwatch.store.events import EventStore
from streamwatch.store.labels import LabelStore
from streamwatch.store.shadow import NewShadowDecision, ShadowStore
from streamwatch.tools.demo.dataset import demo_tasks, example
from streamwatch.vocabulary import Verdict

SHADOW = """
[[rules]]
id = "right-side-strict"
title = "Person on the right side (stricter candidate)"
cameras = ["tag:perimeter"]
question = "Is a person clearly standing at the right side of {location}? Answer yes or no."
threshold = 0.99
mode = "shadow"
shadows = "right-side"
"""


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ('shadows = "right-side"', ':1: rules[0]: shadows names the live rule of a shadow rule: set mode = "shadow"'),
        ('mode = "shadow"\nshadows = "candidate"', ":1: rules[0]: a shadow rule cannot shadow itself"),
        ('mode = "dark"', ":8: rules[0].mode: Input should be 'live' or 'shadow'"),
        ('mode = "shadow"\nshadows = "Not An Id"', ":9: rules[0].shadows: "),
    ],
)
def test_shadow_settings_with_errors_are_named_with_file_and_line(tmp_path: Path, extra: str, expected: str) -> None:
    body = '[[rules]]\nid = "candidate"\ntitle = "C"\nquestion = "Q? Answer yes or no."\ncameras = ["*"]\n'
    (tmp_path / "r.toml").write_text(body + "\n\n" + extra + "\n")
    with pytest.raises(DataFileError) as info:
        load_rules(tmp_path, [])
    assert any(expected in problem for problem in info.value.problems), info.value.problems


def test_a_shadow_rule_goes_with_its_live_rule_and_warns_when_that_is_missing(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(RULES + SHADOW)
    rules = load_rules(tmp_path, []).rules
    live, shadow = rules
    assert live.live and not shadow.live and shadow.shadows == "right-side"
    assert with_shadows([live, shadow], rules) == [live, shadow]  # due together
    assert with_shadows([shadow], rules) == []  # never on its own while its live rule is there
    assert with_shadows([], rules) == []
    (tmp_path / "a.toml").write_text(SHADOW)
    alone = load_rules(tmp_path, [])
    assert with_shadows(alone.rules, alone.rules) == alone.rules  # no live rule here: on its own schedule
    assert "rule 'right-side-strict' shadows 'right-side', which is not a live rule here" in alone.warnings[-1]


def test_a_shadow_rule_runs_beside_the_live_one_stores_its_decisions_and_never_alerts(
    tmp_path: Path, broker: Broker
) -> None:
    subscriber = Subscriber(broker.port, "#")
    config = write_site(tmp_path, str(REPO / "samples" / "yard.mp4"), broker.port)
    (tmp_path / "rules" / "shadow.toml").write_text(SHADOW)
    config.write_text(config.read_text() + "[labels]\nevery_s = 0\n")
    settings = load_settings(config)
    database = Database.open(settings.database_url())
    shadows = ShadowStore(database)
    labels = LabelStore(database, tmp_path / "data" / "snapshots", max_pending=99, max_labelled=99)
    running = Running(settings)  # the scene double: P(yes) 0.95 while the figure is right of centre

    def disagreed() -> int:
        rows = shadows.agreement()
        return rows[0]["shadow_only"] + rows[0]["live_only"] if rows else 0

    try:
        # the live rule alerts at 0.95 >= 0.5; the stricter candidate would not (0.95 < 0.99)
        wait_for(lambda: disagreed() >= 2, 60, "the figure on the right: the two rules disagree")
        base = f"http://127.0.0.1:{settings.web.port}"
        shown = {rule["id"]: rule for rule in httpx.get(base + "/api/rules").json()}
        candidate = shown["right-side-strict"]
        assert (candidate["mode"], candidate["shadows"], candidate["threshold"]) == ("shadow", "right-side", 0.99)
        assert candidate["shadow_record"][0]["paired"] > 0 and shown["right-side"]["mode"] == "live"
        page = httpx.get(base + "/rules").text
        assert "shadow of right-side" in page and "beside right-side: both alerted" in page
    finally:
        running.stop()
    subscriber.close()
    (row,) = shadows.agreement()
    assert (row["camera"], row["rule"], row["shadows"]) == ("gate", "right-side-strict", "right-side")
    assert row["paired"] == row["decisions"] > 0  # asked on exactly the live rule's frames
    assert row["live_only"] >= 2 and row["shadow_only"] == 0 and row["both"] == 0
    assert row["neither"] + row["live_only"] == row["paired"]
    shadow_decisions = [d for d in running.decisions if d.rule.id == "right-side-strict"]
    assert shadow_decisions and all(d.transition is None for d in shadow_decisions)
    store = EventStore(database, tmp_path / "data" / "snapshots")
    assert {event.rule for event in store.list()} == {"right-side"}  # the live rule alerted; the shadow never
    assert not [t for t in subscriber.topics() if "right-side-strict" in t]  # nothing on MQTT, no discovery
    asked = labels.list(labelled=False, limit=100, offset=0)
    assert any(item.reason == "shadow" and item.rule == "right-side" for item in asked)  # a label settles it
    database.close()


def test_retention_prunes_shadow_decisions_by_age_and_count(tmp_path: Path) -> None:
    database = Database.open(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store = ShadowStore(database, max_rows=3)
    now = datetime.now(UTC)
    for minutes in (60 * 24 * 40, 5, 4, 3, 2, 1):
        at = now - timedelta(minutes=minutes)
        store.record(NewShadowDecision(at, "gate", "s", "live", "yes", 0.9, True, "no", 0.1, False))
    assert store.agreement()[0]["decisions"] == 6
    assert store.prune(now - timedelta(days=30)) == 3  # the 40-day-old one, then the two oldest beyond 3
    (row,) = store.agreement()
    assert row["decisions"] == 3 and row["shadow_only"] == 3
    assert row["first"] == (now - timedelta(minutes=3)).isoformat()
    database.close()


def test_eval_measures_a_shadow_rule_on_the_live_rules_labelled_frames(tmp_path: Path) -> None:
    config, events, labels = demo_site(tmp_path, own_rules=True)
    (tmp_path / "rules" / "candidate.toml").write_text(
        textwrap.dedent("""
        [[rules]]
        id = "solder-bridge-loose"
        title = "Solder bridge (looser candidate)"
        cameras = ["tag:defect"]
        question = "Is there a solder bridge between two pins of the chip? Answer yes or no."
        threshold = 0.0
        mode = "shadow"
        shadows = "solder-bridge"
        """)
    )
    rng = np.random.default_rng(11)
    label_boards(labels, 10, rng, reason="shadow")
    # a count rule's reviewed alert is measured too (its condition, not a threshold)
    (crowd,) = [t for t in demo_tasks(REPO / "rules") if t.rule.id == "shelf-fill"]
    shelf = jpeg(Image.fromarray(example(crowd, rng, "empty").image))
    events.record(new_event("ev-shelf", camera="aisle", rule="shelf-fill"), shelf)
    events.review("ev-shelf", Verdict.CONFIRMED, "")
    database = events.db
    ShadowStore(database).record(
        NewShadowDecision(
            datetime.now(UTC), "line", "solder-bridge-loose", "solder-bridge", "no", 0.1, True, "no", 0.1, False
        )
    )
    database.close()
    command = [sys.executable, "-m", "streamwatch", "eval", "-c", str(config), "--out", "out"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "eval.json").read_text())
    (candidate,) = report["candidates"]
    rows = {row["rule"]: row for row in candidate["rows"]}
    live, loose = rows["solder-bridge"], rows["solder-bridge-loose"]
    assert live["n"] == loose["n"] == 10 and loose["mode"] == "shadow" and loose["shadows"] == "solder-bridge"
    assert loose["recall"] == 1.0 and loose["precision"] == 0.5  # at threshold 0 it calls every board a bridge
    (pair,) = candidate["shadow_pairs"]
    assert (pair["live"], pair["shadow"], pair["n"]) == ("solder-bridge", "solder-bridge-loose", 10)
    assert pair["precision_shadow"] == 0.5 and pair["f1_live"] == live["f1"]
    shelf_row = rows["shelf-fill"]
    assert shelf_row["answer"] == "choice" and shelf_row["threshold"] is None and shelf_row["n"] == 1
    assert shelf_row["suggested_threshold"] is None and shelf_row["recall"] in (0.0, 1.0)
    (agreed,) = report["live_agreement"]
    assert agreed["rule"] == "solder-bridge-loose" and agreed["shadow_only"] == 1
    shown = (tmp_path / "out" / "eval.md").read_text()
    assert "Shadow rules on their live rule's labelled frames" in shown
    assert "## Shadow rules in the running service" in shown
