"""Rules while the service runs: hot reload (good and broken edits) and when rules are due (interval, hours, cron)."""

from __future__ import annotations

import logging
import os
import textwrap
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from streamwatch.config import CameraConfig
from streamwatch.rules.loader import RuleSet, load_rules
from streamwatch.rules.model import Rule
from streamwatch.rules.schedule import DueTracker
from streamwatch.rules.watch import RuleWatcher

CAMERAS = [CameraConfig(id="gate", url="gate.mp4", location="the north gate")]


def rule_file(question: str, rule_id: str = "climb", extra: str = "") -> str:
    return textwrap.dedent(f"""
        [[rules]]
        id = "{rule_id}"
        title = "Climbing"
        question = "{question}"
        {extra}
    """).lstrip()


def write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    stat = path.stat()  # make sure the change is visible even within one mtime tick
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir()
    write(folder / "perimeter.toml", rule_file("Is anyone climbing at {location}? Answer yes or no."))
    return folder


def questions(watcher: RuleWatcher) -> dict[str, str]:
    return {rule.id: rule.render(CAMERAS[0]) for rule in watcher.current.rules}


def reload(watcher: RuleWatcher) -> RuleSet | None:
    """What a running service's polls do with an edit: nothing at the poll that first sees it (it may
    be half written), then the rules it makes once it stood still for one poll (streamwatch.filewatch)."""
    assert watcher.check() is None
    return watcher.check()


def test_an_edit_applies_and_an_unchanged_folder_is_not_reloaded(rules_dir: Path) -> None:
    watcher = RuleWatcher(rules_dir, CAMERAS, load_rules(rules_dir, CAMERAS))
    assert watcher.check() is None and watcher.check() is None
    write(rules_dir / "perimeter.toml", rule_file("Is a person on the fence at {location}? Answer yes or no."))
    reloaded = reload(watcher)
    assert reloaded is not None
    assert questions(watcher) == {"climb": "Is a person on the fence at the north gate? Answer yes or no."}
    write(rules_dir / "extra.toml", rule_file("Is the gate open? Answer yes or no.", rule_id="gate-open"))
    assert reload(watcher) is not None and set(questions(watcher)) == {"climb", "gate-open"}
    (rules_dir / "extra.toml").unlink()
    assert reload(watcher) is not None and set(questions(watcher)) == {"climb"}


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (
            rule_file("Anyone at {loction}? Answer yes or no."),
            "perimeter.toml:4: rules[0].question: unknown template variable {loction}",
        ),
        (
            rule_file("Anyone? Answer yes or no.", extra="threshold = 2"),
            "perimeter.toml:5: rules[0].threshold: Input should be less than or equal to 1",
        ),
        ("[[rules]\nid = 'x'\n", "perimeter.toml:1: TOML syntax error"),
    ],
)
def test_a_broken_edit_is_rejected_and_the_previous_version_stays(
    rules_dir: Path, caplog: pytest.LogCaptureFixture, broken: str, message: str
) -> None:
    watcher = RuleWatcher(rules_dir, CAMERAS, load_rules(rules_dir, CAMERAS))
    before = questions(watcher)
    write(rules_dir / "perimeter.toml", broken)
    with caplog.at_level(logging.ERROR, logger="streamwatch.rules.watch"):
        reload(watcher)
    assert questions(watcher) == before
    assert message in caplog.text and "perimeter.toml rejected, keeping its previous version" in caplog.text
    assert watcher.rejected
    write(rules_dir / "perimeter.toml", rule_file("Fixed? Answer yes or no."))  # fixing it applies it
    reload(watcher)
    assert questions(watcher) == {"climb": "Fixed? Answer yes or no."} and not watcher.rejected


def test_a_new_file_reusing_a_rule_id_is_rejected(rules_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    watcher = RuleWatcher(rules_dir, CAMERAS, load_rules(rules_dir, CAMERAS))
    write(rules_dir / "zz-copy.toml", rule_file("Copy? Answer yes or no."))
    reload(watcher)
    assert questions(watcher) == {"climb": "Is anyone climbing at the north gate? Answer yes or no."}
    assert "rule id 'climb' is also defined in" in caplog.text


@pytest.mark.parametrize("name", ["aa-copy.toml", "zz-copy.toml"])
def test_a_new_file_never_displaces_live_rules_whatever_its_name(
    rules_dir: Path, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    write(rules_dir / "perimeter.toml", rule_file("Climbing? Answer yes or no.") + rule_file("Gate?", rule_id="gate"))
    watcher = RuleWatcher(rules_dir, CAMERAS, load_rules(rules_dir, CAMERAS))
    write(rules_dir / name, rule_file("Copy? Answer yes or no.", rule_id="gate") + rule_file("New?", rule_id="new"))
    with caplog.at_level(logging.ERROR, logger="streamwatch.rules.watch"):
        reload(watcher)
    assert set(questions(watcher)) == {"climb", "gate"}  # the original file, whole; the new one rejected whole
    assert f"{name}:" in caplog.text and "rule id 'gate' is also defined in" in caplog.text
    assert watcher.rejected and list(watcher.rejected) == [rules_dir / name]
    write(rules_dir / name, rule_file("New?", rule_id="new"))  # fixed: it loads beside the original
    reload(watcher)
    assert set(questions(watcher)) == {"climb", "gate", "new"} and not watcher.rejected


def test_an_edit_that_takes_another_files_id_keeps_the_previous_version(rules_dir: Path) -> None:
    write(rules_dir / "other.toml", rule_file("Gate open? Answer yes or no.", rule_id="gate"))
    watcher = RuleWatcher(rules_dir, CAMERAS, load_rules(rules_dir, CAMERAS))
    write(rules_dir / "other.toml", rule_file("Climb again?", rule_id="climb"))
    reload(watcher)
    assert set(questions(watcher)) == {"climb", "gate"}
    assert questions(watcher)["climb"] == "Is anyone climbing at the north gate? Answer yes or no."


@pytest.mark.parametrize("kind", ["symlink-loop", "fifo", "folder", "nested", "not-utf8", "huge"])
def test_files_that_cannot_be_read_are_rejected_and_the_watcher_goes_on(
    rules_dir: Path, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    watcher = RuleWatcher(rules_dir, CAMERAS, load_rules(rules_dir, CAMERAS))
    bad = rules_dir / "bad.toml"
    if kind == "symlink-loop":
        bad.symlink_to(bad)
    elif kind == "fifo":
        os.mkfifo(bad)  # a read would block the watcher for ever
    elif kind == "folder":
        bad.mkdir()
    elif kind == "nested":
        bad.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    elif kind == "not-utf8":
        bad.write_bytes(b"[[rules]]\nid = '\xff'\n")
    else:
        bad.write_text("#" * (2 * 1024 * 1024))
    with caplog.at_level(logging.ERROR, logger="streamwatch.rules.watch"):
        reload(watcher)
    assert "bad.toml rejected, not loaded" in caplog.text and watcher.rejected
    write(rules_dir / "perimeter.toml", rule_file("Still watching? Answer yes or no."))  # later edits still load
    reload(watcher)
    assert questions(watcher) == {"climb": "Still watching? Answer yes or no."}


def test_a_file_that_fails_in_an_unforeseen_way_is_rejected_and_the_watcher_goes_on(
    rules_dir: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import streamwatch.rules.watch as watch

    watcher = RuleWatcher(rules_dir, CAMERAS, load_rules(rules_dir, CAMERAS))
    real = watch.load_rule_file  # type: ignore[attr-defined]  # the name the watcher calls

    def flaky(path: Path, *args: object) -> object:
        if path.name == "odd.toml":
            raise RecursionError("maximum recursion depth exceeded")
        return real(path, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(watch, "load_rule_file", flaky)
    write(rules_dir / "odd.toml", rule_file("Odd?", rule_id="odd"))
    write(rules_dir / "perimeter.toml", rule_file("Edited? Answer yes or no."))
    with caplog.at_level(logging.ERROR, logger="streamwatch.rules.watch"):
        assert reload(watcher) is not None
    assert questions(watcher) == {"climb": "Edited? Answer yes or no."}  # the other file's edit still applied
    assert "odd.toml: cannot load: RecursionError" in caplog.text and "odd.toml rejected, not loaded" in caplog.text


def test_a_missing_rules_folder_keeps_the_rules_and_comes_back(
    rules_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    watcher = RuleWatcher(rules_dir, CAMERAS, load_rules(rules_dir, CAMERAS))
    moved = rules_dir.with_name("moved")
    rules_dir.rename(moved)
    with caplog.at_level(logging.ERROR, logger="streamwatch.rules.watch"):
        assert watcher.check() is None and watcher.check() is None
    assert caplog.text.count("rules folder not found; keeping the 1 rules loaded") == 1  # said once, not every poll
    assert set(questions(watcher)) == {"climb"}
    moved.rename(rules_dir)
    write(rules_dir / "perimeter.toml", rule_file("Back? Answer yes or no."))
    assert reload(watcher) is not None and questions(watcher) == {"climb": "Back? Answer yes or no."}


def make_rule(**fields: object) -> Rule:
    return Rule.model_validate({"id": "r", "title": "R", "question": "Q? Answer yes or no.", **fields})


def test_rules_are_due_at_their_own_interval() -> None:
    tracker = DueTracker(camera_interval_s=2.0)
    fast, slow = make_rule(id="fast"), make_rule(id="slow", sample_interval_s=6)
    local = datetime(2026, 11, 21, 12, 0).astimezone()
    due = [[r.id for r in tracker.due([fast, slow], t, local)] for t in (0.0, 2.0, 4.0, 6.0)]
    assert due == [["fast", "slow"], ["fast"], ["fast"], ["fast", "slow"]]


def test_active_hours_wrap_past_midnight() -> None:
    tracker = DueTracker(camera_interval_s=1.0)
    night = make_rule(active_hours="22:00-06:00")
    for step, (hour, expected) in enumerate(((21, False), (22, True), (3, True), (6, False), (12, False))):
        local = datetime(2026, 11, 21, hour, 30).astimezone()
        assert bool(tracker.due([night], step * 10.0, local)) is expected, hour


def test_cron_rules_run_once_each_time_the_schedule_fires() -> None:
    tracker = DueTracker(camera_interval_s=2.0)
    quarter = make_rule(schedule="*/15 * * * *")  # at :00, :15, :30, :45
    start = datetime(2026, 11, 21, 8, 7, 30).astimezone()
    fired = [
        (start + timedelta(minutes=minutes)).strftime("%H:%M")
        for minutes in range(0, 40)
        if tracker.due([quarter], float(minutes), start + timedelta(minutes=minutes))
    ]
    assert fired == ["08:15", "08:30", "08:45"]  # checked each minute from 08:07:30 to 08:46:30
