"""The two training stages of the demo model: stage 1 (vision tower on per-token object labels) and
stage 2 (language model on cached image tokens), checked against what the real model computes."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from support.helpers import REPO
from transformers.modeling_outputs import BaseModelOutputWithPooling

from streamwatch.learning.finetune.objective import answer_suffix, encode
from streamwatch.tools.demo.answers import PoolBatches, Prompts, check_cached_tokens
from streamwatch.tools.demo.build import DEMO_SIZE
from streamwatch.tools.demo.dataset import answer_text, demo_tasks, examples, render_question
from streamwatch.tools.demo.pool import OBJECT_DOMAINS, OBJECTS, ScenePool, build_pool, draw_scenes
from streamwatch.tools.demo.vision import (
    VisionSettings,
    detection_accuracy,
    image_tokens,
    object_weights,
    reinit_vision,
    token_features,
    train_vision,
)
from streamwatch.tools.tiny import build_glm4v
from streamwatch.vlm.processor import load_processor
from streamwatch.vlm.prompts import prompt_style

RULES = REPO / "rules"


def fresh(folder: Path, seed: int = 0) -> tuple[Any, Any]:
    rng = np.random.default_rng(0)
    torch.manual_seed(seed)
    model = build_glm4v(folder, DEMO_SIZE, corpus=[render_question(t.rule, rng) for t in demo_tasks(RULES)])
    return model, load_processor(str(folder))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, ScenePool]:
    model, processor = fresh(tmp_path_factory.mktemp("demo"))
    return model, processor, ScenePool.encode(processor, draw_scenes(demo_tasks(RULES), 48, seed=5))


def test_object_weights_favour_rare_objects() -> None:
    labels = torch.zeros(10, 6, len(OBJECTS))
    labels[:, :, 0] = 1  # everywhere: no weight up
    labels[0, 0, 1] = 1  # one token in 60
    weights = object_weights(labels, 0.5)
    assert weights[0] == 1  # everywhere: no weight up
    assert torch.isclose(weights[1], torch.tensor(59.0).sqrt())


def test_reinit_gives_unit_scale_weights(built: tuple[Any, Any, ScenePool]) -> None:
    visual = built[0].model.visual
    reinit_vision(visual, seed=1)
    weight = visual.patch_embed.proj.weight.detach()
    assert abs(float(weight.std()) * weight[0].numel() ** 0.5 - 1) < 0.05
    assert float(image_tokens(visual, built[2], torch.tensor([0])).norm(dim=-1).mean()) > 1


def test_detection_accuracy_counts_each_object_on_its_own_domain(built: tuple[Any, Any, ScenePool]) -> None:
    pool = built[2]
    head = torch.nn.Linear(len(OBJECTS), len(OBJECTS))
    with torch.no_grad():
        head.weight.copy_(torch.eye(len(OBJECTS)))
        head.bias.zero_()
    exact = pool.labels * 10 - 5  # features that say exactly where each object is
    accuracy = detection_accuracy(head, exact, pool)
    domains = {task.domain.name for task, _, _ in pool.scenes}
    assert set(accuracy) == {name for name in OBJECTS if OBJECT_DOMAINS[name] in domains}
    assert all(v == 1.0 for v in accuracy.values())
    blind = torch.full_like(exact, -5.0)  # sees nothing: right only where the object is absent
    for name, value in detection_accuracy(head, blind, pool).items():
        i = OBJECTS.index(name)
        rows = [k for k, (task, _, _) in enumerate(pool.scenes) if task.domain.name == OBJECT_DOMAINS[name]]
        assert value == pytest.approx(float((pool.labels[rows, :, i].amax(1) == 0).float().mean()))


@pytest.mark.slow
def test_stage_one_is_seeded_and_learns(tmp_path: Path, built: tuple[Any, Any, ScenePool]) -> None:
    pool = built[2]
    settings = VisionSettings(steps=30, batch=8, warmup=5, log_every=10, seed=3)
    runs = []
    for name in ("a", "b"):
        model, _ = fresh(tmp_path / name)
        head, history = train_vision(model.model.visual, pool, settings)
        runs.append((model.model.visual, head, history))
    (a, head, history), (b, _, history_b) = runs
    assert history == history_b
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert history[-1][1] < 0.8 * history[0][1]
    features = token_features(a, pool)
    assert features.shape == (len(pool), pool.tokens, DEMO_SIZE.text_hidden)
    assert not a.training


def test_cached_prompts_batch_as_the_processor_does(built: tuple[Any, Any, ScenePool]) -> None:
    _, processor, pool = built
    batch = [next(examples(demo_tasks(RULES), seed=s)) for s in range(5)]
    style = prompt_style(processor)
    expected = encode(processor, style, answer_suffix(style, processor.tokenizer), batch, 640)
    prompts = Prompts(processor, pool.grid_thw)
    mine = prompts.batch([(ex.question, ex.answer) for ex in batch])
    for key in ("input_ids", "attention_mask", "mm_token_type_ids", "image_grid_thw", "target_mask"):
        assert torch.equal(mine[key], expected[key]), key
    assert len(prompts.cache) == 5
    with pytest.raises(ValueError, match="grid"):
        Prompts(processor, torch.tensor([1, 8, 8])).encode("Is it?", "yes")


def test_cached_image_tokens_are_what_the_model_computes(built: tuple[Any, Any, ScenePool]) -> None:
    model, processor, pool = built
    index = torch.tensor([3, 7])
    inputs = Prompts(processor, pool.grid_thw).batch([("Is anyone there?", "yes"), ("Is the shelf full?", "no")])
    del inputs["target_mask"]
    with torch.no_grad():
        direct = model(**inputs, pixel_values=pool.pixel_values(index)).logits
        features = token_features(model.model.visual, pool)[index]
        cached = model(
            **inputs, mm_encoder_outputs={"image": BaseModelOutputWithPooling(pooler_output=tuple(features))}
        ).logits
    assert torch.allclose(direct, cached, atol=1e-4)


def test_a_transformers_that_would_drop_cached_tokens_is_refused(built: tuple[Any, Any, ScenePool]) -> None:
    check_cached_tokens(built[0])  # the installed one takes them

    class Older(torch.nn.Module):  # a forward without mm_encoder_outputs, as in transformers 5.17
        def forward(self, input_ids: Any = None, pixel_values: Any = None, **kwargs: Any) -> None: ...

    older = torch.nn.Module()
    older.model = Older()
    with pytest.raises(RuntimeError, match="mm_encoder_outputs"):
        check_cached_tokens(older)


def test_pool_batches_ask_each_scene_what_its_truth_answers(built: tuple[Any, Any, ScenePool]) -> None:
    _, processor, pool = built
    tasks = demo_tasks(RULES)
    features = torch.arange(len(pool), dtype=torch.float32).view(-1, 1, 1).expand(-1, pool.tokens, 4)
    prompts = Prompts(processor, pool.grid_thw)
    copied = pickle.loads(pickle.dumps(pool))  # as the pool's worker processes hand it over
    drawn = PoolBatches(copied, features, tasks, prompts, batch=400, seed=1).draw()
    for task, answer, scene in drawn:
        scene_task, _, truth = pool.scenes[scene]
        assert scene_task.domain is task.domain and answer == answer_text(truth[task.rule.id])
    asked = {(task.rule.id, answer) for task, answer, _ in drawn}
    for task in tasks:  # every answer the pool holds for a rule is asked
        held = {answer_text(truth[task.rule.id]) for t, _, truth in pool.scenes if t.domain is task.domain}
        assert {a for rule, a in asked if rule == task.rule.id} == held, task.rule.id
    varying = sum(task.varies for task, _, _ in drawn) / len(drawn)
    assert varying > sum(t.varies for t in tasks) / len(tasks)  # rules whose answer varies come more often
    # next() encodes the same draw: each row's image tokens are its scene's, its target the scene's answer
    inputs = PoolBatches(pool, features, tasks, prompts, batch=8, seed=4).next()
    expected = PoolBatches(pool, features, tasks, prompts, batch=8, seed=4).draw()
    mask = inputs["target_mask"]
    tail = inputs["input_ids"][:, -mask.shape[1] :]
    for row, (tokens, (_, answer, scene)) in enumerate(
        zip(inputs["mm_encoder_outputs"]["image"].pooler_output, expected, strict=True)
    ):
        assert int(tokens[0, 0]) == scene
        assert (
            processor.tokenizer.decode(tail[row][mask[row]]) == f"<|begin_of_box|>{answer}<|end_of_box|><|endoftext|>"
        )
    empty = ScenePool(pool.patches[:0], pool.labels[:0], pool.grid_thw, pool.temporal, [])
    with pytest.raises(ValueError, match="no scene"):
        PoolBatches(empty, features, tasks, prompts, batch=4, seed=0)


@pytest.mark.slow
def test_the_pool_is_the_same_whatever_the_number_of_workers(built: tuple[Any, Any, ScenePool], tmp_path: Path) -> None:
    folder = tmp_path / "model"
    fresh(folder)
    one = build_pool(str(folder), RULES, 10, seed=2, workers=1, chunk=4)
    two = build_pool(str(folder), RULES, 10, seed=2, workers=2, chunk=4)
    assert len(one) == 10 and torch.equal(one.patches, two.patches) and torch.equal(one.labels, two.labels)
    assert [(t.rule.id, a) for t, a, _ in one.scenes] == [(t.rule.id, a) for t, a, _ in two.scenes]
