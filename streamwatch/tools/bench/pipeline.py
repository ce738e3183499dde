"""`streamwatch bench pipeline`: how many cameras one GPU serves within the latency target.

N synthetic cameras (frames already decoded: the GPU is the subject) each take a sample every
`interval_s` (phases spread evenly) and ask 3 yes/no rules about it through the real InferenceQueue
and backend, exactly as the service does (one image object per sample, so the rules share it).
Latency is sample -> decision. The largest N whose p95 stays within `slo_s` with nothing dropped
is the answer.

Activity mix: with `activity` below 1, each sample a camera's picture changes with that probability
(a new frame), and otherwise stays the frame it was. With `gating`, each camera runs the service's change
gate (streamwatch/pipeline/change.py: thumbnails, the camera defaults) before asking, so unchanged pictures reuse
their answers; the same activity, with and without gating, on the same machine in one run.
"""

from __future__ import annotations

import asyncio
import logging
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from PIL import Image

from streamwatch.config import CameraConfig
from streamwatch.errors import DroppedError
from streamwatch.inference.backends.transformers import TransformersBackend
from streamwatch.inference.queue import InferenceQueue
from streamwatch.inference.types import Request
from streamwatch.pipeline.change import ChangeGate, view
from streamwatch.reports import markdown_table, write_report
from streamwatch.tools.bench.model import RULES, ModelBenchConfig, build, frames
from streamwatch.tools.bench.report import machine, percentile

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineBenchConfig:
    size: str = "glm46v-flash"
    width: int = 1280  # camera frames
    height: int = 720
    max_image_sides: Sequence[int] = (640, 1280)  # what the model sees (model.max_image_side)
    cameras: Sequence[int] = (8, 16, 24, 32, 48, 64, 80, 96)
    gated_cameras: Sequence[int] | None = None  # camera counts for the runs with the gate (default: `cameras`)
    rules: int = 3
    interval_s: float = 2.0
    seconds: float = 20.0
    warmup_s: float = 4.0
    max_batch: int = 192  # questions per forward pass
    max_wait_ms: int = 50
    workers: int = 2  # queue workers: CPU preparation of one batch overlaps the GPU work of another
    slo_s: float = 1.5
    activity: float = 1.0  # chance that a camera's picture changed since its last sample
    gating: Sequence[bool] = (False,)  # runs without and/or with the change gate
    device: str = "auto"
    compile: bool = False  # torch.compile the vision blocks and decoder layers
    out_dir: Path = Path("bench")
    name: str = "pipeline"


@dataclass
class PipelineRun:
    max_image_side: int
    gating: bool
    cameras: int
    decisions: int
    asked: int  # decisions that took a model pass (the rest reused an answer)
    dropped: int
    decisions_per_s: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_max_ms: float | None
    mean_batch: float
    within_slo: bool


@dataclass(frozen=True)
class _Sample:
    camera: int
    image: Image.Image
    thumb: Any  # the gate's view, None without gating
    at: float
    measured: bool  # after the warm-up


async def _decide(
    queue: InferenceQueue, gate: ChangeGate, defaults: CameraConfig, sample: _Sample, rule: str, asked: list[int]
) -> None:
    """One rule about one sample: the reused answer while the gate allows it, otherwise a model pass."""
    if sample.thumb is not None:
        verdict = gate.judge(
            rule, rule, sample.thumb, sample.at, area=defaults.gate_area, max_reuse_s=defaults.max_reuse_s
        )
        if verdict.answer is not None:
            return
    answer = await queue.ask(Request(sample.image, rule, source=f"cam{sample.camera}", deadline=sample.at + 10.0))
    if sample.thumb is not None:
        gate.remember(rule, rule, sample.thumb, sample.at, answer)
    if sample.measured:
        asked.append(1)


async def _camera(
    queue: InferenceQueue,
    pool: list[Image.Image],
    index: int,
    count: int,
    config: PipelineBenchConfig,
    start: float,
    end: float,
    latencies: list[float],
    drops: list[int],
    gating: bool,
    asked: list[int],
) -> None:
    """One camera: every interval, its frame (new with probability `activity`) and its rules, through the
    change gate when `gating`; records sample -> decision latency and how many decisions asked the model."""
    phase = config.interval_s * index / count  # cameras are not synchronised
    rng = random.Random(index)
    gate, defaults = ChangeGate(), CameraConfig(id="bench", url="bench.mp4")
    picture = pool[index % len(pool)]
    tick = 0
    while True:
        due = start + phase + tick * config.interval_s
        if due >= end:
            return
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        tick += 1
        if rng.random() < config.activity:
            picture = pool[(index + tick) % len(pool)]
        image = picture.copy()  # a new frame object: rules share it, cameras do not
        sampled = time.monotonic()
        thumb = await asyncio.to_thread(view, image) if gating else None
        measured = sampled >= start + config.warmup_s

        sample = _Sample(index, image, thumb, sampled, measured)
        results = await asyncio.gather(
            *(_decide(queue, gate, defaults, sample, rule, asked) for rule in RULES[: config.rules]),
            return_exceptions=True,
        )
        done = time.monotonic()
        for result in results:
            if isinstance(result, DroppedError):
                drops.append(1)
            elif isinstance(result, BaseException):
                raise result
            elif measured:
                latencies.append(done - sampled)


async def _run_n(
    backend: TransformersBackend, pool: list[Image.Image], count: int, config: PipelineBenchConfig, gating: bool
) -> PipelineRun:
    queue = InferenceQueue(
        backend, max_batch=config.max_batch, max_wait_s=config.max_wait_ms / 1000, workers=config.workers
    )
    queue.start()
    latencies: list[float] = []
    drops: list[int] = []
    asked: list[int] = []
    start = time.monotonic() + 0.5
    end = start + config.warmup_s + config.seconds
    try:
        await asyncio.gather(
            *(_camera(queue, pool, i, count, config, start, end, latencies, drops, gating, asked) for i in range(count))
        )
    finally:
        stats = queue.stats()
        await asyncio.to_thread(queue.stop)
    p95 = percentile(latencies, 95)
    passes = sum(stats.batch_sizes.values())
    return PipelineRun(
        max_image_side=backend.max_image_side,
        gating=gating,
        cameras=count,
        decisions=len(latencies),
        asked=len(asked),
        dropped=len(drops),
        decisions_per_s=round(len(latencies) / config.seconds, 2),
        latency_p50_ms=_ms(percentile(latencies, 50)),
        latency_p95_ms=_ms(p95),
        latency_max_ms=_ms(max(latencies) if latencies else None),
        mean_batch=round(sum(k * n for k, n in stats.batch_sizes.items()) / passes, 1) if passes else 0.0,
        within_slo=bool(latencies) and not drops and p95 is not None and p95 <= config.slo_s,
    )


def _sweep(
    backend: TransformersBackend,
    pool: list[Image.Image],
    config: PipelineBenchConfig,
    gating: bool,
    progress: Callable[[str], None],
) -> list[PipelineRun]:
    """More and more cameras, until two counts in a row miss the target."""
    runs: list[PipelineRun] = []
    failures = 0
    for count in (config.gated_cameras or config.cameras) if gating else config.cameras:
        run = asyncio.run(_run_n(backend, pool, count, config, gating))
        runs.append(run)
        progress(
            f"model side {backend.max_image_side:>4}  gating {'on ' if gating else 'off'}  cameras {count:>3}  "
            f"{run.decisions_per_s:7.1f} decisions/s ({run.asked} asked)  p50 {run.latency_p50_ms} ms  "
            f"p95 {run.latency_p95_ms} ms  dropped {run.dropped}  batch {run.mean_batch}  "
            f"{'ok' if run.within_slo else 'over target'}"
        )
        failures = 0 if run.within_slo else failures + 1
        if failures >= 2:
            break
    return runs


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def run_bench(config: PipelineBenchConfig, progress: Callable[[str], None] = print) -> list[Path]:
    runs: list[PipelineRun] = []
    reuse_s = CameraConfig(id="bench", url="bench.mp4").max_reuse_s
    if any(config.gating) and config.warmup_s <= reuse_s:
        log.warning(
            "warm-up %.0f s is not longer than max_reuse_s %.0f s: the gated runs measure the start, when every "
            "camera asks and the first answers expire together, not the steady state",
            config.warmup_s,
            reuse_s,
        )
    with tempfile.TemporaryDirectory() as folder:
        backend = build(ModelBenchConfig(size=config.size, device=config.device, compile=config.compile), Path(folder))
        pool = frames(config.width, config.height, 16)
        for side in config.max_image_sides:
            backend.max_image_side = side
            warm = replace(config, seconds=2.0, warmup_s=0.0)
            for count in (min(config.cameras), max(config.cameras)) if config.compile else (min(config.cameras),):
                asyncio.run(_run_n(backend, pool, count, warm, False))  # warm-up: kernels, allocator; not measured
            for gating in config.gating:
                runs += _sweep(backend, pool, config, gating, progress)
    data: dict[str, Any] = {
        "benchmark": "pipeline",
        "machine": machine() | _gpu(),
        "config": {**asdict(config), "out_dir": str(config.out_dir)},
        "runs": [asdict(r) for r in runs],
        "largest_within_slo": {
            _key(side, gating, config): max(
                (r.cameras for r in runs if r.max_image_side == side and r.gating == gating and r.within_slo),
                default=0,
            )
            for side in config.max_image_sides
            for gating in config.gating
        },
    }
    paths = write_report(config.out_dir, config.name, data, _markdown(data, runs, config))
    try:
        paths.append(_plot(runs, config, config.out_dir / f"{config.name}.png"))
    except ImportError:
        log.warning("matplotlib is not installed: no plot")
    return paths


def _key(side: int, gating: bool, config: PipelineBenchConfig) -> str:
    """`640`, or `640 gating` where runs with and without the gate are compared."""
    return f"{side} gating" if gating and len(config.gating) > 1 else str(side)


def _gpu() -> dict[str, Any]:
    from streamwatch.tools.bench.model import _gpu as gpu

    return gpu()


def _markdown(data: dict[str, Any], runs: list[PipelineRun], config: PipelineBenchConfig) -> str:
    m = data["machine"]
    best = ", ".join(
        f"**{n} cameras** with the model at {key.split()[0]} px{' and change gating' if ' ' in key else ''}"
        for key, n in data["largest_within_slo"].items()
    )
    columns = [
        ("max_image_side", "model image side"),
        ("gating", "change gating"),
        ("cameras", "cameras"),
        ("decisions_per_s", "decisions/s"),
        ("asked", "model asked"),
        ("latency_p50_ms", "p50 ms"),
        ("latency_p95_ms", "p95 ms"),
        ("latency_max_ms", "max ms"),
        ("dropped", "dropped"),
        ("mean_batch", "questions/pass"),
        ("within_slo", f"p95 <= {config.slo_s:g} s"),
    ]
    return f"""# Pipeline benchmark

{config.width}x{config.height} camera frames (already decoded), {config.rules} yes/no rules per frame, one sample
per camera every {config.interval_s:g} s (a new picture with probability {config.activity:g}), through the real
queue (max_batch {config.max_batch} questions, max_wait {config.max_wait_ms} ms, {config.workers} workers) and backend
(`{config.size}`, random weights).
GPU {m.get("gpu")}, torch {m.get("torch")}, transformers {m.get("transformers", "-")}; {m["date"]}.
{config.seconds:g} s measured per row, after {config.warmup_s:g} s of warm-up.{_gating_note(config)}

Largest camera count with p95 sample-to-decision latency within {config.slo_s:g} s and nothing dropped: {best}.

{markdown_table([asdict(r) for r in runs], columns)}

Re-run: `streamwatch bench pipeline` (plot `{config.name}.png`, numbers `{config.name}.json`).
"""


def _gating_note(config: PipelineBenchConfig) -> str:
    if not any(config.gating):
        return ""
    defaults = CameraConfig(id="bench", url="bench.mp4")
    share = steady_ask_share(config.activity, defaults.max_reuse_s / config.interval_s)
    return f"""
With change gating (the camera defaults: change_area {defaults.change_area:g} px, max_reuse_s
{defaults.max_reuse_s:g} s) a rule asks the model when its picture changed, or when its last real answer is
max_reuse_s old: in the steady state a share a / (1 - (1 - a)^k) of the decisions, a the activity and
k = max_reuse_s / interval samples, here {share:.3f}.
At the start every camera asks at once and those answers expire together max_reuse_s later; a warm-up
longer than max_reuse_s measures past that first wave."""


def steady_ask_share(activity: float, samples_per_reuse: float) -> float:
    """The share of gated decisions that ask the model, in the steady state: the gap between two asks is
    the samples up to the first change, at most `samples_per_reuse` (the answer's age limit)."""
    k = max(1, round(samples_per_reuse))
    if activity <= 0:
        return 1 / k
    return activity / (1 - (1 - activity) ** k)


def _plot(runs: list[PipelineRun], config: PipelineBenchConfig, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for index, side in enumerate(config.max_image_sides):
        for gating in config.gating:
            points = [r for r in runs if r.max_image_side == side and r.gating == gating]
            axis.plot(
                [r.cameras for r in points],
                [(r.latency_p95_ms or 0) / 1000 for r in points],
                marker="o",
                color=f"C{index}",
                linestyle="--" if gating else "-",
                label=f"p95, model image {side} px{', change gating' if gating else ''}",
            )
    axis.axhline(config.slo_s, color="grey", linestyle="--", label=f"target {config.slo_s:g} s")
    axis.set(
        xlabel=f"cameras ({config.rules} rules, 1 sample / {config.interval_s:g} s, activity {config.activity:g})",
        ylabel="sample -> decision (s)",
        yscale="log",
        title="cameras per GPU",
    )
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
