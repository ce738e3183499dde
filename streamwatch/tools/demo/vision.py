"""Stage 1 of train-demo: teach the vision tower to see the scenes' objects.

A from-scratch ViT given only "yes"/"no" at the end of a language model learns nothing small on a CPU
budget: the answer loss is one bit per picture and reaches the pixels through the whole language
model. Here the tower (with its projector) gets a dense target instead: a linear head on each image
token predicts which kinds of object cover it (the pool's token labels, from the generator), with
each kind's positives weighted up by how rare they are. The head is thrown away afterwards; the tower's
token features, now linearly telling where each object is, are what the language model reads.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from streamwatch.learning.finetune.objective import optimise
from streamwatch.tools.demo.pool import OBJECT_DOMAINS, OBJECTS, ScenePool
from streamwatch.tools.demo.tower import still_frames


@dataclass(frozen=True)
class VisionSettings:
    steps: int = 6000
    batch: int = 16
    lr: float = 1e-3
    warmup: int = 200
    weight_decay: float = 0.01
    balance: float = 0.25  # positives of each kind weighted by (negatives / positives) ** balance
    seed: int = 0
    log_every: int = 50


def reinit_vision(visual: nn.Module, seed: int) -> None:
    """Every linear and convolution weight of the tower at std 1/sqrt(fan-in), biases at 0. (At
    transformers' std 0.02 the projector's output is ~100x smaller than the text embeddings.)"""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in visual.modules():
            if isinstance(module, nn.Linear | nn.Conv2d | nn.Conv3d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) / math.sqrt(fan_in))
                if module.bias is not None:
                    module.bias.zero_()


def image_tokens(visual: nn.Module, pool: ScenePool, index: torch.Tensor) -> torch.Tensor:
    """(len(index), tokens, hidden): the tower's output for those scenes, what the language model reads
    (computed from one frame per patch by the equivalent `still_frames` tower)."""
    device = next(visual.parameters()).device
    with still_frames(visual):
        out = visual(pool.frames(index).to(device), grid_thw=pool.image_grid_thw(len(index)).to(device))
    tokens: torch.Tensor = out.pooler_output
    return tokens.view(len(index), pool.tokens, -1)


def object_weights(labels: torch.Tensor, balance: float) -> torch.Tensor:
    """Per kind of object: (negative tokens / positive tokens) ** balance, at least 1."""
    flat = labels.reshape(-1, labels.shape[-1])
    positive = flat.sum(0).clamp(min=1)
    return ((flat.shape[0] - positive) / positive).pow(balance).clamp(min=1)


def train_vision(
    visual: nn.Module,
    pool: ScenePool,
    settings: VisionSettings,
    progress: Callable[[int, float, float], None] | None = None,
) -> tuple[nn.Linear, list[tuple[int, float]]]:
    """Train `visual` in place on the pool's token labels; returns the object head and (step, mean loss)
    every `log_every` steps. `progress(step, loss, seconds)`."""
    torch.manual_seed(settings.seed)
    reinit_vision(visual, settings.seed)
    device = next(visual.parameters()).device
    config: Any = visual.config
    head = nn.Linear(int(config.out_hidden_size), len(OBJECTS)).to(device)  # the projector's output width
    weights = object_weights(pool.labels, settings.balance).to(device)
    parameters = [*visual.parameters(), *head.parameters()]
    for p in parameters:
        p.requires_grad_(True)
    order = torch.Generator().manual_seed(settings.seed)
    permutation = torch.randperm(len(pool), generator=order)

    def step_loss() -> torch.Tensor:
        nonlocal permutation
        if len(permutation) < settings.batch:
            permutation = torch.randperm(len(pool), generator=order)
        index, permutation = permutation[: settings.batch], permutation[settings.batch :]
        logits = head(image_tokens(visual, pool, index))
        return nn.functional.binary_cross_entropy_with_logits(logits, pool.labels[index].to(device), pos_weight=weights)

    visual.train()
    try:
        with still_frames(visual):  # open for every step: its position maps are computed once
            history = optimise(
                [{"params": parameters, "weight_decay": settings.weight_decay}], settings, step_loss, progress
            )
    finally:
        visual.eval()
    return head, history


@torch.no_grad()
def token_features(visual: nn.Module, pool: ScenePool, batch: int = 64) -> torch.Tensor:
    """(scenes, tokens, hidden) float32: the trained tower's output for every scene of the pool."""
    with still_frames(visual):
        return torch.cat(
            [
                image_tokens(visual, pool, torch.arange(start, min(start + batch, len(pool))))
                for start in range(0, len(pool), batch)
            ]
        )


@torch.no_grad()
def detection_accuracy(head: nn.Linear, features: torch.Tensor, pool: ScenePool) -> dict[str, float]:
    """Per kind of object, on the scenes of its domain: how often "some token's probability ≥ 0.5"
    agrees with "the object is in the picture"."""
    strongest = torch.sigmoid(head(features.to(head.weight.device))).amax(dim=1).cpu()  # (scenes, objects)
    present = pool.labels.amax(dim=1) > 0
    domains = [task.domain.name for task, _, _ in pool.scenes]
    accuracy = {}
    for i, name in enumerate(OBJECTS):
        rows = torch.tensor([d == OBJECT_DOMAINS[name] for d in domains])
        if rows.any():
            accuracy[name] = float(((strongest[rows, i] >= 0.5) == present[rows, i]).float().mean())
    return accuracy
