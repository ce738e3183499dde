"""Try the GPU levers of issue 6 on the GLM-4.6V-Flash-sized model (random weights) and print one line each.

    python scripts/mfu_levers.py [--frames 8] [--size 1280x720] [--variants eager,nocache,...] [--profile NAME]

Every variant is timed on the same prepared inputs (one yes/no forward, logits_to_keep=1); GPU ms/frame
and MFU as in `streamwatch bench model`. Exploration tool: what helps moves into the package.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streamwatch.bench.model import QUESTION, ModelBenchConfig, build, flops_per_frame, frames
from streamwatch.inference.types import Prompt

PEAK = 989.4e12


def timed(fn: Callable[[], Any], reps: int = 3) -> float:
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        torch.cuda.synchronize()
        started = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def fused_norms(model: Any) -> None:
    """Swap every RMSNorm forward for torch's fused rms_norm (fp32 inside, one kernel)."""
    for module in model.modules():
        if type(module).__name__.endswith("RMSNorm"):
            eps = module.variance_epsilon
            weight = module.weight

            def forward(x: torch.Tensor, weight: torch.Tensor = weight, eps: float = eps) -> torch.Tensor:
                return torch.nn.functional.rms_norm(x, (x.shape[-1],), weight, eps)

            module.forward = forward


def uncompile(model: Any) -> None:
    torch._dynamo.reset()
    for module in model.modules():
        if getattr(module, "_compiled_call_impl", None) is not None:
            module._compiled_call_impl = None


def compile_layers(model: Any, **kwargs: Any) -> None:
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and name.endswith(("blocks", "layers")):
            for layer in module:
                layer.compile(**kwargs)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--variants", default="eager,nocache,sdpa-flash,sdpa-cudnn,sdpa-efficient,fusednorm,"
                        "compile-dyn,compile-static")  # fmt: skip
    parser.add_argument("--profile", default="")
    parser.add_argument("--preprocess", action="store_true")
    args = parser.parse_args()
    width, height = (int(n) for n in args.size.split("x"))
    with tempfile.TemporaryDirectory() as folder:
        backend = build(ModelBenchConfig(), Path(folder))
        model = backend.model
        images = frames(width, height, args.frames)
        prompts = [Prompt(image, QUESTION) for image in images]
        inputs = backend._inputs(prompts, backend.style.answer_prefix)
        tokens, patches = inputs["input_ids"].shape[1], inputs["pixel_values"].shape[0] // args.frames
        flops = flops_per_frame(model, tokens, patches) * args.frames
        print(f"{args.frames} frames {args.size}: {tokens} tokens, {patches} patches per frame, "
              f"{flops / args.frames / 1e12:.1f} TFLOP/frame", flush=True)  # fmt: skip
        if args.preprocess:
            preprocess(backend, images)
        sdpa = torch.nn.attention.SDPBackend
        backends = {"sdpa-flash": sdpa.FLASH_ATTENTION, "sdpa-cudnn": sdpa.CUDNN_ATTENTION,
                    "sdpa-efficient": sdpa.EFFICIENT_ATTENTION}  # fmt: skip

        def forward(use_cache: bool = False) -> Any:
            with torch.inference_mode():
                return model(**inputs, logits_to_keep=1, use_cache=use_cache).logits

        reference = forward(True)[:, -1].float()
        for variant in args.variants.split(","):
            started = time.monotonic()
            fn: Callable[[], Any] = forward
            try:
                if variant == "eager":
                    fn = lambda: forward(True)  # noqa: E731
                elif variant in backends:
                    chosen = backends[variant]

                    def fn(chosen: Any = chosen) -> Any:
                        with torch.nn.attention.sdpa_kernel(chosen):
                            return forward()
                elif variant == "fusednorm":
                    fused_norms(model)
                elif variant == "compile-dyn":
                    uncompile(model)
                    compile_layers(model, dynamic=True)
                elif variant == "compile-static":
                    uncompile(model)
                    compile_layers(model, dynamic=False)
                elif variant == "compile-autotune":
                    uncompile(model)
                    compile_layers(model, dynamic=False, mode="max-autotune-no-cudagraphs")
                elif variant == "compile-lm":
                    uncompile(model)
                    model.model.language_model.compile(dynamic=False)
                    model.model.visual.compile(dynamic=False)
                seconds = timed(fn)
                drift = (fn()[:, -1].float() - reference).abs().max().item()
                mfu = flops / seconds / PEAK
                print(f"{variant:>16}: {1000 * seconds / args.frames:6.1f} ms/frame  MFU {mfu:.3f}  max logit drift "
                      f"{drift:.3f}  (setup+run {time.monotonic() - started:.0f} s)", flush=True)  # fmt: skip
            except Exception as exc:  # exploration: report and go on
                print(f"{variant:>16}: failed: {type(exc).__name__}: {str(exc)[:300]}", flush=True)
            if variant == args.profile:
                profile(fn, model)
    return 0


def profile(fn: Callable[[], Any], model: Any) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as run_profile

    visual, language = model.model.visual, model.model.language_model
    marks: dict[str, list[torch.cuda.Event]] = {}
    hooks = []
    for name, module in (("vision", visual), ("language", language)):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        marks[name] = [start, end]
        hooks.append(module.register_forward_pre_hook(lambda *_, s=start: s.record()))
        hooks.append(module.register_forward_hook(lambda *_, e=end: e.record()))
    with run_profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        fn()
        torch.cuda.synchronize()
    for hook in hooks:
        hook.remove()
    for name, (a, b) in marks.items():
        print(f"  {name}: {a.elapsed_time(b):.0f} ms")
    print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=25, max_name_column_width=60))


def preprocess(backend: Any, images: list[Any]) -> None:
    processor = backend.processor
    print(f"image processor: {type(processor.image_processor).__name__}", flush=True)
    for label, kwargs in (("processor cpu", {}), ("processor cuda", {"device": "cuda"})):
        try:
            seconds = timed(lambda kwargs=kwargs: processor.image_processor(images, return_tensors="pt", **kwargs))
            print(f"  {label}: {1000 * seconds / len(images):.1f} ms/frame", flush=True)
        except Exception as exc:
            print(f"  {label}: failed: {exc}", flush=True)
    try:
        from transformers.models.glm4v.image_processing_pil_glm4v import Glm4vImageProcessorPil as Pil
    except ImportError:
        try:
            from transformers import Glm4vImageProcessor as Pil  # transformers < 5.2x: the slow PIL one
        except ImportError:
            return
    pil = Pil.from_dict(processor.image_processor.to_dict()) if hasattr(Pil, "from_dict") else Pil()
    seconds = timed(lambda: pil(images, return_tensors="pt"))
    print(f"  {type(pil).__name__}: {1000 * seconds / len(images):.1f} ms/frame", flush=True)


if __name__ == "__main__":
    sys.exit(main())
