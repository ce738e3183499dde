"""`streamwatch model train-demo`: build the offline demo model from scratch and evaluate it.

A GLM-4V of DEMO_SIZE (the architecture of GLM-4.6V-Flash, ~1 M parameters) with a tokenizer that
learnt the rules' words, trained on synthetic scenes for the rules in rules/, saved as an ordinary
checkpoint (safetensors) that the service loads like any model, with its held-out report.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from streamwatch.tools.demo.answers import PoolBatches, Prompts, check_cached_tokens
from streamwatch.tools.demo.dataset import DOMAINS, demo_tasks, render_question
from streamwatch.tools.demo.evaluate import Evaluation, evaluate, held_out, report
from streamwatch.tools.demo.pool import build_pool
from streamwatch.tools.demo.train import TrainSettings, train
from streamwatch.tools.demo.vision import VisionSettings, detection_accuracy, token_features, train_vision
from streamwatch.tools.tiny import TinySize, build_glm4v
from streamwatch.vlm.processor import load_processor

# 280 x 168 pixels per 640 x 360 frame (GLM-4V counts pixels twice: two frames per temporal patch):
# 60 image tokens, enough to see a missing screw, small enough to train on a CPU.
DEMO_SIZE = TinySize(
    text_hidden=128,
    text_layers=3,
    text_heads=4,
    text_kv_heads=2,
    vision_hidden=128,
    vision_layers=2,
    vision_heads=4,
    max_pixels=2 * 300 * 169,
    min_pixels=2 * 56 * 56,
)
HELD_OUT_SEED = 1_000_003  # far from any training seed
MANIFEST = "streamwatch_demo.json"


@dataclass(frozen=True)
class DemoRecipe:
    """How train-demo builds the model: a pool of scenes, stage 1 (vision), stage 2 (answers)."""

    scenes: int = 6000
    check_scenes: int = 400  # held-out scenes on which stage 1's object finding is reported
    workers: int = 2  # processes drawing the pool (the pool is the same for any number)
    vision: VisionSettings = field(default_factory=VisionSettings)
    answers: TrainSettings = field(
        default_factory=lambda: TrainSettings(steps=1000, batch=32, lr=2e-3, freeze=("model.visual",))
    )
    seed: int = 0


def train_demo(
    out_dir: Path,
    rules_dir: Path,
    recipe: DemoRecipe,
    *,
    per_answer: int = 100,
    device: str = "cpu",
    progress: Callable[[str], None] = print,
) -> Evaluation:
    """Train (on `device`), save and evaluate (on the CPU, as a laptop would serve it) the demo model in
    `out_dir`; returns the held-out evaluation."""
    tasks = demo_tasks(rules_dir)
    if not tasks:
        raise ValueError(f"{rules_dir}: no yes/no, count or choice rule selects a tag:{' / tag:'.join(DOMAINS)}")
    rng = np.random.default_rng(recipe.seed)
    corpus = [render_question(t.rule, rng) for t in tasks for _ in range(4)]
    torch.manual_seed(recipe.seed)
    model = build_glm4v(out_dir, DEMO_SIZE, corpus=corpus).to(device)
    processor = load_processor(str(out_dir))
    check_cached_tokens(model)  # before minutes of stage 1, not after
    count = sum(p.numel() for p in model.parameters())
    started = time.monotonic()

    def elapsed() -> str:
        return f"{time.monotonic() - started:.0f} s"

    def stepped(stage: str) -> Callable[[int, float, float], None]:
        return lambda step, loss, _: progress(f"{stage} step {step}  loss {loss:.4f}  {elapsed()}")

    progress(f"drawing {recipe.scenes} scenes for {len(tasks)} rules ({recipe.workers} processes)")
    pool = build_pool(str(out_dir), rules_dir, recipe.scenes, recipe.seed, workers=recipe.workers)
    vision = recipe.vision
    progress(f"{elapsed()}: stage 1, the vision tower learns to find objects: {vision.steps} steps of {vision.batch}")
    head, vision_loss = train_vision(model.model.visual, pool, vision, stepped("vision"))
    features = token_features(model.model.visual, pool)
    check = build_pool(str(out_dir), rules_dir, recipe.check_scenes, HELD_OUT_SEED, workers=recipe.workers)
    found = detection_accuracy(head, token_features(model.model.visual, check), check)
    progress("objects found in held-out scenes: " + ", ".join(f"{k} {v:.0%}" for k, v in found.items()))
    answers = recipe.answers
    progress(f"{elapsed()}: stage 2, the language model learns to answer: {answers.steps} steps of {answers.batch}")
    batches = PoolBatches(
        pool, features, tasks, Prompts(processor, pool.grid_thw), batch=answers.batch, seed=answers.seed
    )
    answer_loss = train(model, batches.next, answers, stepped("answer"))
    minutes = (time.monotonic() - started) / 60
    model.cpu().save_pretrained(out_dir)
    manifest = {
        "note": "trained on synthetic scenes by `streamwatch model train-demo`; answers the demo rules only",
        "recipe": asdict(recipe),
        "minutes": round(minutes, 1),
        "threads": torch.get_num_threads(),
        "device": device,
        "rules": {t.rule.id: {"question": t.rule.question, "answers": list(t.answers)} for t in tasks},
        "vision_loss": vision_loss,
        "objects_found": found,
        "answer_loss": answer_loss,
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    progress(f"trained in {minutes:.1f} min; evaluating on held-out scenes")
    evaluation = evaluate_model(out_dir, rules_dir, per_answer=per_answer)
    where = f"{torch.get_num_threads()} CPU threads" if device == "cpu" else device
    notes = [
        f"Model: GLM-4V, {count / 1e6:.2f} M parameters, trained from scratch in {minutes:.1f} min on "
        f"{where} (seed {recipe.seed}): {recipe.scenes} generated scenes; "
        f"stage 1 (vision tower, object labels per image token) {vision.steps} steps x {vision.batch}; "
        f"stage 2 (language model, answers) {answers.steps} steps x {answers.batch}.",
        f"Held-out: {per_answer} scenes per answer of each rule, seed {HELD_OUT_SEED}.",
    ]
    (out_dir / "REPORT.md").write_text(
        report(evaluation, title="Demo model: held-out evaluation", notes=notes), encoding="utf-8"
    )
    return evaluation


def evaluate_model(model_dir: Path, rules_dir: Path, *, per_answer: int = 100, seed: int = HELD_OUT_SEED) -> Evaluation:
    """Load `model_dir` as the service does (transformers backend, CPU, frames at 640 px) and evaluate."""
    from streamwatch.inference.backends.transformers import TransformersBackend

    tasks = demo_tasks(rules_dir)
    backend = TransformersBackend.load(str(model_dir), device="cpu", max_image_side=640)
    try:
        return evaluate(backend, tasks, held_out(tasks, per_answer, seed))
    finally:
        backend.close()
