"""`streamwatch bench gating`: what change gating saves on the shipped demo, and that it changes no alert.

Each camera of a config (by default the shipped `config.toml`: the three demo clips and the offline
demo model) is replayed once with its change gate as configured and once with it off: its clip is
sampled every `sample_interval_s` of the clip's own time, through the service's real sampler, engine
and alert pipeline, events into a throwaway SQLite store. The report compares the alerts each run
opened and resolved (camera, rule, kind, second of the clip) and how many decisions took a model pass.
With `degrade`, the same again for each named camera degradation (streamwatch/tools/demo/camera.py: night
noise, exposure steps, shaking...) applied to each clip's samples. Runs on the CPU; no clock is
involved (frame times are the clip's).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamwatch.alerts.recorder import AlertPipeline
from streamwatch.config import load_settings
from streamwatch.inference.build import build_backend
from streamwatch.inference.engine import Engine, loaded_model
from streamwatch.ingest.frame import Frame
from streamwatch.metrics import Metrics
from streamwatch.pipeline.decision import Sinks
from streamwatch.pipeline.sampling import Sampler
from streamwatch.reports import markdown_table, write_report
from streamwatch.rules.loader import ActiveRules, configured_rules
from streamwatch.store.db import Database
from streamwatch.store.events import EventStore
from streamwatch.tools.bench.footage import clip_samples
from streamwatch.tools.bench.report import machine
from streamwatch.tools.demo.camera import degraded

EPOCH = 1_000_000.0  # wall-clock time of each clip's start: event times are seconds into the clip

AlertKey = tuple[str, str, str, int]  # camera, rule, event kind, second of the clip


@dataclass(frozen=True)
class GatingBenchConfig:
    config: Path = Path("config.toml")
    out_dir: Path = Path("bench")
    name: str = "gating-demo"
    degrade: tuple[str, ...] = ()  # camera degradations replayed after the clips as they are
    seed: int = 0  # the degradations' seed


AS_RECORDED = "as recorded"


@dataclass(frozen=True)
class Replay:
    gating: bool
    alerts: list[AlertKey]
    asked: Counter[str]  # per camera: decisions that took a model pass
    reused: Counter[str]  # per camera: decisions that reused the last answer


async def replay(config: Path, work_dir: Path, gating: bool, camera_kind: str = AS_RECORDED, seed: int = 0) -> Replay:
    """Every camera's clip through the real sampler, engine and alert pipeline, gating as configured
    (`gating`) or off; its samples as the file has them or through degradation `camera_kind`."""
    settings = load_settings(config)
    name = f"{camera_kind.replace(' ', '-')}-{'on' if gating else 'off'}"
    store = EventStore(Database.open(f"sqlite:///{work_dir / f'events-{name}.db'}"), work_dir / f"snapshots-{name}")
    alerts: list[AlertKey] = []
    metrics = Metrics()
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
                    sinks=Sinks([metrics], transitions=pipeline.transitions),
                    metrics=metrics,
                )
                due = [r for r in rules.for_camera(camera) if r.active_hours is None and r.schedule is None]
                samples = list(clip_samples(Path(camera.url), camera.sample_interval_s))
                if camera_kind != AS_RECORDED:
                    pictures = degraded([pixels for _pts, pixels in samples], camera_kind, seed)
                    samples = [(pts, pixels) for (pts, _), pixels in zip(samples, pictures, strict=True)]
                for seq, (pts, pixels) in enumerate(samples):
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


def _compare(config: GatingBenchConfig, camera_kind: str, progress: Callable[[str], None]) -> dict[str, Any]:
    """Gating off, then on, for every camera through `camera_kind`: the passes and the alerts of each."""
    with tempfile.TemporaryDirectory() as folder:
        off = asyncio.run(replay(config.config, Path(folder), False, camera_kind, config.seed))
        progress(f"{camera_kind}: gating off: {sum(off.asked.values())} model passes, {len(off.alerts)} alert events")
        on = asyncio.run(replay(config.config, Path(folder), True, camera_kind, config.seed))
        progress(
            f"{camera_kind}: gating on:  {sum(on.asked.values())} model passes, "
            f"{sum(on.reused.values())} answers reused, {len(on.alerts)} alert events"
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
    clips = {camera.id: Path(camera.url).stem for camera in load_settings(config.config).cameras}
    differing = [
        {"run": run, "event": list(event), "truth": _truth(clips.get(event[0]), event[1], event[3])}
        for run, mine, other in (("off", off.alerts, on.alerts), ("on", on.alerts, off.alerts))
        for event in mine
        if event not in other
    ]
    return {
        "camera_kind": camera_kind,
        "cameras": rows,
        "model_passes": {"off": total_off, "on": total_on},
        "saved_pct": round(100 * (1 - total_on / total_off), 1) if total_off else 0.0,
        "answers_reused": {"off": sum(off.reused.values()), "on": sum(on.reused.values())},
        "same_alerts": off.alerts == on.alerts,
        "differing": differing,
        "alerts_off": [list(a) for a in off.alerts],
        "alerts_on": [list(a) for a in on.alerts],
    }


def _truth(clip: str | None, rule: str, second: int) -> str:
    """Whether `rule`'s answer is truly yes at `second` of a demo clip (the scene it was drawn from):
    "yes", "no", or "-" for a clip that is not one of the demo's."""
    from streamwatch.tools.demo.clips import CLIPS, truth_at

    if clip not in CLIPS:
        return "-"
    truth = truth_at(clip, float(second)).get(rule)
    return "-" if truth is None else "yes" if truth is True else "no"


def run_bench(config: GatingBenchConfig, progress: Callable[[str], None] = print) -> list[Path]:
    runs = [_compare(config, kind, progress) for kind in (AS_RECORDED, *config.degrade)]
    data: dict[str, Any] = {
        "benchmark": "gating",
        "machine": machine(),
        "config": str(config.config),
        "seed": config.seed,
        **runs[0],  # the clips as recorded, at the top level
        "degraded": runs[1:],
    }
    return write_report(config.out_dir, config.name, data, _markdown(data, runs, config))


CAMERA_COLUMNS = [
    ("camera", "camera"),
    ("decisions", "decisions"),
    ("asked_off", "model passes, gating off"),
    ("asked_on", "model passes, gating on"),
    ("reused_on", "answers reused"),
    ("saved_pct", "passes saved %"),
]


def _alert_counts(run: dict[str, Any]) -> str:
    kinds = Counter(kind for _camera, _rule, kind, _at in run["alerts_on"])
    return ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())) or "none"


def _differing(run: dict[str, Any]) -> str:
    if not run["differing"]:
        return ""
    rows = [
        {
            "run": f"gating {d['run']} only",
            "camera": d["event"][0],
            "rule": d["event"][1],
            "kind": d["event"][2],
            "second": d["event"][3],
            "truth": d["truth"],
        }
        for d in run["differing"]
    ]
    columns = [
        ("run", "raised with"),
        ("camera", "camera"),
        ("rule", "rule"),
        ("kind", "event"),
        ("second", "second of the clip"),
        ("truth", "truly yes then"),
    ]
    return "\n\nAlert events that differ:\n\n" + markdown_table(rows, columns)


def _markdown(data: dict[str, Any], runs: list[dict[str, Any]], config: GatingBenchConfig) -> str:
    m, passes = data["machine"], data["model_passes"]
    same = "the same" if data["same_alerts"] else "**different**"
    summary = [
        {
            "camera_kind": run["camera_kind"],
            "off": run["model_passes"]["off"],
            "on": run["model_passes"]["on"],
            "saved": run["saved_pct"],
            "same": "same" if run["same_alerts"] else "**different**",
            "alerts": _alert_counts(run),
        }
        for run in runs
    ]
    summary_columns = [
        ("camera_kind", "clips"),
        ("off", "model passes, gating off"),
        ("on", "gating on"),
        ("saved", "passes saved %"),
        ("same", "alert events on vs off"),
        ("alerts", "alert events (gating on)"),
    ]
    sections = "\n".join(
        f"\n## {run['camera_kind']}\n\n{markdown_table(run['cameras'], CAMERA_COLUMNS)}{_differing(run)}"
        for run in runs
    )
    degrade = f" --degrade {','.join(config.degrade)} --seed {config.seed}" if config.degrade else ""
    return f"""# Change gating on the demo

Every camera of `{config.config}` replayed from its clip, sampled every `sample_interval_s` of the clip's
time, through the real sampler, engine and alert pipeline: once with the change gate as configured,
once with it off. The clips as recorded (the demo clips carry temporal sensor noise and H.264
artefacts, streamwatch/tools/demo/clips.py), then through each camera degradation named
(streamwatch/tools/demo/camera.py,
seed {config.seed}). CPU {m.get("cpu")} ({m.get("cores")} cores), Python {m.get("python")}; {m["date"]}.

As recorded: model passes **{passes["off"]} without gating, {passes["on"]} with** ({data["saved_pct"]:.0f} % fewer).
The alert events (camera, rule, open/update/resolved, second of the clip) are {same} in both runs:
{_alert_counts(data)}.

{markdown_table(summary, summary_columns)}
{sections}

Re-run: `streamwatch bench gating{degrade}` (numbers `{config.name}.json`).
"""
