"""Apply a change through the gate, or roll back to an earlier version: the orchestration of the gate
(check.py), the versions (versions.py) and the live files (live.py), for the CLI, jobs and the web."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from streamwatch.config import Settings
from streamwatch.errors import NotApplied
from streamwatch.learning.release.check import KEEP, Change, Keep, live_adapter, run_gate
from streamwatch.learning.release.gate import GateReport
from streamwatch.learning.release.live import (
    apply_adapter,
    check_adapter,
    check_slot,
    current_thresholds,
    set_thresholds,
)
from streamwatch.learning.release.versions import State, Version, Versions, same_adapter
from streamwatch.store.db import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    report: GateReport
    version: Version
    applied: bool


def versions_of(settings: Settings, database: Database) -> Versions:
    return Versions(database, settings.path(settings.jobs.dir), settings.release.keep)


def live_state(settings: Settings) -> State:
    return State(live_adapter(settings), current_thresholds(settings.path(settings.rules_dir), settings.cameras))


def baseline(versions: Versions, now: State, by: str) -> Version:
    """The state before the first recorded change, as version 1 (so it can be rolled back to); and where
    what runs is no longer the live version's (a rule file or the adapter slot edited by hand, a rule
    added), that state as a version too, so that a rollback can return to it."""
    live = versions.live()
    changes = ["as configured"]
    if live is not None:
        try:
            recorded = State(versions.adapter_path(live), live.thresholds)
        except FileNotFoundError:  # its copy pruned: the adapter cannot be compared, the thresholds can
            recorded = State(now.adapter, live.thresholds)
        differences = _differences(recorded, now)
        if not differences:
            return live
        changes = ["changed outside streamwatch release", *differences]
    return versions.record(by=by, action="baseline", outcome="not gated", state=now, changes=changes)


def _same_files(a: Path | None, b: Path | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return same_adapter(a, b)


def apply_change(
    settings: Settings,
    database: Database,
    change: Change,
    *,
    by: str,
    override: str | None = None,
    job_id: str | None = None,
    service_loads: bool = False,
) -> Outcome:
    """Gate the change; live when it passes, or (recorded) when `override` gives a reason; else refused
    and recorded as such. NotApplied: it cannot be made live at all (no adapter slot, a bad adapter).
    `service_loads`: the running service loads the adapter itself once this returns (live.check_slot)."""
    if not isinstance(change.adapter, Keep):
        check_slot(settings, service_loads=service_loads)
    if override is not None and not override.strip():
        raise NotApplied("an override needs a reason")
    if _no_effect(settings, change):
        raise NotApplied("nothing changes: the adapter and every threshold given are what runs already")
    report = run_gate(settings, change, database, settings.release)
    versions = versions_of(settings, database)
    before = live_state(settings)
    baseline(versions, before, by)
    adapter = _kept(versions, before.adapter) if isinstance(change.adapter, Keep) else change.adapter
    state = State(adapter, before.thresholds | dict(change.thresholds))
    outcome = "passed" if report.passed else ("overridden" if override is not None else "refused")
    if outcome != "refused":
        _make_live(settings, state, not isinstance(change.adapter, Keep), service_loads)
    version = versions.record(
        by=by,
        action="apply",
        outcome=outcome,
        state=state,
        changes=list(report.change),
        job_id=job_id,
        gate=report.to_json(),
        override_reason=override if outcome == "overridden" else None,
    )
    if outcome == "refused":
        log.warning("release refused (version %d): %s", version.version, "; ".join(report.refusals()))
        return Outcome(report, version, applied=False)
    log.info("release version %d is live (%s, by %s)", version.version, outcome, by)
    return Outcome(report, version, applied=True)


def rollback(settings: Settings, database: Database, to: int, *, by: str, service_loads: bool = False) -> Version:
    """Version `to`'s adapter and thresholds, live again, recorded as a new version (`service_loads`:
    as for apply_change)."""
    versions = versions_of(settings, database)
    target = versions.get(to)
    if target is None:
        raise NotApplied(f"no version {to}")
    if not target.went_live:
        raise NotApplied(f"version {to} was {target.outcome}: it never went live; roll back to one that did")
    try:
        adapter = versions.adapter_path(target)
    except FileNotFoundError as exc:
        raise NotApplied(str(exc)) from None
    before = live_state(settings)
    known = {rule: value for rule, value in target.thresholds.items() if rule in before.thresholds}
    state = State(adapter, before.thresholds | known)
    changes = [f"back to version {to}", *_differences(before, state)]
    _make_live(settings, state, True, service_loads)
    version = versions.record(
        by=by,
        action="rollback",
        outcome="not gated",
        state=state,
        changes=changes,
        adapter_from=target.adapter_from,
        job_id=target.job_id,
        gate=target.gate,
        rolled_back_to=to,
    )
    log.info("rolled back to version %d (now version %d, by %s)", to, version.version, by)
    return version


def _no_effect(settings: Settings, change: Change) -> bool:
    live = live_state(settings)
    if any(live.thresholds.get(rule) != value for rule, value in change.thresholds.items()):
        return False
    if isinstance(change.adapter, Keep):
        return True
    if change.adapter is None or live.adapter is None:
        return change.adapter is None and live.adapter is None
    return same_adapter(change.adapter, live.adapter)


def _kept(versions: Versions, live: Path | None) -> Path | None:
    """The live adapter as the live version's kept copy where the slot still holds just that (a change
    of thresholds alone then keeps no second copy); else the slot, to be copied."""
    version = versions.live()
    if live is None or version is None:
        return live
    try:
        copy = versions.adapter_path(version)
    except FileNotFoundError:
        return live
    return copy if copy is not None and same_adapter(copy, live) else live


def _differences(before: State, after: State) -> list[str]:
    lines = []
    if not _same_files(before.adapter, after.adapter):
        lines.append(f"adapter: {before.adapter or 'none'} -> {after.adapter or 'none'}")
    for rule, value in sorted(after.thresholds.items()):
        if before.thresholds.get(rule) != value:
            lines.append(f"{rule}: threshold {before.thresholds.get(rule, '-')} -> {value:g}")
    return lines


def _make_live(settings: Settings, state: State, adapter_changes: bool, service_loads: bool) -> None:
    """The thresholds (checked before any file is written), then the adapter (checked before)."""
    if adapter_changes:
        check_slot(settings, service_loads=service_loads)
        if state.adapter is not None:
            check_adapter(state.adapter)
    set_thresholds(settings.path(settings.rules_dir), settings.cameras, state.thresholds)
    if adapter_changes:
        apply_adapter(settings, state.adapter, service_loads=service_loads)


def adapter_folder(value: str | None) -> Path | Keep | None:
    """--adapter's value: unset (KEEP), `none`, or a folder."""
    if value is None:
        return KEEP
    return None if value.lower() == "none" else Path(value).absolute()
