"""A faster, equivalent GLM-4V vision tower for training on still frames on a CPU.

Three parts of the tower are general where training on a pool of same-sized still frames needs them
not to be, and on a CPU they are half of a training step:

- the patch embedding is a Conv3d whose kernel equals its stride (a matrix product per patch) and the
  processor repeats a still image in time, so one frame times the kernel summed over time gives the
  same result from half the input;
- the 2x2 token merge is a Conv2d whose kernel equals its stride (again a matrix product);
- the learnt position table is resampled (bicubic) for every patch of every image on every step,
  although it is a fixed linear map of the table for a given image grid.

`still_frames(visual)` swaps in those matrix products for as long as it is open. The parameters are the
tower's own, so what is trained is saved and served by the unchanged transformers code.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn
from torch.nn import functional


@contextmanager
def still_frames(visual: nn.Module) -> Iterator[None]:
    """Inside: `visual(pixels, grid_thw)` takes the processor's patches (frame repeated in time) or one
    frame per patch (`ScenePool.frames`), and computes what the tower computes, faster. Opened again
    inside itself it changes nothing (the outer one, and its cache of position maps, stays)."""
    tower: Any = visual
    parts = (tower.patch_embed, tower.downsample, tower.embeddings)
    if "forward" in vars(tower.patch_embed):  # already open
        yield
        return
    patch, merge, embeddings = parts
    conv3d: nn.Conv3d = patch.proj
    conv2d: nn.Conv2d = merge
    table_forward = type(embeddings).forward
    grids: dict[tuple[int, ...], torch.Tensor] = {}

    def embed_patches(pixels: torch.Tensor) -> torch.Tensor:
        weight = conv3d.weight
        if pixels.shape[-1] * weight.shape[2] == weight[0].numel():  # one frame per patch
            weight = weight.sum(dim=2)
        return functional.linear(pixels.to(weight.dtype), weight.reshape(weight.shape[0], -1), conv3d.bias)

    def merge_tokens(blocks: torch.Tensor) -> torch.Tensor:  # (tokens, hidden, 2, 2) -> (tokens, out)
        weight = conv2d.weight
        return functional.linear(blocks.reshape(blocks.shape[0], -1), weight.reshape(weight.shape[0], -1), conv2d.bias)

    def add_positions(hidden: torch.Tensor, *where: torch.Tensor) -> torch.Tensor:
        table = embeddings.position_embedding.weight
        lengths, shapes = (torch.as_tensor(t) for t in where[:2])  # the coordinates follow from these
        key = tuple(lengths.tolist()) + tuple(shapes.reshape(-1).tolist())
        if key not in grids:  # the resampling of each table row, found by resampling the identity
            basis = SimpleNamespace(**vars(embeddings))  # the module's settings, with the identity as table
            basis.position_embedding = SimpleNamespace(weight=torch.eye(table.shape[0]))
            zeros = torch.zeros(hidden.shape[0], table.shape[0])
            grids[key] = table_forward(basis, zeros, *(torch.as_tensor(t).cpu() for t in where)).to(table.device)
        placed: torch.Tensor = hidden + (grids[key] @ table.float()).to(hidden.dtype)
        return placed

    patch.forward, merge.forward, embeddings.forward = embed_patches, merge_tokens, add_positions
    try:
        yield
    finally:
        for part in parts:
            del part.forward  # back to the class's own
