"""Alerts as one item and full-text search, on SQLite (FTS5) and PostgreSQL (full text): open, updates
and resolved read as one alert with its duration, peak confidence, first and last snapshot; filters;
words searched in question, answer, description, review note, camera, rule and title; search rows
follow the events (review notes added later, retention)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.events import new_event

from streamwatch.errors import SearchError
from streamwatch.store.alert_list import AlertFilter, AlertList
from streamwatch.store.db import Database
from streamwatch.store.events import EventStore
from streamwatch.vocabulary import Verdict

JPEG = b"\xff\xd8 not really a jpeg"


@pytest.fixture(params=["sqlite", "postgresql"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[EventStore, AlertList]]:
    url = (
        f"sqlite:///{tmp_path / 'events.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    )
    database = Database.open(url)
    yield EventStore(database, tmp_path / "snapshots"), AlertList(database)
    database.close()


def record(store: EventStore, uid: str, alert: str, kind: str, **fields: Any) -> None:
    store.record(dataclasses.replace(new_event(uid, alert_id=alert, kind=kind), **fields), JPEG)


def test_alerts_as_one_item_filtered_and_searched(stores: tuple[EventStore, AlertList]) -> None:
    store, alerts = stores
    fence = {"camera": "yard", "rule": "fence-climb", "title": "Person climbing the fence"}
    record(store, "a1", "a1", "open", confidence=0.81, description="A person in a red jacket climbs.", **fence)
    record(store, "a2", "a1", "update", confidence=0.97, **fence)
    record(store, "a3", "a1", "resolved", confidence=0.1, answer="no", **fence)
    truck = {"camera": "aisle", "rule": "forklift-blocking-aisle", "title": "Forklift blocking the aisle"}
    record(store, "b1", "b1", "open", confidence=0.7, severity="warning", **truck)
    store.review("a1", Verdict.CONFIRMED, "Tuesday drill, night shift")

    (newest, oldest) = alerts.list()
    assert (newest.alert_id, oldest.alert_id) == ("b1", "a1") and alerts.count() == 2
    assert [e.uid for e in oldest.events] == ["a1", "a2", "a3"] and oldest.state == "resolved"
    assert oldest.peak_confidence == pytest.approx(0.97)  # the resolve's "no" is not a peak
    assert oldest.first.uid == "a1" and oldest.last_snapshot is not None and oldest.last_snapshot.uid == "a2"
    assert oldest.duration_s() == pytest.approx((oldest.events[-1].created_at - oldest.opened_at).total_seconds())
    assert newest.state == "open" and newest.duration_s(newest.opened_at + timedelta(seconds=90)) == 90
    assert oldest.first.verdict == "confirmed" and oldest.first.note == "Tuesday drill, night shift"

    def ids(**where: object) -> list[str]:
        found = [a.alert_id for a in alerts.list(AlertFilter(**where))]  # type: ignore[arg-type]
        assert alerts.count(AlertFilter(**where)) == len(found)  # type: ignore[arg-type]
        return found

    assert ids(state="open") == ["b1"] and ids(state="resolved") == ["a1"]
    assert ids(camera="yard") == ["a1"] and ids(severity="warning") == ["b1"]
    assert ids(reviewed=False) == ["b1"] and ids(verdict="confirmed") == ["a1"]
    assert ids(since=datetime.now(UTC) + timedelta(hours=1)) == [] and ids(until=datetime.now(UTC)) == ["b1", "a1"]
    # words: all of them, in any searched field, whole or as the start of a word
    assert ids(q="forklift") == ["b1"]  # title, rule
    assert ids(q="red jacket") == ["a1"]  # the description of its open event
    assert ids(q="tuesday NIGHT") == ["a1"]  # the review note, any case
    assert ids(q="jack") == ["a1"]  # a word's start
    assert ids(q="red forklift") == []  # all words must match
    assert ids(q="aisle") == ["b1"] and ids(q="yard") == ["a1"]  # camera ids
    assert ids(q="forklift-blocking") == ["b1"] and ids(q='"red" OR * (jacket') == ["a1"]  # no syntax
    assert ids(q="!!!") == ["b1", "a1"]  # no word: no condition
    assert ids(q="forklift", camera="yard") == []
    with pytest.raises(SearchError, match="at most 200 characters"):
        alerts.list(AlertFilter(q="x" * 201))
    # the search follows the events: a note written later, events pruned by retention
    store.review("b1", Verdict.FALSE_POSITIVE, "pallet jack, not a forklift")
    assert ids(q="pallet") == ["b1"]
    store.prune(datetime.now(UTC) + timedelta(days=1))
    assert ids(q="pallet") == [] and alerts.count() == 0 and alerts.get("a1") is None


def test_streamwatch_events_search(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    (tmp_path / "config.toml").write_text('[storage]\ndatabase_url = "sqlite:///events.db"\n', encoding="utf-8")
    store = EventStore(Database.open(f"sqlite:///{tmp_path / 'events.db'}"), tmp_path / "snapshots")
    record(store, "a1", "a1", "open", description="A forklift parks in aisle 3.", camera="aisle", rule="forklift")
    record(store, "a2", "a1", "resolved", camera="aisle", rule="forklift")
    record(store, "b1", "b1", "open", camera="yard")

    def search(*words: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "streamwatch", "events", "search", *words, "-c", str(tmp_path / "config.toml")]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    found = search("forklift", "parks")
    assert found.returncode == 0, found.stderr
    (line,) = found.stdout.splitlines()
    assert " resolved " in line and "aisle/forklift" in line and line.endswith(" a1")
    listed = json.loads(search("forklift", "--json").stdout)
    assert [a["alert_id"] for a in listed] == ["a1"] and listed[0]["events"] == 2 and listed[0]["state"] == "resolved"
    assert search("submarine").stdout.strip() == "no alerts match 'submarine'"
    refused = search("x" * 201)
    assert (
        refused.returncode == 2 and "q: at most 200 characters" in refused.stderr and "Traceback" not in refused.stderr
    )
