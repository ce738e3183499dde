"""Stage 2 of train-demo: teach the language model to answer the rules from the trained tower's tokens.

The vision tower is frozen after stage 1, so each pool scene's image tokens are computed once and fed
to the model through transformers' `mm_encoder_outputs` (what the model would compute from the
pixels), and each prompt is tokenised once: a step costs only the language model. A scene answers every
rule of its domain (its truth holds them all), so one pool serves all the rules.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import transformers
from PIL import Image
from transformers.modeling_outputs import BaseModelOutputWithPooling

from streamwatch.ingest.preprocess import fit_longest_side
from streamwatch.learning.finetune.objective import answer_suffix, answer_target, target_mask
from streamwatch.tools.demo.dataset import Task, answer_text, render_question
from streamwatch.tools.demo.draw import HEIGHT, WIDTH
from streamwatch.tools.demo.pool import ScenePool
from streamwatch.vlm.prompts import prompt_style


def check_cached_tokens(model: Any) -> None:
    """Stage 2 feeds image tokens through `mm_encoder_outputs`. A transformers without that argument
    takes it silently into **kwargs and the language model would learn blind: refuse instead."""
    if "mm_encoder_outputs" not in inspect.signature(model.model.forward).parameters:
        raise RuntimeError(
            f"transformers {transformers.__version__} cannot take precomputed image tokens "
            "(mm_encoder_outputs); train-demo needs a newer one (5.23 is tested)"
        )


class Prompts:
    """Prompt + answer texts tokenised as the processor does for a frame of the pool's size, each text once."""

    def __init__(self, processor: Any, grid_thw: torch.Tensor, max_image_side: int = 640) -> None:
        self.processor = processor
        self.style = prompt_style(processor)
        self.suffix = answer_suffix(self.style, processor.tokenizer)
        self.frame = fit_longest_side(Image.new("RGB", (WIDTH, HEIGHT)), max_image_side)
        self.grid_thw = grid_thw
        self.cache: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor, int]] = {}

    def encode(self, question: str, answer: str) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(input ids, multimodal token types, number of target tokens at the end)."""
        key = (question, answer)
        if key not in self.cache:
            target = answer_target(self.style, self.suffix, answer)
            text = self.style.render(self.processor, question) + target
            out = self.processor(images=[self.frame], text=[text], return_tensors="pt")
            if not torch.equal(out["image_grid_thw"][0], self.grid_thw):
                raise ValueError(
                    f"frames encode to a {out['image_grid_thw'][0].tolist()} grid, the pool's to "
                    f"{self.grid_thw.tolist()}"
                )
            length = len(self.processor.tokenizer(target, add_special_tokens=False)["input_ids"])
            self.cache[key] = (out["input_ids"][0], out["mm_token_type_ids"][0], length)
        return self.cache[key]

    def batch(self, items: Sequence[tuple[str, str]]) -> dict[str, Any]:
        """Left-padded model inputs for (question, answer) pairs, with `target_mask` (as `train.encode`)."""
        encoded = [self.encode(q, a) for q, a in items]
        width = max(len(ids) for ids, _, _ in encoded)
        pad = int(self.processor.tokenizer.pad_token_id)
        ids = torch.full((len(items), width), pad, dtype=torch.long)
        types = torch.zeros((len(items), width), dtype=encoded[0][1].dtype)
        attention = torch.zeros((len(items), width), dtype=torch.long)
        for row, (row_ids, row_types, _) in enumerate(encoded):
            ids[row, width - len(row_ids) :] = row_ids
            types[row, width - len(row_ids) :] = row_types
            attention[row, width - len(row_ids) :] = 1
        return {
            "input_ids": ids,
            "attention_mask": attention,
            "mm_token_type_ids": types,
            "image_grid_thw": self.grid_thw.unsqueeze(0).repeat(len(items), 1),
            "target_mask": target_mask([length for _, _, length in encoded]),
        }


class PoolBatches:
    """Endless seeded batches over the pool: a rule (rules whose answer varies more often), one of the
    answers the pool has for it (evenly), a scene with that answer, a question from the rule's template."""

    def __init__(
        self,
        pool: ScenePool,
        features: torch.Tensor,
        tasks: Sequence[Task],
        prompts: Prompts,
        *,
        batch: int,
        seed: int,
        constant_weight: float = 0.25,
    ) -> None:
        self.features, self.prompts, self.size = features, prompts, batch
        self.rng = np.random.default_rng(seed)
        self.scenes: list[tuple[Task, list[tuple[str, np.ndarray]]]] = []  # per rule: (answer, its scenes)
        for task in tasks:
            domain = [i for i, (drawn, _, _) in enumerate(pool.scenes) if drawn.domain.name == task.domain.name]
            by_answer: dict[str, list[int]] = {}
            for i in domain:
                by_answer.setdefault(answer_text(pool.scenes[i][2][task.rule.id]), []).append(i)
            if by_answer:
                self.scenes.append((task, [(answer, np.array(v)) for answer, v in sorted(by_answer.items())]))
        if not self.scenes:
            raise ValueError("the pool has no scene for these rules")
        weights = np.array([1.0 if len(groups) > 1 else constant_weight for _, groups in self.scenes])
        self.weights = weights / weights.sum()

    def draw(self) -> list[tuple[Task, str, int]]:
        """One batch's (rule, answer, scene index)."""
        drawn = []
        for _ in range(self.size):
            task, groups = self.scenes[int(self.rng.choice(len(self.scenes), p=self.weights))]
            answer, group = groups[int(self.rng.integers(len(groups)))]
            drawn.append((task, answer, int(group[int(self.rng.integers(len(group)))])))
        return drawn

    def next(self) -> dict[str, Any]:
        drawn = self.draw()
        inputs = self.prompts.batch([(render_question(task.rule, self.rng), answer) for task, answer, _ in drawn])
        features = self.features[torch.tensor([scene for _, _, scene in drawn])]
        inputs = {k: v.to(features.device) for k, v in inputs.items()}  # where the model is
        inputs["mm_encoder_outputs"] = {"image": BaseModelOutputWithPooling(pooler_output=tuple(features))}
        return inputs
