"""`streamwatch bench model`: the naive way (one frame, `generate`) against the service path (batched
one-pass yes/no), on a GLM-4.6V-Flash-sized GLM-4V built from its config with random weights.

Random weights cost the same FLOPs as real ones. MFU = dense FLOPs (matmuls of the vision tower over
its patches, of the language model over its tokens, and attention) / time / the GPU's bf16 peak.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from streamwatch.inference.backends.kernels import compile_layers
from streamwatch.inference.backends.transformers import TransformersBackend, resolve_device, resolve_dtype
from streamwatch.inference.types import Prompt
from streamwatch.reports import write_report
from streamwatch.tools.bench.model_report import ModelRun, markdown, plot
from streamwatch.tools.bench.report import machine, percentile
from streamwatch.tools.synthetic import scene
from streamwatch.tools.tiny import GLM46V_FLASH, TinySize, build_glm4v
from streamwatch.vlm.processor import load_processor

log = logging.getLogger(__name__)

QUESTION = "Is any person climbing over the fence? Answer yes or no."
RULES = (
    QUESTION,
    "Is a vehicle stopped at the gate? Answer yes or no.",
    "Are more than five people standing together? Answer yes or no.",
)
PEAK_BF16 = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12}  # dense


@dataclass(frozen=True)
class ModelBenchConfig:
    size: str = "glm46v-flash"  # or "tiny"
    resolutions: Sequence[tuple[int, int]] = ((1280, 720), (640, 360))
    batches: Sequence[int] = (1, 2, 4, 8, 16, 32, 64)
    reps: int = 3
    naive_frames: int = 8
    naive_tokens: int = 8
    device: str = "auto"
    peak_flops: float | None = None
    compile: bool = False  # torch.compile the vision blocks and decoder layers
    out_dir: Path = Path("bench")
    name: str = "model"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def flops_per_frame(model: Any, tokens: int, patches: int) -> float:
    """Dense FLOPs of one yes/no forward pass for one frame (2 per multiply-add)."""
    inner = model.model
    visual, text = inner.visual, inner.language_model

    def params(*modules: Any) -> int:
        return sum(p.numel() for module in modules for p in module.parameters())

    vc, tc = visual.config, text.config
    merged = patches // (vc.spatial_merge_size**2)
    per_patch = params(visual.patch_embed, visual.blocks)  # every patch
    per_merged = params(visual.downsample, visual.merger)  # every 2x2 group of patches
    text_params = sum(p.numel() for n, p in text.named_parameters() if "embed_tokens" not in n)
    vision_attention = 4 * vc.depth * patches * patches * vc.hidden_size  # full attention within the image
    text_attention = 2 * tc.num_hidden_layers * tokens * tokens * tc.hidden_size  # causal: half of 4*L*n^2*d
    lm_head = 2 * tc.hidden_size * tc.vocab_size  # logits_to_keep=1
    dense = 2 * per_patch * patches + 2 * per_merged * merged + 2 * text_params * tokens
    return float(dense + vision_attention + text_attention + lm_head)


def peak_flops(device: torch.device, override: float | None) -> float | None:
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16.items() if key in name), None)


def frames(width: int, height: int, count: int) -> list[Image.Image]:
    return [Image.fromarray(scene(width, height, 0.37 * index)) for index in range(count)]


def build(config: ModelBenchConfig, folder: Path) -> TransformersBackend:
    device = resolve_device(config.device)
    dtype = resolve_dtype("auto", device)  # bf16 (fp16 without bf16) on CUDA, fp32 on the CPU
    size = GLM46V_FLASH if config.size == "glm46v-flash" else TinySize()
    started = time.monotonic()
    torch.manual_seed(0)
    model = build_glm4v(folder, size, device=str(device), dtype=dtype)
    model.config._attn_implementation = "sdpa"
    log.info(
        "built %s (%s params) on %s in %.0f s",
        config.size,
        f"{sum(p.numel() for p in model.parameters()):,}",
        device,
        time.monotonic() - started,
    )
    backend = TransformersBackend(
        f"glm4v-{config.size}-random", load_processor(str(folder)), model, max_image_side=4096
    )
    if config.compile:
        compile_layers(backend.model)
    return backend


def run_bench(config: ModelBenchConfig, progress: Callable[[str], None] = print) -> list[Path]:
    with tempfile.TemporaryDirectory() as folder:
        backend = build(config, Path(folder))
        device = backend.device
        peak = peak_flops(device, config.peak_flops)
        runs: list[ModelRun] = []
        for width, height in config.resolutions:
            runs += _resolution(backend, width, height, config, peak, progress)
        del backend
    data = {
        "benchmark": "model",
        "machine": machine() | _gpu(),
        "config": _config_dict(config),
        "peak_flops": peak,
        "runs": [asdict(r) for r in runs],
    }
    paths = write_report(config.out_dir, config.name, data, markdown(data, runs))
    try:
        paths.append(plot(runs, config.out_dir / f"{config.name}.png"))
    except ImportError:  # a GPU box without matplotlib: plot later with `streamwatch bench model --replot`
        log.warning("matplotlib is not installed: no plot (run `streamwatch bench model --replot %s`)", paths[0])
    return paths


def _resolution(
    backend: TransformersBackend,
    width: int,
    height: int,
    config: ModelBenchConfig,
    peak: float | None,
    progress: Callable[[str], None],
) -> list[ModelRun]:
    label = f"{width}x{height}"
    pool = frames(width, height, max(config.batches) + config.naive_frames)
    probe = backend.yes_no_inputs([Prompt(pool[0], QUESTION)])
    tokens, patches = int(probe["input_ids"].shape[1]), int(probe["pixel_values"].shape[0])
    flops = flops_per_frame(backend.model, tokens, patches)
    backend.yes_no_inputs([Prompt(image, QUESTION) for image in pool[:8]])  # warm-up
    _sync(backend.device)
    started = time.perf_counter()
    backend.yes_no_inputs([Prompt(image, QUESTION) for image in pool[:8]])
    _sync(backend.device)
    preprocess_ms = (time.perf_counter() - started) / 8 * 1000
    runs = [_naive(backend, pool, config, label, flops, preprocess_ms, tokens, patches, peak)]
    progress(_line(runs[-1]))
    measures: dict[str, Callable[[list[Image.Image]], ModelRun]] = {
        "batched": lambda images: _batched(backend, images, config, label, flops, preprocess_ms, tokens, patches, peak),
        "shared3": lambda images: _shared(backend, images, config, label, flops, preprocess_ms, tokens, patches, runs),
    }
    for mode, measure in measures.items():
        for batch in config.batches:
            try:
                runs.append(measure(pool[:batch]))
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                progress(f"{label} {mode} x{batch}: out of GPU memory; larger batches skipped")
                break
            progress(_line(runs[-1]))
    return runs


def _shared(
    backend: TransformersBackend,
    images: list[Image.Image],
    config: ModelBenchConfig,
    label: str,
    flops: float,
    preprocess_ms: float,
    tokens: int,
    patches: int,
    earlier: list[ModelRun],
) -> ModelRun:
    """Three rules on every frame, answered with one pass over each image (shared_image.py)."""
    device = backend.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    prompts = [Prompt(image, rule) for image in images for rule in RULES]
    backend.score_yes_no(prompts)  # warm-up
    times = []
    for _ in range(config.reps):
        _sync(device)
        started = time.perf_counter()
        backend.score_yes_no(prompts)
        _sync(device)
        times.append(time.perf_counter() - started)
    batch, seconds = len(images), statistics.median(times)
    overlapped = _two_workers(backend, prompts, config.reps)
    one_rule = next(r for r in earlier if r.resolution == label and r.mode == "batched" and r.batch == batch)
    cost = seconds / (batch / one_rule.frames_per_s)  # against one rule on the same frames, end to end
    return ModelRun(
        label,
        "shared3",
        batch,
        round(batch / seconds, 2),
        round(len(prompts) / seconds, 2),
        _ms(percentile(times, 50)),
        _ms(percentile(times, 95)),
        round(1000 * seconds / batch, 1),
        round(preprocess_ms, 1),
        round(flops / 1e12, 2),
        None,
        _memory(device),
        tokens,
        patches,
        {
            "rules_per_frame": len(RULES),
            "cost_vs_one_rule": round(cost, 3),
            "workers2_decisions_per_s": round(len(prompts) / overlapped, 2),
        },
        round(batch / overlapped, 2),
    )


def _two_workers(backend: TransformersBackend, prompts: list[Prompt], reps: int) -> float:
    """Seconds per batch, end to end, with two threads calling the backend as the queue's two workers
    do: one prepares its batch (preprocessing, tokens, positions) while the other's runs on the GPU."""
    start = threading.Barrier(2)

    def work() -> None:
        start.wait()
        for _ in range(reps):
            backend.score_yes_no(prompts)

    threads = [threading.Thread(target=work) for _ in range(2)]
    _sync(backend.device)
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _sync(backend.device)
    return (time.perf_counter() - started) / (2 * reps)


def _memory(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None


def _naive(
    backend: TransformersBackend,
    pool: list[Image.Image],
    config: ModelBenchConfig,
    label: str,
    flops: float,
    preprocess_ms: float,
    tokens: int,
    patches: int,
    peak: float | None,
) -> ModelRun:
    """One request at a time, answered by `generate` (what a per-frame script would do)."""
    device = backend.device
    backend.generate([Prompt(pool[0], QUESTION)], config.naive_tokens)  # warm-up
    latencies = []
    for image in pool[: config.naive_frames]:
        _sync(device)
        started = time.perf_counter()
        backend.generate([Prompt(image, QUESTION)], config.naive_tokens)
        _sync(device)
        latencies.append(time.perf_counter() - started)
    total = sum(latencies)
    rate = len(latencies) / total
    return ModelRun(
        label,
        "naive",
        1,
        round(rate, 2),
        round(rate, 2),
        _ms(percentile(latencies, 50)),
        _ms(percentile(latencies, 95)),
        round(1000 * total / len(latencies), 1),
        round(preprocess_ms, 1),
        round(flops / 1e12, 2),
        None,
        _memory(device),
        tokens,
        patches,
        {"generated_tokens": config.naive_tokens},
    )


def _batched(
    backend: TransformersBackend,
    images: list[Image.Image],
    config: ModelBenchConfig,
    label: str,
    flops: float,
    preprocess_ms: float,
    tokens: int,
    patches: int,
    peak: float | None,
) -> ModelRun:
    """The service path: one forward pass with logits_to_keep=1 for the whole batch."""
    device = backend.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    prompts = [Prompt(image, QUESTION) for image in images]
    backend.score_yes_no(prompts)  # warm-up, end to end
    inputs = backend.yes_no_inputs(prompts, positions=True)  # as score_yes_no prepares them
    model_times, end_to_end = [], []
    with torch.inference_mode():
        for _ in range(config.reps):
            _sync(device)
            started = time.perf_counter()
            backend.model(**inputs, logits_to_keep=1, use_cache=False)
            _sync(device)
            model_times.append(time.perf_counter() - started)
    for _ in range(max(1, config.reps // 2)):
        started = time.perf_counter()
        backend.score_yes_no(prompts)
        _sync(device)
        end_to_end.append(time.perf_counter() - started)
    batch = len(images)
    model_s = statistics.median(model_times)
    rate = batch / statistics.median(end_to_end)
    mfu = round(flops * batch / model_s / peak, 3) if peak else None
    overlapped = _two_workers(backend, prompts, config.reps)
    service_mfu = round(flops * batch / overlapped / peak, 3) if peak else None
    return ModelRun(
        label,
        "batched",
        batch,
        round(rate, 2),
        round(rate, 2),
        _ms(percentile(end_to_end, 50)),
        _ms(percentile(end_to_end, 95)),
        round(1000 * model_s / batch, 1),
        round(preprocess_ms, 1),
        round(flops / 1e12, 2),
        mfu,
        _memory(device),
        tokens,
        patches,
        {"model_frames_per_s": round(batch / model_s, 2)},
        round(batch / overlapped, 2),
        service_mfu,
    )


def _ms(seconds: float | None) -> float:
    return round((seconds or 0.0) * 1000, 1)


def _line(run: ModelRun) -> str:
    mfu = "-" if run.mfu is None else f"{run.mfu:.2f}"
    return (
        f"{run.resolution:>9} {run.mode:>7} x{run.batch:<3} {run.frames_per_s:8.2f} frames/s  "
        f"model {run.model_ms_per_frame:7.1f} ms/frame  p95 {run.latency_p95_ms:8.1f} ms  MFU {mfu}  "
        f"mem {run.gpu_memory_gb} GB"
    )


def _gpu() -> dict[str, Any]:
    if not torch.cuda.is_available():
        return {"gpu": None, "torch": torch.__version__}
    import transformers

    return {
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
    }


def _config_dict(config: ModelBenchConfig) -> dict[str, Any]:
    data = asdict(config)
    data["out_dir"] = str(config.out_dir)
    data["resolutions"] = [f"{w}x{h}" for w, h in config.resolutions]
    return data
