"""Eval and fine-tune jobs started from the web UI / REST API: one at a time, each a child process of
the same `streamwatch` command line on the service's config (the CLI's checks, errors and reports, a
crash that cannot take the service down), with its output kept in a bounded log, a time limit, and a
state that survives a restart. A second service on the same jobs folder (a shard) waits its turn
through a lock file."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from streamwatch.config import Settings
from streamwatch.errors import JobRefused
from streamwatch.learning.jobs.records import LOG, JobFolder, JobRecord, new_id, now_iso
from streamwatch.learning.jobs.spec import ADAPTER_DIR, EvalOptions, FinetuneOptions, ReleaseOptions, command
from streamwatch.learning.release.versions import Version
from streamwatch.metrics import Metrics
from streamwatch.store.db import Database

log = logging.getLogger(__name__)

MAX_LOG_BYTES = 4 * 1024 * 1024  # a job's output kept; the rest is counted, not stored
TAIL_BYTES = 64 * 1024  # the end of the output read for the result lines
STOP_WAIT_S = 10.0  # after SIGTERM, before SIGKILL
MAX_MANIFESTS = 500  # listed for the page
RESULT_PREFIXES = (
    *("wrote ", "saved ", "with the adapter", "adapter in ", "regression: "),
    *("change: ", "gate: ", "refused: ", "release: "),  # a release
)
REFUSED = 1  # `streamwatch release apply`'s exit status when the gate refused the change


class JobBusy(JobRefused):
    """Another job is running."""


class JobRunner:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics | None = None,
        database: Database | None = None,
        python: str = sys.executable,
        *,
        load_adapter: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.settings, self.config, self.metrics, self.python = settings, settings.jobs, metrics, python
        # the model loads what model.adapter holds now: called once a release job or a rollback wrote it
        self.load_adapter = load_adapter
        self.database = database  # the versions of adapter + thresholds (release/), where there is one
        self.folder = JobFolder(settings.path(settings.jobs.dir))
        self._submitting = asyncio.Lock()
        self._current: tuple[JobRecord, asyncio.subprocess.Process, asyncio.Task[JobRecord]] | None = None
        self._stop_as: tuple[str, str] | None = None  # (state, error) when the job is stopped on purpose

    # -- lifetime ---------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Jobs a previous run left `running` are marked interrupted (unless another instance on the same
        folder holds the lock: that one is running); a job running at stop is ended."""
        try:
            lock = await asyncio.to_thread(self._lock)
        except JobBusy:
            lock = None
        if lock is not None:
            try:
                for record in await asyncio.to_thread(self.folder.interrupted):
                    log.warning(
                        "job %s (%s) was interrupted by the previous stop of the service", record.id, record.kind
                    )
            finally:
                lock.close()
        try:
            yield
        finally:
            if self._current is not None:
                log.warning("stopping job %s: the service stops", self._current[0].id)
                await self._stop(self._current[0].id, "interrupted", "the service stopped while it ran")

    # -- what the web layer asks ------------------------------------------------------------------
    def current(self) -> JobRecord | None:
        return None if self._current is None else self._current[0]

    def all(self) -> list[JobRecord]:
        return self.folder.all()

    def get(self, job_id: str) -> JobRecord | None:
        return self.folder.get(job_id)

    def files(self, job_id: str) -> list[str]:
        return self.folder.files(job_id)

    def file_path(self, job_id: str, name: str) -> Path | None:
        """A file of the job's listing (its log, a report); anything else (a path outside) is None."""
        folder = self.folder.path(job_id)
        return folder / name if folder is not None and name in self.files(job_id) else None

    async def submit(self, options: EvalOptions | FinetuneOptions | ReleaseOptions, by: str = "a job") -> JobRecord:
        """Start the job; `by`: who asked (a release records it with its version)."""
        if not self.config.enabled:
            raise JobRefused("jobs are off in this service ([jobs] enabled = false)")
        async with self._submitting:
            if self._current is not None:
                running = self._current[0]
                raise JobBusy(f"job {running.id} ({running.kind}) is running: one job at a time")
            job_id = new_id(datetime.now(UTC))
            folder = self.folder.root / job_id
            clips = [self._manifest(name) for name in getattr(options, "clips", ())]
            args = command(options, self.settings.source, folder, self.config.device, self._adapter_of, clips, by)
            lock = await asyncio.to_thread(self._lock)
            try:
                record = JobRecord(job_id, options.kind, options.model_dump(), "running", now_iso())
                await asyncio.to_thread(self.folder.save, record)
                output = await asyncio.to_thread((folder / LOG).open, "wb")
                process = await asyncio.create_subprocess_exec(
                    self.python,
                    "-m",
                    "streamwatch",
                    *args,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,  # its own process group: a stop reaches its children too
                    env=os.environ | {"PYTHONUNBUFFERED": "1"},
                )
            except BaseException:
                lock.close()
                raise
            self._stop_as = None
            task = asyncio.create_task(self._watch(record, process, output, lock), name=f"job-{job_id}")
            self._current = (record, process, task)
            if self.metrics is not None:
                self.metrics.job_running.set(1)
            log.info("job %s (%s) started", job_id, options.kind)
            return record

    async def cancel(self, job_id: str) -> JobRecord:
        if self._current is None or self._current[0].id != job_id:
            raise JobRefused(f"job {job_id} is not running")
        return await self._stop(job_id, "cancelled", "cancelled by an operator")

    async def apply(
        self, job_id: str, by: str, thresholds: dict[str, float] | None = None, override: str | None = None
    ) -> JobRecord:
        """A release job for a finished fine-tune's adapter (and `thresholds`): the gate decides."""
        record = self.folder.get(job_id)
        if record is None:
            raise JobRefused(f"no job {job_id!r}")
        if record.kind != "finetune" or record.state != "succeeded":
            raise JobRefused(f"job {job_id} is a {record.state} {record.kind} job: only a finished fine-tune applies")
        try:
            options = ReleaseOptions(adapter=job_id, thresholds=thresholds or {}, override=override)
        except ValueError as exc:
            raise JobRefused(str(exc).splitlines()[-1]) from None
        return await self.submit(options, by)

    def versions(self, limit: int = 100) -> tuple[list[Version], Version | None]:
        """(the versions of adapter + thresholds, newest first; the live one)."""
        if self.database is None:
            return [], None
        from streamwatch.learning.release.actions import versions_of

        versions = versions_of(self.settings, self.database)
        return versions.all(limit), versions.live()

    async def rollback(self, version: int, by: str) -> Version:
        """Version `version`'s adapter and thresholds live again (never while a release job runs)."""
        from streamwatch.errors import NotApplied
        from streamwatch.learning.release.actions import rollback

        if self.database is None:
            raise JobRefused("this service keeps no versions (no database)")
        async with self._submitting:
            if self._current is not None and self._current[0].kind == "release":
                raise JobBusy(f"release job {self._current[0].id} is running: roll back once it ended")
            try:
                live = await asyncio.to_thread(
                    rollback, self.settings, self.database, version, by=by, service_loads=self.load_adapter is not None
                )
            except NotApplied as exc:
                raise JobRefused(str(exc)) from None
            await self._mark_applied(live.job_id if live.adapter is not None else None)
            await self._hand_over()
            return live

    async def override(self, job_id: str, by: str, reason: str) -> JobRecord:
        """A refused release job's change again, with `reason` to apply it where the gate refuses."""
        record = self.folder.get(job_id)
        if record is None or record.kind != "release" or record.state != "refused":
            raise JobRefused(f"job {job_id} is not a refused release")
        try:
            options = ReleaseOptions.model_validate(record.options | {"override": reason.strip()})
        except ValueError:
            raise JobRefused("an override needs a reason (3 to 500 characters)") from None
        return await self.submit(options, by)

    def suggested_thresholds(self, job_id: str) -> dict[str, float]:
        """A fine-tune job's thresholds for its adapter, from its held-out part: a rule's, where every
        camera of it suggested the same one (thresholds.suggest: enough examples of each answer)."""
        path = self.folder.root / job_id / ADAPTER_DIR / "finetune.json"
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))["candidates"][1]["rows"]
            values: dict[str, set[float | None]] = {}
            for row in rows:
                values.setdefault(str(row["rule"]), set()).add(row["suggested_threshold"])
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            return {}
        single = {rule: next(iter(found)) for rule, found in values.items() if len(found) == 1}
        return {rule: float(value) for rule, value in single.items() if value is not None}

    async def _applied(self, record: JobRecord) -> None:
        """A release job that made a fine-tune's adapter live: that job is marked applied, no other, and
        the model loads it."""
        adapter = record.options.get("adapter")
        if record.kind != "release" or record.state != "succeeded" or adapter is None:
            return
        await self._mark_applied(None if adapter == "none" else adapter)
        await self._hand_over()

    async def _hand_over(self) -> None:
        if self.load_adapter is None:
            return
        try:
            await self.load_adapter()
        except Exception:  # the reload says what failed (log, readiness); the version is recorded live
            log.exception("the adapter made live could not be handed to the model")

    async def _mark_applied(self, job_id: str | None) -> None:
        """The fine-tune job whose adapter is live is marked applied (since now), no other."""
        for other in await asyncio.to_thread(self.folder.all):
            if other.id == job_id:
                if other.applied_at is None:
                    await asyncio.to_thread(self.folder.update, other, applied_at=now_iso())
            elif other.applied_at is not None:
                await asyncio.to_thread(self.folder.update, other, applied_at=None)

    # -- inside -----------------------------------------------------------------------------------
    def _adapter_of(self, choice: str) -> str:
        if choice == "none":
            return "none"
        if choice == "config":
            path = self.settings.adapter_path()
            return "none" if path is None else str(path)
        return self.adapter_dir(choice)

    def adapter_dir(self, job_id: str) -> str:
        """A finished fine-tune job's adapter folder (a JobRefused when there is no such job)."""
        record = self.folder.get(job_id)
        if record is None or record.kind != "finetune" or record.state != "succeeded":
            raise JobRefused(f"adapter {job_id!r}: no finished fine-tune job with that id")
        return str(self.folder.root / job_id / ADAPTER_DIR)

    def manifests(self) -> list[str]:
        """The labelled clip manifests a job may be given (jobs.clips_dir's *.toml files)."""
        folder = self.settings.path(self.config.clips_dir)
        if not folder.is_dir():
            return []
        names = (entry.name for entry in os.scandir(folder) if entry.name.endswith(".toml") and entry.is_file())
        return sorted(names)[:MAX_MANIFESTS]

    def _manifest(self, name: str) -> Path:
        path = self.settings.path(self.config.clips_dir) / name
        if not path.is_file():
            raise JobRefused(f"clips: no manifest {name!r} in {self.settings.path(self.config.clips_dir)}")
        return path

    def _lock(self) -> IO[bytes]:
        self.folder.root.mkdir(parents=True, exist_ok=True)
        handle = (self.folder.root / ".lock").open("wb")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise JobBusy(f"another streamwatch instance runs a job in {self.folder.root}: one at a time") from None
        return handle

    async def _watch(
        self, record: JobRecord, process: asyncio.subprocess.Process, output: IO[bytes], lock: IO[bytes]
    ) -> JobRecord:
        tail = b""
        kept = dropped = 0
        try:
            assert process.stdout is not None
            async with asyncio.timeout(self.config.timeout_s):
                while chunk := await process.stdout.read(65536):
                    tail = (tail + chunk)[-TAIL_BYTES:]
                    room = max(0, MAX_LOG_BYTES - kept)
                    if room:
                        await asyncio.to_thread(output.write, chunk[:room])
                    kept, dropped = kept + min(room, len(chunk)), dropped + max(0, len(chunk) - room)
                await process.wait()
        except TimeoutError:
            self._stop_as = ("timed out", f"ran longer than jobs.timeout_s ({self.config.timeout_s:g} s)")
            await _terminate(process)
        except asyncio.CancelledError:
            await _terminate(process)
            raise
        finally:
            if dropped:
                output.write(f"\n[{dropped} more bytes of output not kept]\n".encode())
            output.close()
        lines = tail.decode("utf-8", "replace").splitlines()
        code = process.returncode
        state, error = self._stop_as or _ended(record.kind, code, lines)
        summary = [line.strip() for line in lines if line.startswith(RESULT_PREFIXES)][-40:]
        record = await asyncio.to_thread(
            self.folder.update, record, state=state, ended_at=now_iso(), exit_code=code, error=error, summary=summary
        )
        await self._applied(record)
        self._current = None
        lock.close()
        if self.metrics is not None:
            self.metrics.job_running.set(0)
            self.metrics.jobs.labels(record.kind, state).inc()
        (log.info if state == "succeeded" else log.warning)(
            "job %s (%s) %s%s", record.id, record.kind, state, _colon(error)
        )
        removed = await asyncio.to_thread(self.folder.prune, self.config.keep)
        if removed:
            log.info("removed %d old jobs (jobs.keep = %d)", len(removed), self.config.keep)
        return record

    async def _stop(self, job_id: str, state: str, why: str) -> JobRecord:
        assert self._current is not None
        _record, process, task = self._current
        self._stop_as = (state, why)
        await _terminate(process)
        return await task


async def _terminate(process: asyncio.subprocess.Process) -> None:
    """SIGTERM to the job's process group; SIGKILL after STOP_WAIT_S."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), STOP_WAIT_S)


def _ended(kind: str, code: int | None, lines: list[str]) -> tuple[str, str | None]:
    if code == 0:
        return "succeeded", None
    if kind == "release" and code == REFUSED:
        refusals = [line.removeprefix("refused:").strip() for line in lines if line.startswith("refused:")]
        return "refused", "the release gate refused it: " + "; ".join(refusals[:5])
    return "failed", _why(lines, code)


def _why(lines: list[str], code: int | None) -> str:
    """The command's own `error: ...` line where it wrote one, else its last line and exit status."""
    errors = [line.strip() for line in lines if line.startswith("error:")]
    if errors:
        return errors[-1].removeprefix("error:").strip()
    last = next((line.strip() for line in reversed(lines) if line.strip()), "")
    return f"exit status {code}" + (f": {last[:300]}" if last else "")


def _colon(text: str | None) -> str:
    return f": {text}" if text else ""
