"""A candidate in shadow: a fine-tune's adapter (and its thresholds) loaded beside the live model and
asked every live yes/no rule on the frames the live model answers, before anyone applies it. It never
alerts: what it would have opened is kept with its frame (store/shadow_runs.py), and two alert state
machines, one fed the live answers and one the candidate's on the same frames, count the openings each
would make, so that the comparison is like for like.

Bounded: one candidate at a time (a second model in memory); at most MAX_PENDING frames wait for it
(the oldest are dropped and counted: the live model never waits on the candidate); an answer the live
model reused (the picture stood still) reuses the candidate's last one too. A run resumes after a
restart; a candidate that no longer loads is stopped with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import Image

from streamwatch.alerts.recorder import jpeg
from streamwatch.alerts.states import Evaluator, Transition
from streamwatch.config import Settings
from streamwatch.errors import ShadowRefused
from streamwatch.inference.backends.base import Backend
from streamwatch.inference.types import Prompt
from streamwatch.ingest.preprocess import crop_roi
from streamwatch.pipeline.decision import Decision
from streamwatch.rules.model import Rule
from streamwatch.store.shadow_runs import Run, ShadowRuns, WouldBeAlert

log = logging.getLogger(__name__)

MAX_PENDING = 32  # frames x rules waiting for the candidate
BATCH = 8
SAVE_EVERY_S = 30.0  # the counts are written to the run this often (and at stop)


@dataclass(frozen=True)
class Item:
    camera: str
    rule: Rule
    question: str
    region: Image.Image
    frame_at: float
    live_p_yes: float | None
    live_alert: bool
    reused: bool


def _counts() -> dict[str, int]:
    return {
        "frames": 0,  # answers compared
        "live_yes": 0,  # frames the live rule's condition met
        "candidate_yes": 0,
        "differ": 0,  # frames where the two decided otherwise
        "live_opens": 0,  # alerts the live answers opened (state machine over the same frames)
        "candidate_opens": 0,  # alerts the candidate would have opened
    }


class CandidateShadow:
    def __init__(
        self,
        settings: Settings,
        runs: ShadowRuns,
        load: Callable[[Settings], Backend],
        limits_problem: Callable[[Backend], str | None],
    ) -> None:
        self.settings, self.runs, self._load, self._limits_problem = settings, runs, load, limits_problem
        self.run: Run | None = None
        self._backend: Backend | None = None
        self._pending: deque[Item] = deque()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()  # start / stop
        self._busy = asyncio.Lock()  # held while the candidate answers a batch: it is never closed under one
        self._closing = False
        self._counts: dict[str, dict[str, int]] = {}
        self._last: dict[tuple[str, str], float] = {}  # the candidate's last P(yes) per camera x rule
        self._live, self._candidate = Evaluator(), Evaluator()
        self.dropped = 0
        self._problem: str | None = None
        self._saved_at = 0.0

    # -- control -------------------------------------------------------------------------------------
    async def start(self, *, adapter: Path | None, thresholds: dict[str, float], job_id: str | None, by: str) -> Run:
        """Load the candidate beside the live model and start comparing (a ShadowRefused says why not)."""
        async with self._lock:
            if self.run is not None:
                raise ShadowRefused(f"shadow run {self.run.id} is running: stop it first")
            backend = await self._load_candidate(adapter)
            run = await asyncio.to_thread(
                self.runs.start,
                by=by,
                job_id=job_id,
                adapter=None if adapter is None else str(adapter),
                thresholds=thresholds,
            )
            self._begin(run, backend)
            log.info("shadow run %d: %s beside the live model, started by %s", run.id, _what(run), by)
            return run

    async def stop(self, by: str) -> Run:
        async with self._lock:
            run = self.run
            if run is None:
                raise ShadowRefused("no shadow run is running")
            async with self._busy:
                await self._end(f"stopped by {by}")
            found = await asyncio.to_thread(self.runs.get, run.id)
            assert found is not None
            return found

    def problem(self) -> str | None:
        return self._problem

    def status(self) -> dict[str, Any]:
        return {
            "run": None if self.run is None else self.run.to_json() | {"counts": self.counts()},
            "pending": len(self._pending),
            "dropped": self.dropped,
            "problem": self._problem,
        }

    def counts(self) -> dict[str, dict[str, int]]:
        return {key: dict(value) for key, value in sorted(self._counts.items())}

    # -- the samplers' side --------------------------------------------------------------------------
    name = "the candidate's shadow"

    async def take(self, decisions: Sequence[Decision]) -> None:
        """A decision sink (see `offer`)."""
        self.offer(decisions)

    def offer(self, decisions: Sequence[Decision]) -> None:
        """The answers on one frame: each live single-frame yes/no rule's goes to the candidate (never
        blocks; past MAX_PENDING the oldest waiting one is dropped and counted)."""
        if self.run is None:
            return
        for item in decisions:
            if not item.rule.live or item.rule.answer != "yes_no" or item.window:
                continue
            if len(self._pending) >= MAX_PENDING:
                self._pending.popleft()
                self.dropped += 1
            self._pending.append(
                Item(
                    item.camera.id,
                    item.rule,
                    item.question,
                    crop_roi(item.image, item.rule.roi),
                    item.frame_at,
                    item.answer.confidence,
                    item.alert,
                    item.answer.reused,
                )
            )
        self._wake.set()

    # -- lifetime ------------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[CandidateShadow]:
        """Resumes the run a previous start left running; compares until exit, then saves its counts and
        releases the candidate (the run stays active: it resumes at the next start)."""
        active = await asyncio.to_thread(self.runs.active)
        if active is not None:
            try:
                backend = await self._load_candidate(None if active.adapter is None else Path(active.adapter))
            except ShadowRefused as exc:
                log.error("shadow run %d cannot resume, stopped: %s", active.id, exc)
                await asyncio.to_thread(self.runs.stop, active.id, f"could not resume after a restart: {exc}")
            else:
                self._begin(active, backend, resumed=True)
                log.info("shadow run %d resumed: %s", active.id, _what(active))
        self._closing = False
        task = asyncio.create_task(self._consume(), name="shadow-candidate")
        try:
            yield self
        finally:
            self._closing = True  # the consumer ends after the batch it is in (never closed under it)
            self._wake.set()
            await task
            if self.run is not None:
                await asyncio.to_thread(self.runs.save_counts, self.run.id, self._saved())
            await self._release()

    # -- inside --------------------------------------------------------------------------------------
    async def _load_candidate(self, adapter: Path | None) -> Backend:
        model = self.settings.model.model_copy(update={"adapter": None if adapter is None else str(adapter)})
        settings = self.settings.model_copy(update={"model": model})
        try:
            backend = await asyncio.to_thread(self._load, settings)
        except Exception as exc:  # the factory's errors: a missing or broken adapter, memory
            raise ShadowRefused(f"the candidate does not load: {exc}") from None
        problem = self._limits_problem(backend)
        if problem is not None:
            await asyncio.to_thread(backend.close)
            raise ShadowRefused(problem)
        return backend

    def _begin(self, run: Run, backend: Backend, resumed: bool = False) -> None:
        self.run, self._backend = run, backend
        self._counts = {key: _counts() | value for key, value in run.counts.items()} if resumed else {}
        self._last.clear()
        self._pending.clear()
        self._live, self._candidate = Evaluator(), Evaluator()
        self.dropped, self._problem = 0, None

    async def _end(self, reason: str) -> None:
        assert self.run is not None
        await asyncio.to_thread(self.runs.stop, self.run.id, reason, self._saved())
        log.info("shadow run %d ended: %s", self.run.id, reason)
        self.run, self._problem = None, None
        self._pending.clear()
        await self._release()

    async def _release(self) -> None:
        backend, self._backend = self._backend, None
        if backend is not None:
            await asyncio.to_thread(backend.close)

    def _saved(self) -> dict[str, Any]:
        return self.counts()

    async def _consume(self) -> None:
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            while self._pending and not self._closing:
                async with self._busy:
                    run, backend = self.run, self._backend
                    if run is None or backend is None:
                        break
                    batch = [self._pending.popleft() for _ in range(min(BATCH, len(self._pending)))]
                    try:
                        await self._compare(run, backend, batch)
                        self._problem = None
                    except Exception as exc:  # the candidate failed on a batch: said, and the next one is tried
                        log.exception("shadow run %d: the candidate failed on %d questions", run.id, len(batch))
                        self._problem = f"the candidate failed: {type(exc).__name__}: {exc}"
            if self.run is not None and time.monotonic() - self._saved_at >= SAVE_EVERY_S:
                self._saved_at = time.monotonic()
                try:
                    await asyncio.to_thread(self.runs.save_counts, self.run.id, self._saved())
                except Exception:
                    log.exception("shadow run %d: could not save its counts", self.run.id)

    async def _compare(self, run: Run, backend: Backend, batch: list[Item]) -> None:
        asked = [item for item in batch if not (item.reused and (item.camera, item.rule.id) in self._last)]
        scores = await asyncio.to_thread(backend.score_yes_no, [Prompt(i.region, i.question) for i in asked])
        fresh = {id(item): score.p_yes for item, score in zip(asked, scores, strict=True)}
        for item in batch:
            key = (item.camera, item.rule.id)
            p_yes = fresh.get(id(item), self._last.get(key))
            if p_yes is None:
                continue
            self._last[key] = p_yes
            threshold = run.thresholds.get(item.rule.id, item.rule.threshold)
            candidate_rule = item.rule.model_copy(update={"threshold": threshold})
            candidate_alert = candidate_rule.is_alert("yes" if p_yes >= 0.5 else "no", p_yes)
            counts = self._counts.setdefault(f"{item.camera}/{item.rule.id}", _counts())
            counts["frames"] += 1
            counts["live_yes"] += item.live_alert
            counts["candidate_yes"] += candidate_alert
            counts["differ"] += item.live_alert != candidate_alert
            live = self._live.observe(item.camera, item.rule, item.live_alert, item.frame_at)
            counts["live_opens"] += live is not None and live.transition is Transition.OPEN
            change = self._candidate.observe(item.camera, candidate_rule, candidate_alert, item.frame_at)
            if change is None or change.transition is not Transition.OPEN:
                continue
            counts["candidate_opens"] += 1
            alert = WouldBeAlert(
                0,
                run.id,
                datetime.fromtimestamp(item.frame_at, UTC),
                item.camera,
                item.rule.id,
                p_yes,
                item.live_p_yes,
                self._live.is_open(item.camera, item.rule.id),
                None,
            )
            snapshot = await asyncio.to_thread(jpeg, item.region)
            await asyncio.to_thread(self.runs.record, alert, snapshot)
            log.info(
                "shadow run %d: the candidate would open %s on camera %s (P(yes) %.3f; live %s)",
                run.id,
                item.rule.id,
                item.camera,
                p_yes,
                "-" if item.live_p_yes is None else f"{item.live_p_yes:.3f}",
            )


def _what(run: Run) -> str:
    adapter = f"adapter {run.adapter}" if run.adapter else "the model without an adapter"
    thresholds = ", ".join(f"{rule}={value:g}" for rule, value in sorted(run.thresholds.items()))
    return adapter + (f" with thresholds {thresholds}" if thresholds else "")
