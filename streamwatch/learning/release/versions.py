"""The versions of adapter + thresholds (store/models.Release): recorded with who, when, from which job
and the gate's report; each applied version keeps a copy of its adapter (in `jobs.dir/releases/`, the
newest `release.keep`), so a rollback never depends on a job that was pruned since."""

from __future__ import annotations

import json
import logging
import secrets
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from streamwatch.inference.adapter import CONFIG, WEIGHTS
from streamwatch.store.db import Database
from streamwatch.store.models import Release

log = logging.getLogger(__name__)

LIVE_OUTCOMES = ("passed", "overridden", "not gated")
FOLDER = "releases"


@dataclass(frozen=True)
class Version:
    version: int
    created_at: datetime
    by: str
    action: str
    outcome: str
    job_id: str | None
    adapter: str | None  # the kept copy's folder name under the releases folder; None: no adapter
    adapter_from: str | None
    thresholds: dict[str, float]
    changes: list[str]
    gate: dict[str, Any] | None
    override_reason: str | None
    rolled_back_to: int | None

    @property
    def went_live(self) -> bool:
        return self.outcome in LIVE_OUTCOMES

    def to_json(self) -> dict[str, Any]:
        return self.__dict__ | {"created_at": self.created_at.isoformat(), "went_live": self.went_live}


@dataclass(frozen=True)
class State:
    """What a version makes live: the adapter folder (None: the model alone) and the thresholds."""

    adapter: Path | None
    thresholds: dict[str, float]


class Versions:
    def __init__(self, database: Database, root: Path, keep: int = 20) -> None:
        self.database, self.root, self.keep = database, root / FOLDER, keep

    def all(self, limit: int = 200) -> list[Version]:
        """Newest first."""
        with self.database.session() as session:
            rows = session.scalars(select(Release).order_by(Release.version.desc()).limit(limit))
            return [_version(row) for row in rows]

    def get(self, version: int) -> Version | None:
        with self.database.session() as session:
            row = session.get(Release, version)
            return None if row is None else _version(row)

    def live(self) -> Version | None:
        """The newest version that went live (None before the first change)."""
        with self.database.session() as session:
            row = session.scalars(
                select(Release).where(Release.outcome.in_(LIVE_OUTCOMES)).order_by(Release.version.desc()).limit(1)
            ).first()
            return None if row is None else _version(row)

    def adapter_path(self, version: Version) -> Path | None:
        """The kept copy of the version's adapter (None: it had none); a copy removed since
        (release.keep) is a FileNotFoundError naming the version."""
        if version.adapter is None:
            return None
        path = self.root / version.adapter
        if not (path / CONFIG).is_file():
            raise FileNotFoundError(
                f"version {version.version}: its adapter's files were removed (only the newest release.keep = "
                f"{self.keep} versions keep theirs)"
            )
        return path

    def record(
        self,
        *,
        by: str,
        action: str,
        outcome: str,
        state: State,
        changes: list[str],
        adapter_from: str | None = None,
        job_id: str | None = None,
        gate: dict[str, Any] | None = None,
        override_reason: str | None = None,
        rolled_back_to: int | None = None,
    ) -> Version:
        """A new version; an applied one with an adapter keeps a copy of its files, unless the adapter
        is already a kept copy (a rollback, a change of thresholds alone): then it names that one."""
        copy = None
        if state.adapter is not None:
            if state.adapter.parent == self.root:
                copy = state.adapter.name
            elif outcome in LIVE_OUTCOMES:
                copy = self._copy(state.adapter)
        with self.database.session() as session, session.begin():
            row = Release(
                by=by[:200],
                action=action,
                outcome=outcome,
                job_id=job_id,
                adapter=copy,
                adapter_from=adapter_from if adapter_from is not None else _named(state.adapter),
                thresholds=json.dumps(state.thresholds, sort_keys=True),
                changes=json.dumps(changes),
                gate=None if gate is None else json.dumps(gate),
                override_reason=override_reason,
                rolled_back_to=rolled_back_to,
            )
            session.add(row)
            session.flush()
            version = _version(row)
        self._prune()
        return version

    def _copy(self, adapter: Path) -> str:
        name = f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
        target = self.root / name
        temporary = self.root / f".{name}.tmp"
        temporary.mkdir(parents=True)
        for file in (CONFIG, *WEIGHTS):
            if (adapter / file).is_file():
                shutil.copyfile(adapter / file, temporary / file)
        temporary.rename(target)
        return name

    def _prune(self) -> None:
        """Adapter copies of versions beyond the newest `keep` applied ones go (the live one never)."""
        applied = [v for v in self.all(limit=10_000) if v.went_live and v.adapter is not None]
        kept = {v.adapter for v in applied[: self.keep]}
        live = self.live()
        if live is not None and live.adapter is not None:
            kept.add(live.adapter)
        if not self.root.is_dir():
            return
        for folder in self.root.iterdir():
            named = folder.name not in kept and any(v.adapter == folder.name for v in applied)
            if named and folder.is_dir():
                log.info("release: the adapter copy %s goes (release.keep = %d)", folder.name, self.keep)
                shutil.rmtree(folder, ignore_errors=True)


def same_adapter(a: Path, b: Path) -> bool:
    """Whether two adapter folders hold the same files, byte for byte."""
    for name in (CONFIG, *WEIGHTS):
        first, second = a / name, b / name
        if first.is_file() != second.is_file():
            return False
        if first.is_file() and (
            first.stat().st_size != second.stat().st_size or first.read_bytes() != second.read_bytes()
        ):
            return False
    return True


def _named(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _version(row: Release) -> Version:
    return Version(
        version=row.version,
        created_at=row.created_at,
        by=row.by,
        action=row.action,
        outcome=row.outcome,
        job_id=row.job_id,
        adapter=row.adapter,
        adapter_from=row.adapter_from,
        thresholds={key: float(value) for key, value in json.loads(row.thresholds).items()},
        changes=list(json.loads(row.changes)),
        gate=None if row.gate is None else json.loads(row.gate),
        override_reason=row.override_reason,
        rolled_back_to=row.rolled_back_to,
    )
