"""The hourly limit of a notification target: only what went out counts, so steady load gets what the
limit has room for in every hour (never 30, 0, 0); critical notifications are never held back; a
restart rebuilds the window from the last hour's events (no fresh hour, nothing forgotten)."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from support.events import new_event
from support.notify import events_and_target, record

from streamwatch.config import NotifyConfig
from streamwatch.outputs.limit import HOUR_S, HourlyLimit
from streamwatch.outputs.notify import NotifyOutput
from streamwatch.outputs.relay import Relay
from streamwatch.store.db import Database
from streamwatch.store.message import Message
from streamwatch.store.models import Event
from streamwatch.store.outbox import Outbox


def sent_per_hour(severities: list[str], every_s: float, hours: int, max_per_hour: int) -> list[int]:
    """Notifications of the given severities in turn, one every `every_s` for `hours`: how many went out
    in each clock hour."""
    limit = HourlyLimit("t#1", max_per_hour)
    sent: Counter[int] = Counter()
    at, index = 0.0, 0
    while at < hours * HOUR_S:
        if limit.admit(severities[index % len(severities)], at):
            sent[int(at // HOUR_S)] += 1
        at, index = at + every_s, index + 1
    return [sent[hour] for hour in range(hours)]


@pytest.mark.parametrize(
    ("severities", "every_s", "max_per_hour", "expected"),
    [
        (["warning"], 60.0, 30, [30, 30, 30]),  # steady load over the limit: the limit's worth every hour
        (["warning"], 7.0, 30, [30, 30, 30]),
        (["info"], 60.0, 1, [1, 1, 1]),
        (["warning"], 200.0, 30, [18, 18, 18]),  # under the limit: all of them
        (["critical"], 60.0, 30, [60, 60, 60]),  # one critical a minute for 3 hours: every one
        (["critical"], 1.0, 5, [3600, 3600, 3600]),
    ],
)
def test_steady_load_gets_the_limits_worth_every_hour(
    severities: list[str], every_s: float, max_per_hour: int, expected: list[int]
) -> None:
    assert sent_per_hour(severities, every_s, 3, max_per_hour) == expected


def test_critical_takes_room_but_is_never_held_back() -> None:
    limit = HourlyLimit("t#1", 3)
    decided = [limit.admit(severity, float(i)) for i, severity in enumerate(["critical"] * 3 + ["warning", "critical"])]
    assert decided == [True, True, True, False, True]  # the warning waits; the critical one after it does not
    assert limit.admit("warning", HOUR_S + 2.5)  # the first three aged out: room again
    assert limit.admit("warning", HOUR_S + 2.6)
    assert not limit.admit("warning", HOUR_S + 2.7)  # the critical one at 4 s still counts


def test_holding_back_is_logged_once_a_stretch(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    limit = HourlyLimit("ops#1", 1)
    for at in (0.0, 1.0, 2.0, 3.0):
        limit.admit("warning", at)
    assert caplog.text.count("holding back") == 1
    limit.admit("warning", HOUR_S + 1)  # room again, then held again: a new stretch
    limit.admit("warning", HOUR_S + 2)
    assert caplog.text.count("holding back") == 2


def test_a_restart_rebuilds_the_window_from_the_last_hour(tmp_path: Path) -> None:
    config = NotifyConfig(
        name="ops", urls=["json://127.0.0.1:9/hook"], severities=["critical", "warning"], max_per_hour=2
    )
    store, target, _metrics = events_and_target(tmp_path, config)
    assert [record(store, target, f"w{i}", severity="warning") for i in range(3)] == [1, 1, 0]
    store.db.close()

    store, restarted, metrics = events_and_target(tmp_path, config)  # the same database, a new process's target
    asyncio.run(enter_and_leave(restarted))
    assert record(store, restarted, "w3", severity="warning") == 0  # still the same hour: no room
    assert record(store, restarted, "c1", severity="critical") == 1
    assert 'outcome="over_limit",target="ops#1"} 1.0' in metrics.render().decode()


def test_events_older_than_an_hour_do_not_count_after_a_restart(tmp_path: Path) -> None:
    config = NotifyConfig(name="ops", urls=["json://127.0.0.1:9/hook"], severities=["warning"], max_per_hour=1)
    store, _target, _metrics = events_and_target(tmp_path, config)
    old = datetime.now(UTC) - timedelta(minutes=61)
    store.record(new_event("old", severity="warning", frame_at=old), None, lambda _event: {})
    with store.db.session() as session, session.begin():  # committed 61 minutes ago
        session.execute(update(Event).where(Event.uid == "old").values(created_at=old))
    store.db.close()
    store, restarted, _metrics = events_and_target(tmp_path, config)
    asyncio.run(enter_and_leave(restarted))
    assert record(store, restarted, "w1", severity="warning") == 1


async def enter_and_leave(target: NotifyOutput) -> None:
    async with target.running():
        pass


def test_a_failing_target_tries_again_at_once_when_a_new_notification_is_committed(tmp_path: Path) -> None:
    """The receiver was down and the backoff has grown long; a new notification does not wait it out."""
    from streamwatch.store.message import Message

    outbox = Outbox(Database.open(f"sqlite:///{tmp_path / 'relay.db'}"), sink="notify:test")
    up = asyncio.Event()
    sent: list[bytes] = []

    async def send(message: Message) -> None:
        if not up.is_set():
            raise ConnectionRefusedError("receiver down")
        sent.append(message.payload)

    async def scenario() -> None:
        relay = Relay("target t#1", outbox, send, retry_initial_s=120.0, retry_max_s=120.0)
        async with relay.running():
            outbox.add([Message("t#1", b"first")])
            relay.notify()
            while relay.last_error is None:  # failed once: now backing off for 120 s
                await asyncio.sleep(0.02)
            up.set()  # the receiver is back
            outbox.add([Message("t#1", b"second")])
            relay.notify()
            async with asyncio.timeout(60):  # well inside the 120 s backoff
                while len(sent) < 2:
                    await asyncio.sleep(0.02)

    asyncio.run(scenario())
    assert sent == [b"first", b"second"]  # in order, the waiting one first
    assert inspect.signature(NotifyOutput).parameters["retry_max_s"].default == 5.0  # the longest a target waits
