"""`streamwatch bench levers`: what each GPU lever of the service path is worth, one step at a time.

On the same prepared batch (GLM-4.6V-Flash-sized GLM-4V, random weights, one yes/no forward with
`logits_to_keep=1`) every step adds one lever to the one before and reports GPU ms/frame, MFU and how
far its P(yes) answers move from the first step (the plain transformers model). Attention kernels,
image preprocessing and ROI crops are measured beside the chain.
"""

from __future__ import annotations

import logging
import math
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from streamwatch.inference.backends.kernels import (
    compile_layers,
    fp8_supported,
    fuse_rms_norms,
    linear_patch_embeddings,
    quantize_fp8,
    restore_modules,
)
from streamwatch.inference.backends.transformers import TransformersBackend
from streamwatch.inference.types import Prompt
from streamwatch.ingest.preprocess import crop_roi
from streamwatch.reports import markdown_table, write_report
from streamwatch.tools.bench.chain import CHAIN
from streamwatch.tools.bench.model import (
    QUESTION,
    ModelBenchConfig,
    _gpu,
    _sync,
    build,
    flops_per_frame,
    frames,
    peak_flops,
)
from streamwatch.tools.bench.report import machine
from streamwatch.vlm.torch_images import with_torch_images

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeversBenchConfig:
    size: str = "glm46v-flash"
    width: int = 1280
    height: int = 720
    frames: int = 8
    reps: int = 3
    steps: Sequence[str] = CHAIN
    device: str = "auto"
    peak_flops: float | None = None
    out_dir: Path = Path("bench")
    name: str = "levers"


@dataclass
class Lever:
    group: str  # chain | attention | preprocess | roi
    name: str
    ms_per_frame: float
    mfu: float | None = None
    p_yes_drift: float | None = None  # largest |P(yes) - P(yes) of the plain model| over the batch
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _timed(fn: Callable[[], Any], device: torch.device, reps: int) -> float:
    fn()  # warm-up (compiles where a step compiles)
    times = []
    for _ in range(reps):
        _sync(device)
        started = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run_bench(config: LeversBenchConfig, progress: Callable[[str], None] = print) -> list[Path]:
    with tempfile.TemporaryDirectory() as folder:
        backend = build(ModelBenchConfig(size=config.size, device=config.device), Path(folder))
        levers = measure(backend, config, progress)
        peak = peak_flops(backend.device, config.peak_flops)
        del backend
    data = {
        "benchmark": "levers",
        "machine": machine() | _gpu(),
        "config": _config_dict(config),
        "peak_flops": peak,
        "levers": [asdict(lever) for lever in levers],
    }
    return write_report(config.out_dir, config.name, data, _markdown(data, levers))


def measure(backend: TransformersBackend, config: LeversBenchConfig, progress: Callable[[str], None]) -> list[Lever]:
    device, model = backend.device, backend.model
    images = frames(config.width, config.height, config.frames)
    prompts = [Prompt(image, QUESTION) for image in images]
    inputs = backend.yes_no_inputs(prompts)
    tokens, patches = int(inputs["input_ids"].shape[1]), int(inputs["pixel_values"].shape[0]) // config.frames
    flops = flops_per_frame(model, tokens, patches) * config.frames
    peak = peak_flops(device, config.peak_flops)
    restore_modules(model)  # the chain starts from transformers' own modules

    def forward(use_cache: bool) -> torch.Tensor:
        with torch.inference_mode():
            logits = model(**inputs, logits_to_keep=1, use_cache=use_cache).logits[:, -1].float()
            return torch.tensor([a.p_yes for a in backend.p_yes(logits)])

    def lever(
        group: str, name: str, fn: Callable[[], torch.Tensor], reference: torch.Tensor | None, note: str = ""
    ) -> Lever:
        seconds = _timed(fn, device, config.reps)
        drift = None if reference is None else round(float((fn() - reference).abs().max()), 4)
        result = Lever(
            group,
            name,
            round(1000 * seconds / config.frames, 2),
            round(flops / seconds / peak, 3) if peak else None,
            drift,
            note,
        )
        progress(f"{group:>10} {name:<16} {result.ms_per_frame:8.2f} ms/frame  MFU {result.mfu}  drift {drift}")
        return result

    reference = forward(True)
    levers: list[Lever] = []
    for step in config.steps:
        note = _apply(step, backend)
        if note.startswith("skipped"):
            progress(f"{'chain':>10} {step:<16} {note}")
            levers.append(Lever("chain", step, float("nan"), note=note))
            continue

        def run(plain: bool = step == "plain") -> torch.Tensor:
            return forward(plain)

        levers.append(lever("chain", step, run, reference, note))
        if step == "fused-kernels":  # attention kernels compared in eager mode, before anything is compiled
            levers += _attention(backend, forward, reference, lever)
    levers += _preprocess(backend, images, config, progress)
    levers += _roi(backend, images[0], config, progress)
    return levers


def _apply(step: str, backend: TransformersBackend) -> str:
    """Add one lever to the model; returns a note for the report."""
    model = backend.model
    if step in ("plain", "no-kv-cache"):
        return "" if step == "plain" else "use_cache=False: no cache tensors for a one-pass answer"
    if step == "fused-kernels":
        count = fuse_rms_norms(model) + linear_patch_embeddings(model)
        return f"{count} modules: fused rms_norm, patch embedding as one matmul"
    if step in ("compile", "compile-static"):
        torch._dynamo.reset()
        dynamic = step == "compile"
        compile_layers(backend.model, dynamic=dynamic)
        return "torch.compile per layer, dynamic shapes" if dynamic else "torch.compile per layer, static shapes"
    if step == "fp8":
        if not fp8_supported(backend.device):
            return "skipped: this GPU has no FP8 tensor cores"
        torch._dynamo.reset()
        return f"{quantize_fp8(backend.model)} linear layers in FP8 (rowwise scales), compiled"
    raise ValueError(f"unknown lever {step!r}; known: {', '.join(CHAIN)}")


def _attention(
    backend: TransformersBackend,
    forward: Callable[[bool], torch.Tensor],
    reference: torch.Tensor,
    lever: Callable[..., Lever],
) -> list[Lever]:
    if backend.device.type != "cuda":
        return []
    kinds = torch.nn.attention.SDPBackend
    results = []
    for name, kind in (
        ("flash", kinds.FLASH_ATTENTION),
        ("cudnn", kinds.CUDNN_ATTENTION),
        ("efficient", kinds.EFFICIENT_ATTENTION),
    ):

        def run(kind: Any = kind) -> torch.Tensor:
            with torch.nn.attention.sdpa_kernel(kind):
                return forward(False)

        try:
            results.append(lever("attention", f"sdpa {name}", run, reference, "on the last chain step"))
        except RuntimeError as exc:
            results.append(Lever("attention", f"sdpa {name}", float("nan"), note=f"unavailable: {str(exc)[:80]}"))
    return results


def _preprocess(
    backend: TransformersBackend, images: list[Any], config: LeversBenchConfig, progress: Callable[[str], None]
) -> list[Lever]:
    device, texts = backend.device, [backend.prompt_text(QUESTION)] * len(images)
    ways: dict[str, Callable[[], Any]] = {
        "checkpoint processor (CPU)": lambda: backend.encode(images, texts, backend.processor)
    }
    torch_processor = backend.torch_processor or with_torch_images(
        backend.processor, device=device, dtype=backend.dtype, max_image_side=backend.max_image_side
    )
    if torch_processor is not None:
        ways[f"torch_images ({device.type})"] = lambda: backend.encode(images, texts, torch_processor)
    results = []
    for name, fn in ways.items():
        ms = 1000 * _timed(fn, device, config.reps) / len(images)
        results.append(Lever("preprocess", name, round(ms, 2), note=type(backend.processor.image_processor).__name__))
        progress(f"{'preprocess':>10} {name:<16} {ms:8.2f} ms/frame")
    return results


def _roi(
    backend: TransformersBackend, image: Any, config: LeversBenchConfig, progress: Callable[[str], None]
) -> list[Lever]:
    """One rule asked about a region of the frame: fewer image tokens, less work."""
    results = []
    for name, roi in (
        ("whole frame", None),
        ("half-width ROI", (0.0, 0.0, 0.5, 1.0)),
        ("quarter ROI", (0.0, 0.0, 0.5, 0.5)),
    ):
        prompts = [Prompt(crop_roi(image, roi), QUESTION)] * config.frames
        inputs = backend.yes_no_inputs(prompts)

        def run(inputs: Any = inputs) -> Any:
            with torch.inference_mode():
                return backend.model(**inputs, logits_to_keep=1, use_cache=False)

        ms = 1000 * _timed(run, backend.device, config.reps) / config.frames
        results.append(Lever("roi", name, round(ms, 2), extra={"tokens": int(inputs["input_ids"].shape[1])}))
        progress(f"{'roi':>10} {name:<16} {ms:8.2f} ms/frame  {inputs['input_ids'].shape[1]} tokens")
    return results


def _config_dict(config: LeversBenchConfig) -> dict[str, Any]:
    data = asdict(config)
    data["out_dir"], data["steps"] = str(config.out_dir), list(config.steps)
    return data


def _markdown(data: dict[str, Any], levers: list[Lever]) -> str:
    m, c = data["machine"], data["config"]
    measured = [lever for lever in levers if lever.group == "chain" and not math.isnan(lever.ms_per_frame)]
    first = measured[0].ms_per_frame if measured else None
    rows = [
        asdict(lever) | {"speedup": f"{first / lever.ms_per_frame:.2f}x" if first and lever in measured else ""}
        for lever in levers
    ]
    columns = [
        ("group", "group"),
        ("name", "lever"),
        ("ms_per_frame", "GPU ms/frame"),
        ("speedup", "vs plain"),
        ("mfu", "MFU"),
        ("p_yes_drift", "max P(yes) change"),
        ("note", "note"),
    ]
    return f"""# GPU levers

GLM-4V at `{c["size"]}` size with random weights, {c["frames"]} frames of {c["width"]}x{c["height"]} per batch, one
yes/no forward (`logits_to_keep=1`); GPU {m.get("gpu")}, torch {m.get("torch")}, transformers
{m.get("transformers", "-")}; {m["date"]}. Chain steps are cumulative: each adds one lever to the step above.
"max P(yes) change" is against the plain model on the same batch (bf16 noise alone moves it a little).

{markdown_table(rows, columns)}

- attention: sdpa restricted to one kernel family, on the fused-kernels step (eager).
- preprocess: per frame, the checkpoint's processor on the CPU against `vlm/torch_images.py` on the model's device.
- roi: one rule asked about part of the frame (`roi` in the rule) costs only that part's image tokens.
- Re-run: `streamwatch bench levers` (numbers `{c["name"]}.json`).
"""
