"""`streamwatch bench model`'s report: one row per measured run, as Markdown and as a plot."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from streamwatch.reports import markdown_table


@dataclass
class ModelRun:
    resolution: str
    mode: str  # naive | batched | shared3
    batch: int
    frames_per_s: float
    decisions_per_s: float
    latency_p50_ms: float
    latency_p95_ms: float
    model_ms_per_frame: float  # GPU work only (inputs prepared beforehand)
    preprocess_ms_per_frame: float  # image preprocessing (torch on the GPU where the backend does it there)
    tflop_per_frame: float
    mfu: float | None
    gpu_memory_gb: float | None
    tokens_per_frame: int = 0
    patches_per_frame: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    workers2_frames_per_s: float | None = None  # two threads calling the backend, as the queue's two workers do
    service_mfu: float | None = None  # MFU of that end-to-end rate (preprocessing overlapped with the GPU)


def replot(report: Path) -> Path:
    """Draw the plot of a saved report (e.g. one measured on a machine without matplotlib)."""
    import json

    data = json.loads(report.read_text())
    return plot([ModelRun(**run) for run in data["runs"]], report.with_suffix(".png"))


def markdown(data: dict[str, Any], runs: list[ModelRun]) -> str:
    m = data["machine"]
    columns = [
        ("resolution", "frame"),
        ("mode", "path"),
        ("batch", "frames/batch"),
        ("frames_per_s", "frames/s (end to end)"),
        ("decisions_per_s", "decisions/s"),
        ("model_ms_per_frame", "GPU ms/frame"),
        ("preprocess_ms_per_frame", "preprocess ms/frame"),
        ("latency_p50_ms", "latency p50 ms"),
        ("latency_p95_ms", "latency p95 ms"),
        ("mfu", "MFU"),
        ("workers2_frames_per_s", "frames/s (2 workers)"),
        ("service_mfu", "MFU (2 workers, end to end)"),
        ("tflop_per_frame", "TFLOP/frame"),
        ("tokens_per_frame", "tokens"),
        ("gpu_memory_gb", "GPU GB"),
    ]
    lines = []
    for resolution in dict.fromkeys(r.resolution for r in runs):
        naive = next(r for r in runs if r.resolution == resolution and r.mode == "naive")
        best = max(
            (r for r in runs if r.resolution == resolution and r.mode == "batched"), key=lambda r: r.decisions_per_s
        )
        lines.append(
            f"- {resolution}: best batched {best.decisions_per_s:g} decisions/s at batch {best.batch} = "
            f"{best.decisions_per_s / naive.decisions_per_s:.1f}x the naive {naive.decisions_per_s:g}/s; "
            f"MFU {best.mfu} (model only), {best.service_mfu} end to end with two workers"
        )
        shared = [r for r in runs if r.resolution == resolution and r.mode == "shared3"]
        if shared:
            top = max(shared, key=lambda r: r.decisions_per_s)
            lines.append(
                f"- {resolution}, 3 rules per frame sharing the image: {top.decisions_per_s:g} decisions/s at "
                f"{top.batch} frames per batch = {top.decisions_per_s / naive.decisions_per_s:.1f}x naive; "
                f"3 rules cost {top.extra['cost_vs_one_rule']:.2f}x one rule"
            )
    return f"""# Model benchmark

GLM-4V architecture at `{data["config"]["size"]}` size with random weights; GPU {m.get("gpu")}, torch {m.get("torch")},
transformers {m.get("transformers", "-")}; {m["cpu"]}, {m["cores"]} cores; {m["date"]}. Peak used for MFU:
{data["peak_flops"] and f"{data['peak_flops'] / 1e12:.0f} TFLOP/s (bf16 dense)"}.

{chr(10).join(lines)}

{markdown_table([asdict(r) for r in runs], columns)}

- naive: one frame at a time, `generate` of {data["config"]["naive_tokens"]} tokens (what a per-frame script does).
- batched: the service path, one forward pass with `logits_to_keep=1` per batch, P(yes) from the yes/no logits.
  frames/s and latency are end to end (image preprocessing included: `vlm/torch_images.py` on the GPU); GPU
  ms/frame and MFU count the model only. "2 workers": two threads call the backend as the queue's two workers do,
  so one batch's preprocessing overlaps the other's GPU work; its MFU is the service's steady state.
- shared3: three yes/no rules on every frame; the image prefix runs once and its KV cache serves the three
  question suffixes (`inference/backends/shared_image.py`); its cost is end to end against one rule on the same frames.
- Re-run: `streamwatch bench model` (plot `{data["config"]["name"]}.png`, numbers `{data["config"]["name"]}.json`).
"""


def plot(runs: list[ModelRun], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (rate, mfu) = plt.subplots(1, 2, figsize=(10, 4))
    for index, resolution in enumerate(dict.fromkeys(r.resolution for r in runs)):
        color = f"C{index}"
        batched = [r for r in runs if r.resolution == resolution and r.mode == "batched"]
        naive = next(r for r in runs if r.resolution == resolution and r.mode == "naive")
        sizes = [r.batch for r in batched]
        rate.plot(sizes, [r.frames_per_s for r in batched], marker="o", color=color, label=f"{resolution} batched")
        rate.plot(
            sizes,
            [r.extra.get("model_frames_per_s", 0) for r in batched],
            marker=".",
            linestyle=":",
            color=color,
            label=f"{resolution} GPU only",
        )
        rate.axhline(naive.frames_per_s, color=color, linestyle="--", label=f"{resolution} naive")
        shared = [r for r in runs if r.resolution == resolution and r.mode == "shared3"]
        if shared:
            rate.plot(
                [r.batch for r in shared],
                [r.decisions_per_s for r in shared],
                marker="^",
                linestyle="-.",
                color=color,
                label=f"{resolution} 3 rules/frame: decisions/s",
            )
        if any(r.mfu is not None for r in batched):
            mfu.plot(sizes, [r.mfu or 0 for r in batched], marker="o", color=color, label=f"{resolution} model only")
        if any(r.service_mfu is not None for r in batched):
            mfu.plot(
                sizes,
                [r.service_mfu or 0 for r in batched],
                marker="s",
                linestyle="--",
                color=color,
                label=f"{resolution} end to end, 2 workers",
            )
    rate.set(xscale="log", xlabel="frames per batch", ylabel="per second", title="frames and yes/no decisions")
    mfu.set(xscale="log", xlabel="batch size", ylabel="MFU", title="model FLOPs utilisation")
    for axis in (rate, mfu):
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
