"""Several yes/no questions about one image for little more than the price of one.

The prompt of every question about an image starts with the same tokens: the chat header and the
image (hundreds to thousands of tokens). That prefix is run once per image, batched across images;
its key/value cache is then repeated for each question, and only the short suffixes (question,
assistant header, answer prefix) run per question. Positions continue exactly where the prefix
ended (multimodal RoPE included), so the answers equal those of the plain path (tested).
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from streamwatch.inference.backends.positions import rope_deltas
from streamwatch.inference.types import Prompt

IMAGE_END_TOKENS = ("<|end_of_image|>", "<|vision_end|>")  # GLM-4V; Qwen2-VL / Qwen2.5-VL / Qwen3-VL


@dataclass(frozen=True)
class Split:
    """A rendered prompt cut after its image: the shared prefix and the per-question suffix."""

    prefix: str
    suffix: str


def split_prompt(text: str) -> Split | None:
    """None when the prompt has no image-end marker or nothing follows it."""
    for marker in IMAGE_END_TOKENS:
        at = text.rfind(marker)
        if at >= 0:
            cut = at + len(marker)
            return Split(text[:cut], text[cut:]) if text[cut:] else None
    return None


def group_by_image(prompts: Sequence[Prompt]) -> list[list[int]]:
    """Indices of prompts sharing the same image objects (all of them, in order, for prompts over several
    frames), in order of first appearance."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, prompt in enumerate(prompts):
        groups.setdefault(tuple(id(image) for image in prompt.images), []).append(index)
    return list(groups.values())


class ImageModel(Protocol):
    """What the shared pass needs of a backend (TransformersBackend is one)."""

    model: Any  # an image-text-to-text model of transformers
    processor: Any  # its processor (for the tokenizer)
    device: torch.device
    model_lock: threading.Lock  # one batch on the model at a time

    def encode(
        self, images: Sequence[Any], texts: Sequence[str], processor: Any = None, *, positions: bool = False
    ) -> Any: ...


@torch.inference_mode()
def last_token_logits(backend: ImageModel, prompts: Sequence[Prompt], texts: Sequence[str]) -> torch.Tensor | None:
    """Logits at the answer position of every prompt (rows in `prompts` order), computed with one prefix
    pass per distinct image; None when the prompts cannot be split (the caller uses the plain path)."""
    splits = [split_prompt(text) for text in texts]
    if any(s is None for s in splits):
        return None
    groups = group_by_image(prompts)
    prefixes = [splits[group[0]].prefix for group in groups]  # type: ignore[union-attr]
    if any(splits[i].prefix != prefixes[g] for g, group in enumerate(groups) for i in group):  # type: ignore[union-attr]
        return None
    model, device = backend.model, backend.device
    images = [image for group in groups for image in prompts[group[0]].images]
    prefix_inputs = backend.encode(images, prefixes, positions=True)
    suffix = _right_padded(backend.processor.tokenizer, [s.suffix for s in splits], device)  # type: ignore[union-attr]
    with backend.model_lock:  # everything above is CPU work that may overlap another batch's GPU work
        return _forward(model, prompts, groups, prefix_inputs, suffix)


_CACHE_ARGUMENT: dict[type, str] = {}


def _cache_argument(model: Any) -> str:
    """The name the model's forward takes its KV cache under: `cache` from transformers 5.2x on
    (`past_key_values` still works there, with a warning until it is removed in 5.40), else
    `past_key_values`. Read once per model class."""
    kind = type(model)
    if kind not in _CACHE_ARGUMENT:
        parameters = inspect.signature(model.forward).parameters
        _CACHE_ARGUMENT[kind] = "cache" if "cache" in parameters else "past_key_values"
    return _CACHE_ARGUMENT[kind]


def _output_cache(output: Any) -> Any:
    """The KV cache a forward pass returned, under either name."""
    return output["cache"] if "cache" in output else output["past_key_values"]


def _right_padded(tokenizer: Any, texts: list[str], device: torch.device) -> dict[str, torch.Tensor]:
    """Suffix ids padded on the right, so their positions continue right after the prefix. (Padded by
    hand: the shared tokenizer's padding side must not change under another thread.)"""
    encoded = [tokenizer.encode(text, add_special_tokens=False) for text in texts]
    width = max(len(ids) for ids in encoded)
    pad = tokenizer.pad_token_id
    ids = torch.tensor([row + [pad] * (width - len(row)) for row in encoded], dtype=torch.long)
    mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in encoded], dtype=torch.long)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}


def _forward(
    model: Any, prompts: Sequence[Prompt], groups: list[list[int]], prefix_inputs: Any, suffix: Any
) -> torch.Tensor:
    device = prefix_inputs["input_ids"].device
    inner = model.model
    inner.rope_deltas = None
    prefix_out = inner(**prefix_inputs, use_cache=True)
    # (images, 1): how far multimodal positions run ahead of token counts
    if "position_ids" in prefix_inputs:
        deltas = rope_deltas(prefix_inputs["position_ids"], prefix_inputs["attention_mask"])
    else:
        deltas = inner.rope_deltas
    cache = _output_cache(prefix_out)

    owner = torch.empty(len(prompts), dtype=torch.long)
    for g, group in enumerate(groups):
        owner[group] = g
    owner = owner.to(device)
    cache.batch_select_indices(owner)  # one cache row per question, copied from its image's row
    prefix_mask = prefix_inputs["attention_mask"][owner]
    suffix_mask = suffix["attention_mask"]
    start = prefix_mask.sum(dim=1, keepdim=True) + (deltas[owner] if deltas is not None else 0)
    positions = start + torch.arange(suffix_mask.shape[1], device=device)[None, :]
    positions = positions[None].expand(3, -1, -1)  # text tokens: the same position on all three axes
    hidden = inner(
        input_ids=suffix["input_ids"],
        attention_mask=torch.cat([prefix_mask, suffix_mask], dim=1),
        position_ids=positions,
        use_cache=True,
        **{_cache_argument(inner): cache},
    ).last_hidden_state
    last = suffix_mask.sum(dim=1) - 1
    rows = torch.arange(len(prompts), device=device)
    logits: torch.Tensor = model.lm_head(hidden[rows, last])
    inner.rope_deltas = None
    return logits
