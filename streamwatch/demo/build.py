"""`streamwatch model train-demo`: build the offline demo model from scratch and evaluate it.

A GLM-4V of DEMO_SIZE (the architecture of GLM-4.6V-Flash, ~1 M parameters) with a tokenizer that
learnt the rules' words, trained on synthetic scenes for the rules in rules/, saved as an ordinary
checkpoint (safetensors) that the service loads like any model, with its held-out report.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from streamwatch.demo.dataset import DOMAINS, demo_tasks, examples, render_question
from streamwatch.demo.evaluate import Evaluation, evaluate, held_out, report
from streamwatch.demo.train import TrainSettings, train
from streamwatch.vlm.processor import load_processor
from streamwatch.vlm.tiny import TinySize, build_glm4v

# 280 x 168 pixels per 640 x 360 frame (GLM-4V counts pixels twice: two frames per temporal patch):
# 60 image tokens, enough to see a missing screw, small enough to train on a CPU.
DEMO_SIZE = TinySize(
    text_hidden=128, text_layers=3, text_heads=4, text_kv_heads=2,
    vision_hidden=192, vision_layers=2, vision_heads=4, max_pixels=2 * 300 * 169, min_pixels=2 * 56 * 56,
)  # fmt: skip
HELD_OUT_SEED = 1_000_003  # far from any training seed
MANIFEST = "streamwatch_demo.json"


def train_demo(
    out_dir: Path, rules_dir: Path, settings: TrainSettings, *, per_answer: int = 100,
    progress: Callable[[str], None] = print,
) -> Evaluation:  # fmt: skip
    """Train, save and evaluate the demo model in `out_dir`; returns the held-out evaluation."""
    tasks = demo_tasks(rules_dir)
    if not tasks:
        raise ValueError(f"{rules_dir}: no yes/no, count or choice rule selects a tag:{' / tag:'.join(DOMAINS)}")
    rng = np.random.default_rng(settings.seed)
    corpus = [render_question(t.rule, rng) for t in tasks for _ in range(4)]
    torch.manual_seed(settings.seed)
    model = build_glm4v(out_dir, DEMO_SIZE, corpus=corpus)
    processor = load_processor(str(out_dir))
    count = sum(p.numel() for p in model.parameters())
    progress(f"training a {count / 1e6:.2f} M-parameter GLM-4V on {len(tasks)} rules: {settings.steps} steps "
             f"of {settings.batch} examples")  # fmt: skip
    started = time.monotonic()

    def show(step: int, loss: float, seconds: float) -> None:
        progress(f"step {step}/{settings.steps}  loss {loss:.4f}  {seconds:.0f} s")

    history = train(model, processor, examples(tasks, settings.seed), settings, show)
    minutes = (time.monotonic() - started) / 60
    model.save_pretrained(out_dir)
    manifest = {
        "note": "trained on synthetic scenes by `streamwatch model train-demo`; answers the demo rules only",
        "settings": asdict(settings), "minutes": round(minutes, 1), "threads": torch.get_num_threads(),
        "rules": {t.rule.id: {"question": t.rule.question, "answers": list(t.answers)} for t in tasks},
        "loss": history,
    }  # fmt: skip
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    progress(f"trained in {minutes:.1f} min; evaluating on held-out scenes")
    evaluation = evaluate_model(out_dir, rules_dir, per_answer=per_answer)
    notes = [f"Model: GLM-4V, {count / 1e6:.2f} M parameters, trained {settings.steps} steps x {settings.batch} "
             f"examples (seed {settings.seed}) in {minutes:.1f} min on {torch.get_num_threads()} CPU threads.",
             f"Held-out: {per_answer} scenes per answer of each rule, seed {HELD_OUT_SEED}."]  # fmt: skip
    (out_dir / "REPORT.md").write_text(report(evaluation, title="Demo model: held-out evaluation", notes=notes),
                                       encoding="utf-8")  # fmt: skip
    return evaluation


def evaluate_model(model_dir: Path, rules_dir: Path, *, per_answer: int = 100, seed: int = HELD_OUT_SEED
                   ) -> Evaluation:  # fmt: skip
    """Load `model_dir` as the service does (transformers backend, CPU, frames at 640 px) and evaluate."""
    from streamwatch.inference.backends.transformers import TransformersBackend

    tasks = demo_tasks(rules_dir)
    backend = TransformersBackend(str(model_dir), device="cpu", max_image_side=640)
    try:
        return evaluate(backend, tasks, held_out(tasks, per_answer, seed))
    finally:
        backend.close()
