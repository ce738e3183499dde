"""Where the GPU time of one batched yes/no pass goes (GLM-4.6V-Flash size, random weights).

    python scripts/profile_model.py [--frames 8] [--size 1280x720] [--rules 1]

Prints PyTorch profiler's CUDA kernel table (top 30 by total CUDA time) and the share of time in the
vision tower, the language model and everything else.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streamwatch.tools.bench.model import RULES, ModelBenchConfig, build, frames
from streamwatch.inference.types import Prompt


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--rules", type=int, default=1)
    args = parser.parse_args()
    width, height = (int(n) for n in args.size.split("x"))
    with tempfile.TemporaryDirectory() as folder:
        backend = build(ModelBenchConfig(), Path(folder))
        prompts = [Prompt(image, rule) for image in frames(width, height, args.frames) for rule in RULES[: args.rules]]
        backend.score_yes_no(prompts)  # warm-up
        inputs = backend._inputs(prompts, backend.style.answer_prefix)
        model = backend.model
        visual, language = model.model.visual, model.model.language_model
        timings: dict[str, list[torch.cuda.Event]] = {}

        def timed(name: str, module: torch.nn.Module) -> None:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            timings[name] = [start, end]
            module.register_forward_pre_hook(lambda *_: start.record())
            module.register_forward_hook(lambda *_: end.record())

        timed("vision tower", visual)
        timed("language model", language)
        with torch.inference_mode(), profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            with record_function("forward"):
                model(**inputs, logits_to_keep=1)
            end.record()
        torch.cuda.synchronize()
        total = start.elapsed_time(end)
        print(f"{args.frames} frames x {args.rules} rules at {args.size}: {total:.0f} ms "
              f"({total / args.frames:.1f} ms/frame), tokens per row {inputs['input_ids'].shape[1]}")  # fmt: skip
        for name, (a, b) in timings.items():
            print(f"  {name}: {a.elapsed_time(b):.0f} ms ({a.elapsed_time(b) / total:.0%})")
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=30, max_name_column_width=70))
    return 0


if __name__ == "__main__":
    sys.exit(main())
