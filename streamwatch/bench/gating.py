"""`streamwatch bench gating`: what change gating saves on the shipped demo, and that it changes no alert.

Each camera of a config (by default the shipped `config.toml`: the three demo clips and the offline
demo model) is replayed once with its change gate as configured and once with it off: its clip is
sampled every `sample_interval_s` of the clip's own time, through the service's real sampler, engine
and alert pipeline, events into a throwaway SQLite store. The report compares the alerts each run
opened and resolved (camera, rule, kind, second of the clip) and how many decisions took a model pass.
Runs on the CPU; no clock is involved (frame times are the clip's).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamwatch.alerts.pipeline import AlertPipeline
from streamwatch.bench.footage import clip_samples
from streamwatch.bench.report import machine
from streamwatch.config import load_settings
from streamwatch.inference.build import build_backend
from streamwatch.inference.engine import Engine, loaded_model
from streamwatch.ingest.frame import Frame
from streamwatch.metrics import Metrics
from streamwatch.reports import markdown_table, write_report
from streamwatch.rules.loader import ActiveRules, configured_rules
from streamwatch.sampling import AnswerLog, Sampler
from streamwatch.store.db import Database
from streamwatch.store.events import EventStore

EPOCH = 1_000_000.0  # wall-clock time of each clip's start: event times are seconds into the clip

AlertKey = tuple[str, str, str, int]  # camera, rule, event kind, second of the clip


@dataclass(frozen=True)
class GatingBenchConfig:
    config: Path = Path("config.toml")
    out_dir: Path = Path("bench")
    name: str = "gating-demo"


@dataclass(frozen=True)
class Replay:
    gating: bool
    alerts: list[AlertKey]
    asked: Counter[str]  # per camera: decisions that took a model pass
    reused: Counter[str]  # per camera: decisions that reused the last answer


async def replay(config: Path, work_dir: Path, gating: bool) -> Replay:
    """Every camera's clip through the real sampler, engine and alert pipeline, gating as configured
    (`gating`) or off."""
    settings = load_settings(config)
    name = "on" if gating else "off"
    store = EventStore(Database.open(f"sqlite:///{work_dir / f'events-{name}.db'}"), work_dir / f"snapshots-{name}")
    alerts: list[AlertKey] = []
    metrics = Metrics(lambda: (None, []))
    async with loaded_model(settings, build_backend) as model:
        engine = Engine(settings, model)
        rules = ActiveRules(configured_rules(settings, engine.limits))
        async with engine.answering():
            for camera in settings.cameras:
                camera = camera if gating else camera.model_copy(update={"change_area": 0.0})
                pipeline = AlertPipeline(store)
                sampler = Sampler(
                    camera,
                    None,  # type: ignore[arg-type]  # no worker: frames are handed to answer() below
                    rules=rules,
                    engine=engine,
                    pipeline=pipeline,
                    answers=AnswerLog(),
                    metrics=metrics,
                )
                due = [r for r in rules.for_camera(camera) if r.active_hours is None and r.schedule is None]
                for seq, (pts, pixels) in enumerate(clip_samples(Path(camera.url), camera.sample_interval_s)):
                    frame = Frame(camera.id, seq, EPOCH + pts, pixels, pts, True)
                    before = pipeline.events
                    await sampler.answer(frame, frame.image(), due)
                    if pipeline.events > before:
                        alerts += [
                            (e.camera, e.rule, e.kind, round(e.frame_at.timestamp() - EPOCH))
                            for e in store.list(limit=pipeline.events - before)
                        ]
    asked, reused = _answer_counts(metrics)
    return Replay(gating, sorted(alerts), asked, reused)


def _answer_counts(metrics: Metrics) -> tuple[Counter[str], Counter[str]]:
    """streamwatch_answers_total per camera, split by how (asked / reused)."""
    found: dict[str, Counter[str]] = {"asked": Counter(), "reused": Counter()}
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.name == "streamwatch_answers_total":
                found[sample.labels["how"]][sample.labels["camera"]] += int(sample.value)
    return found["asked"], found["reused"]


def run_bench(config: GatingBenchConfig, progress: Callable[[str], None] = print) -> list[Path]:
    with tempfile.TemporaryDirectory() as folder:
        off = asyncio.run(replay(config.config, Path(folder), gating=False))
        progress(f"gating off: {sum(off.asked.values())} model passes, {len(off.alerts)} alert events")
        on = asyncio.run(replay(config.config, Path(folder), gating=True))
        progress(
            f"gating on:  {sum(on.asked.values())} model passes, {sum(on.reused.values())} answers reused, "
            f"{len(on.alerts)} alert events"
        )
    rows = [
        {
            "camera": camera,
            "decisions": off.asked[camera],
            "asked_off": off.asked[camera],
            "asked_on": on.asked[camera],
            "reused_on": on.reused[camera],
            "saved_pct": round(100 * (1 - on.asked[camera] / off.asked[camera]), 1) if off.asked[camera] else 0.0,
        }
        for camera in sorted(off.asked)
    ]
    total_off, total_on = sum(off.asked.values()), sum(on.asked.values())
    data: dict[str, Any] = {
        "benchmark": "gating",
        "machine": machine(),
        "config": str(config.config),
        "cameras": rows,
        "model_passes": {"off": total_off, "on": total_on},
        "answers_reused": {"off": sum(off.reused.values()), "on": sum(on.reused.values())},
        "same_alerts": off.alerts == on.alerts,
        "alerts_off": [list(a) for a in off.alerts],
        "alerts_on": [list(a) for a in on.alerts],
    }
    return write_report(config.out_dir, config.name, data, _markdown(data, rows, config))


def _markdown(data: dict[str, Any], rows: list[dict[str, Any]], config: GatingBenchConfig) -> str:
    m, passes = data["machine"], data["model_passes"]
    saved = 100 * (1 - passes["on"] / passes["off"]) if passes["off"] else 0.0
    same = "the same" if data["same_alerts"] else "**different**"
    kinds = Counter(kind for _camera, _rule, kind, _at in data["alerts_on"])
    columns = [
        ("camera", "camera"),
        ("decisions", "decisions"),
        ("asked_off", "model passes, gating off"),
        ("asked_on", "model passes, gating on"),
        ("reused_on", "answers reused"),
        ("saved_pct", "passes saved %"),
    ]
    return f"""# Change gating on the demo

Every camera of `{config.config}` replayed from its clip, sampled every `sample_interval_s` of the clip's
time, through the real sampler, engine and alert pipeline: once with the change gate as configured,
once with it off. CPU {m.get("cpu")} ({m.get("cores")} cores), Python {m.get("python")}; {m["date"]}.

Model passes: **{passes["off"]} without gating, {passes["on"]} with** ({saved:.0f} % fewer). The alert events
(camera, rule, open/update/resolved, second of the clip) are {same} in both runs:
{", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))}.

{markdown_table(rows, columns)}

Re-run: `streamwatch bench gating` (numbers `{config.name}.json`).
"""
