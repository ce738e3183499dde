"""Training code of the demo model: the answer tokens carry the loss, runs are reproducible, frozen parts stay."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from support.helpers import REPO

from streamwatch.learning.finetune.objective import answer_suffix, encode
from streamwatch.tools.demo.build import DEMO_SIZE
from streamwatch.tools.demo.dataset import demo_tasks, examples, render_question
from streamwatch.tools.demo.train import Batches, TrainSettings, train
from streamwatch.tools.tiny import build_glm4v
from streamwatch.vlm.processor import load_processor
from streamwatch.vlm.prompts import prompt_style


def fresh_model(folder: Path, seed: int = 0) -> tuple[Any, Any]:
    tasks = demo_tasks(REPO / "rules")
    rng = np.random.default_rng(0)
    torch.manual_seed(seed)
    model = build_glm4v(folder, DEMO_SIZE, corpus=[render_question(t.rule, rng) for t in tasks])
    return model, load_processor(str(folder))


def test_only_the_answer_tokens_are_targets(tmp_path: Path) -> None:
    _, processor = fresh_model(tmp_path)
    style = prompt_style(processor)
    suffix = answer_suffix(style, processor.tokenizer)
    batch = [next(examples(demo_tasks(REPO / "rules"), seed=s)) for s in range(3)]
    inputs = encode(processor, style, suffix, batch, 640)
    mask = inputs["target_mask"]
    tail = inputs["input_ids"][:, -mask.shape[1] :]
    for row, ex in enumerate(batch):
        text = processor.tokenizer.decode(tail[row][mask[row]])
        assert text == f"<|begin_of_box|>{ex.answer}<|end_of_box|><|endoftext|>"
    assert inputs["pixel_values"].shape[0] == 3 * 240  # 280 x 168 pixels per frame: 240 patches


@pytest.mark.slow
def test_training_is_seeded_learns_and_keeps_the_frozen_encoder(tmp_path: Path) -> None:
    settings = TrainSettings(steps=24, batch=4, warmup=4, log_every=6, seed=7)
    runs = []
    for name in ("a", "b"):
        model, processor = fresh_model(tmp_path / name, seed=7)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        batches = Batches(processor, examples(demo_tasks(REPO / "rules"), seed=7), settings)
        try:
            history = train(model, batches.next, settings)
        finally:
            batches.close()
        runs.append((model, before, history))
    (a, before, history), (b, _, history_b) = runs
    assert history == history_b  # same seed, same examples: the same run
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb), name
        frozen = name.startswith(settings.freeze)
        assert torch.equal(pa, before[name]) == frozen, name
    assert history[-1][1] < 0.5 * history[0][1]  # the answer format is learnt within a few steps
