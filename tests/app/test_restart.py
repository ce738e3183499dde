"""State across restarts, against a real broker and a real database, with `streamwatch run`'s Service in a
process that is killed (SIGKILL) or stopped (SIGTERM): an open alert continues under its id and its
retained state stays ON, cooldowns hold, and after a crash the old outbox goes out before the states
announced on reconnect.

The model is a backend double whose answer is a file on disk ("yes" while the flag file exists), so the
test decides when the condition holds; everything around it is the real service.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.helpers import REPO
from support.mqtt import Broker, Subscriber

from streamwatch.store.db import Database
from streamwatch.store.events import EventStore

RULE = """
[[rules]]
id = "flag"
title = "The flag is up"
severity = "critical"
question = "Is the flag up? Answer yes or no."
confirm = { n = 2, m = 2 }
cooldown_s = 600
"""

SERVICE = """
import asyncio, sys
from pathlib import Path
from streamwatch.app.service import Service
from streamwatch.config import load_settings
from streamwatch.inference.backends.base import Backend, YesNo
from streamwatch.logs import setup_logging

class FlagBackend(Backend):
    name = "flag-double"
    def __init__(self, flag):
        self.flag = flag
    def score_yes_no(self, prompts):
        return [YesNo(0.95 if self.flag.exists() else 0.05) for _ in prompts]
    def generate(self, prompts, max_new_tokens):
        return ["-" for _ in prompts]

setup_logging("DEBUG")  # the decision lines are DEBUG
flag = Path(sys.argv[2])
asyncio.run(Service(load_settings(sys.argv[1]), backend_factory=lambda _s: FlagBackend(flag)).run())
"""


class Site:
    def __init__(self, folder: Path, broker: Broker) -> None:
        self.folder, self.broker = folder, broker
        (folder / "rules").mkdir()
        (folder / "rules" / "flag.toml").write_text(RULE)
        (folder / "service.py").write_text(SERVICE)
        self.flag = folder / "flag"
        self.config = folder / "config.toml"
        self.config.write_text(
            textwrap.dedent(f"""
            [model]
            id = "test/flag-double"
            [[cameras]]
            id = "gate"
            url = "{REPO / "samples" / "yard.mp4"}"
            sample_interval_s = 0.5
            change_area = 0  # the answers follow a flag file, not the picture: never reuse them
            [mqtt]
            host = "127.0.0.1"
            port = {broker.port}
            topic_prefix = "sw"
            keepalive_s = 5
            [web]
            enabled = false
            [storage]
            database_url = "sqlite:///{folder / "events.db"}"
        """)
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        log = (self.folder / f"run{self.runs}.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, str(self.folder / "service.py"), str(self.config), str(self.flag)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return (self.folder / f"run{self.runs}.log").read_text()

    def decisions(self, answer: str) -> int:
        return self.log().count(f"camera=gate rule=flag answer={answer!r}")

    def stop(self, sig: signal.Signals) -> None:
        assert self.process is not None
        os.kill(self.process.pid, sig)
        self.process.wait(60)
        self.process = None

    def events(self) -> list[dict[str, str]]:
        store = EventStore(Database.open(f"sqlite:///{self.folder / 'events.db'}"), self.folder / "snapshots")
        try:
            return [{"kind": e.kind, "alert_id": e.alert_id} for e in reversed(store.list())]
        finally:
            store.db.close()


@pytest.fixture
def site(tmp_path: Path, broker: Broker) -> Iterator[Site]:
    site = Site(tmp_path, broker)
    yield site
    if site.process is not None:
        site.process.kill()


def wait(condition: object, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def event_payloads(subscriber: Subscriber) -> list[dict[str, str]]:
    """Each event once, in the order it first arrived: delivery is at least once, so a message whose
    acknowledgement was lost in a SIGKILL arrives again after the restart."""
    events: dict[str, dict[str, str]] = {}
    for message in subscriber.on("sw/events"):
        event = json.loads(message.payload)
        events.setdefault(event["event_id"], event)
    return list(events.values())


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_an_open_alert_continues_under_its_id_after_a_restart(site: Site, broker: Broker, sig: signal.Signals) -> None:
    subscriber = Subscriber(broker.port, "sw/#")
    site.flag.touch()
    site.start()
    wait(lambda: any(e["type"] == "open" for e in event_payloads(subscriber)), "the alert to open")
    alert_id = event_payloads(subscriber)[0]["alert_id"]
    site.stop(sig)
    states_before = len(subscriber.on("sw/gate/flag/state"))
    site.start()
    wait(lambda: site.decisions("yes") >= 4, "decisions after the restart")
    states = [m.payload for m in subscriber.on("sw/gate/flag/state")][states_before:]
    assert states and set(states) == {b"ON"}  # announced ON again, never a false all-clear
    assert [e["type"] for e in event_payloads(subscriber)].count("open") == 1  # no second alert for one incident
    assert f"alert continues after restart: camera=gate rule=flag alert={alert_id}" in site.log()
    site.flag.unlink()
    wait(lambda: any(e["type"] == "resolved" for e in event_payloads(subscriber)), "the alert to resolve")
    resolved = next(e for e in event_payloads(subscriber) if e["type"] == "resolved")
    assert resolved["alert_id"] == alert_id
    wait(lambda: subscriber.on("sw/gate/flag/state")[-1].payload == b"OFF", "the state OFF")
    site.stop(signal.SIGTERM)
    assert [e["kind"] for e in site.events() if e["kind"] != "update"] == ["open", "resolved"]
    assert {e["alert_id"] for e in site.events()} == {alert_id}
    subscriber.close()


def test_a_cooldown_holds_across_a_restart(site: Site, broker: Broker) -> None:
    subscriber = Subscriber(broker.port, "sw/events")
    site.flag.touch()
    site.start()
    wait(lambda: len(event_payloads(subscriber)) >= 1, "the alert to open")
    site.flag.unlink()
    wait(lambda: any(e["type"] == "resolved" for e in event_payloads(subscriber)), "the alert to resolve")
    site.stop(signal.SIGTERM)  # cooling down for 600 s from here
    site.flag.touch()
    site.start()
    wait(lambda: site.decisions("yes") >= 6, "positive answers during the cooldown")
    site.stop(signal.SIGKILL)
    assert [e["type"] for e in event_payloads(subscriber)] == ["open", "resolved"]
    subscriber.close()


def test_after_a_crash_the_old_outbox_goes_out_before_the_announced_states(site: Site, broker: Broker) -> None:
    site.flag.touch()
    site.start()
    wait(lambda: "mqtt: connected to" in site.log(), "the first connection")
    broker.stop()
    wait(lambda: site.decisions("yes") >= 3, "the alert to open while the broker is away")
    wait(lambda: "alert open: camera=gate rule=flag" in site.log(), "the alert event")
    site.stop(signal.SIGKILL)  # the open event and its ON wait in the outbox
    broker.start()
    subscriber = Subscriber(broker.port, "sw/#")
    site.start()
    wait(lambda: len(subscriber.on("sw/gate/flag/state")) >= 2, "the backlog and the announcement")
    site.flag.unlink()
    wait(lambda: any(e["type"] == "resolved" for e in event_payloads(subscriber)), "the alert to resolve")
    wait(lambda: subscriber.on("sw/gate/flag/state")[-1].payload == b"OFF", "the state OFF")
    states = [m.payload for m in subscriber.on("sw/gate/flag/state")]
    assert states == [b"ON", b"ON", b"OFF"]  # the backlog, the announced (restored) state, the resolve
    opened, resolved = event_payloads(subscriber)
    assert (opened["type"], resolved["type"]) == ("open", "resolved") and opened["alert_id"] == resolved["alert_id"]
    later = Subscriber(broker.port, "sw/gate/flag/state")
    assert later.wait_for("sw/gate/flag/state")[0].payload == b"OFF"  # what Home Assistant sees now
    site.stop(signal.SIGTERM)
    subscriber.close()
    later.close()


def test_an_alert_whose_rule_is_gone_is_resolved_at_start(site: Site, broker: Broker) -> None:
    subscriber = Subscriber(broker.port, "sw/#")
    site.flag.touch()
    site.start()
    wait(lambda: len(event_payloads(subscriber)) >= 1, "the alert to open")
    site.stop(signal.SIGKILL)
    (site.folder / "rules" / "flag.toml").write_text(RULE.replace('id = "flag"', 'id = "other"'))
    site.start()
    wait(lambda: len(event_payloads(subscriber)) >= 2, "the resolve of the unwatched alert")
    opened, resolved = event_payloads(subscriber)[:2]
    assert resolved["type"] == "resolved" and resolved["alert_id"] == opened["alert_id"]
    assert resolved["answer"] == "(no longer watched)" and resolved["rule"] == "flag"
    wait(lambda: subscriber.on("sw/gate/flag/state")[-1].payload == b"OFF", "the state OFF")
    site.stop(signal.SIGTERM)
    subscriber.close()


@pytest.mark.parametrize(
    "edit",
    [
        lambda rules: (rules / "flag.toml").unlink(),
        lambda rules: (rules / "flag.toml").write_text(RULE + "enabled = false\n"),
        lambda rules: (rules / "flag.toml").write_text(RULE + 'cameras = ["another-camera"]\n'),
    ],
    ids=["removed", "disabled", "retargeted"],
)
def test_an_open_alert_whose_rule_goes_away_while_running_is_resolved(
    site: Site, broker: Broker, edit: Callable[[Path], None]
) -> None:
    subscriber = Subscriber(broker.port, "sw/#")
    site.flag.touch()  # the condition keeps holding: only the rule change can end the alert
    site.start()
    wait(lambda: len(event_payloads(subscriber)) >= 1, "the alert to open")
    edit(site.folder / "rules")
    wait(lambda: len(event_payloads(subscriber)) >= 2, "the resolve of the alert whose rule went away")
    opened, resolved = event_payloads(subscriber)[:2]
    assert (opened["type"], resolved["type"]) == ("open", "resolved") and resolved["alert_id"] == opened["alert_id"]
    assert resolved["answer"] == "(no longer watched)"
    wait(lambda: subscriber.on("sw/gate/flag/state")[-1].payload == b"OFF", "the retained state OFF")
    site.stop(signal.SIGTERM)
    later = Subscriber(broker.port, "sw/gate/flag/state")
    assert later.wait_for("sw/gate/flag/state")[0].payload == b"OFF"  # what Home Assistant sees now
    subscriber.close()
    later.close()


def test_a_clip_cut_off_by_a_crash_is_settled_at_the_next_start(site: Site) -> None:
    """SIGKILL less than clip_post_s after an alert opened: the clip was never written. The next start says
    so (no clip), instead of "being recorded" for ever."""
    site.config.write_text(site.config.read_text().replace("change_area = 0", "change_area = 0\nclip_post_s = 60"))
    site.flag.touch()
    site.start()
    store = EventStore(Database.open(f"sqlite:///{site.folder / 'events.db'}"), site.folder / "data" / "snapshots")
    try:

        def opened() -> list[str]:
            return [e.uid for e in store.list() if e.kind == "open" and e.clip is not None and e.clip_s is None]

        wait(lambda: opened(), "an alert whose clip is being recorded")
        uid = opened()[0]
        site.stop(signal.SIGKILL)
        assert store.get(uid).clip is not None  # type: ignore[union-attr]  # as the crash left it
        site.flag.unlink()
        site.start()
        wait(lambda: store.get(uid).clip is None, "the cut-off clip to be settled")  # type: ignore[union-attr]
        assert f"the clip of event {uid} was lost" in site.log()
        site.stop(signal.SIGTERM)
    finally:
        store.db.close()
