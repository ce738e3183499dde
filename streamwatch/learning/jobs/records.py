"""Jobs on disk: a folder per job (`jobs.dir/ID/`) with `job.json` (what was asked, its state) beside
the job's log and reports, so the list survives a restart. `job.json` is replaced atomically; one that
cannot be read is left out of the list with a warning, never a crash."""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streamwatch.learning.jobs.spec import JOB_ID

log = logging.getLogger(__name__)

RECORD = "job.json"
LOG = "output.log"
REPORT_SUFFIXES = (".md", ".json", ".png", ".log")
MAX_FILES = 200  # a job folder's files listed at most
STATES = ("running", "succeeded", "failed", "refused", "cancelled", "timed out", "interrupted")
FINISHED = STATES[1:]


@dataclass(frozen=True)
class JobRecord:
    id: str
    kind: str  # eval | finetune | release
    options: dict[str, Any]
    state: str  # one of STATES
    created_at: str  # ISO 8601, UTC
    ended_at: str | None = None
    exit_code: int | None = None
    error: str | None = None  # why it did not succeed, in a line
    summary: list[str] = field(default_factory=list)  # what it printed that says the result
    applied_at: str | None = None  # a fine-tune job whose adapter a release made live (since when)

    @property
    def finished(self) -> bool:
        return self.state in FINISHED


def new_id(now: datetime) -> str:
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class JobFolder:
    """The jobs' folder: create, save, read, list and prune job records."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, job_id: str) -> Path | None:
        """The job's folder; None for an id that is not one (never a path outside the root)."""
        return self.root / job_id if re.match(JOB_ID, job_id) else None

    def save(self, record: JobRecord) -> JobRecord:
        folder = self.root / record.id
        folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / f".{RECORD}.tmp"
        temporary.write_text(json.dumps(asdict(record), indent=2), encoding="utf-8")
        os.replace(temporary, folder / RECORD)
        return record

    def get(self, job_id: str) -> JobRecord | None:
        folder = self.path(job_id)
        if folder is None or not (folder / RECORD).is_file():
            return None
        try:
            data = json.loads((folder / RECORD).read_text(encoding="utf-8"))
            return JobRecord(**data)
        except (OSError, ValueError, TypeError) as exc:
            log.warning("job %s: %s is not readable, left out: %s", job_id, RECORD, exc)
            return None

    def all(self) -> list[JobRecord]:
        """Newest first."""
        if not self.root.is_dir():
            return []
        ids = sorted((entry.name for entry in os.scandir(self.root) if re.match(JOB_ID, entry.name)), reverse=True)
        return [record for record in map(self.get, ids) if record is not None]

    def update(self, record: JobRecord, **changes: Any) -> JobRecord:
        return self.save(replace(record, **changes))

    def files(self, job_id: str) -> list[str]:
        """The job's log and reports, as paths relative to its folder (the adapter's weights are not)."""
        folder = self.path(job_id)
        if folder is None or not folder.is_dir():
            return []
        found: list[str] = []
        for directory, _dirs, names in os.walk(folder):
            for name in sorted(names):
                relative = os.path.relpath(os.path.join(directory, name), folder)
                if name.endswith(REPORT_SUFFIXES) and name != RECORD and not name.startswith("."):
                    found.append(relative.replace(os.sep, "/"))
                if len(found) >= MAX_FILES:
                    return sorted(found)
        return sorted(found)

    def interrupted(self) -> list[JobRecord]:
        """Jobs left `running` by a service that stopped without ending them (killed, a crash): said so."""
        stale = [record for record in self.all() if record.state == "running"]
        return [
            self.update(record, state="interrupted", ended_at=now_iso(), error="the service stopped while it ran")
            for record in stale
        ]

    def prune(self, keep: int) -> list[str]:
        """Remove the oldest finished jobs beyond `keep` (never a running one, never the applied adapter's)."""
        finished = [record for record in self.all() if record.finished and record.applied_at is None]
        removed = []
        for record in finished[keep:]:
            shutil.rmtree(self.root / record.id, ignore_errors=True)
            removed.append(record.id)
        return removed
