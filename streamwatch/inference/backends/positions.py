"""Multimodal RoPE positions computed with the CPU inputs, before the model runs.

GLM-4V and Qwen2-VL compute their 3-D position ids inside `forward` with a Python loop per row
(`get_rope_index`) that reads the token types back from the GPU: the GPU waits while the CPU loops,
and it does so inside the model lock. Computed here, on the CPU tensors the processor just made, the
same function runs while the other queue worker's batch keeps the GPU busy; the model then takes the
`position_ids` as given and skips its own computation.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch

_INPUTS = ("mm_token_type_ids", "image_grid_thw", "video_grid_thw", "attention_mask")


@functools.cache
def _parameters(function: Any) -> frozenset[str]:
    """The argument names of a model's `get_rope_index` (they differ between transformers versions);
    read once per model class, not on every batch."""
    return frozenset(inspect.signature(function).parameters)


def add_positions(model: Any, inputs: Any) -> bool:
    """Put the model's own `position_ids` for `inputs` (CPU tensors) into `inputs`; False (and nothing
    added) for a model without multimodal RoPE or inputs without images."""
    rope_index = getattr(getattr(model, "model", None), "get_rope_index", None)
    if rope_index is None or "image_grid_thw" not in inputs or inputs["input_ids"].device.type != "cpu":
        return False
    accepted = _parameters(getattr(rope_index, "__func__", rope_index))
    if "mm_token_type_ids" in accepted and "mm_token_type_ids" not in inputs:
        return False
    kwargs = {name: inputs[name] for name in _INPUTS if name in accepted and name in inputs}
    with torch.inference_mode():
        position_ids, _ = rope_index(inputs["input_ids"], **kwargs)
    inputs["position_ids"] = position_ids
    return True


def rope_deltas(position_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(rows, 1): how far each row's multimodal positions run ahead of its token count, i.e. where
    text after the row continues (what the model stores as `rope_deltas` when it computes them)."""
    return (position_ids.amax(dim=(0, 2)) + 1 - attention_mask.sum(dim=1))[:, None]
