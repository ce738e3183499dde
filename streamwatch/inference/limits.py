"""How long a question may be: in characters always, in tokens where the model's tokenizer is at hand.

One bound for every way a question reaches the model: rule questions and `describe` follow-ups (in
`streamwatch check`, at start and on every hot reload), web/API questions and `streamwatch serve`
requests. A question past the bound is refused where it enters, with the reason; it never reaches the
model (an unbounded prompt once froze inference for every camera).

The token bound is `model.max_question_tokens`, lowered where the model's context is smaller than an
image at `model.max_image_side`, the question, the chat template and the answer together.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streamwatch.vlm.prompts import answer_prefix

log = logging.getLogger(__name__)

TEMPLATE_TOKENS = 64  # chat header, image markers, assistant turn, answer prefix: generous for every family


@dataclass(frozen=True)
class PromptLimits:
    """`problem(text)` says why a question is refused, or None when it may go to the model;
    `answer_problem` whether a choice fits the tokens a rule lets the model generate."""

    max_chars: int
    max_tokens: int | None = None  # None: not counted (no tokenizer here: remote models, hub ids not cached)
    count_tokens: Callable[[str], int] | None = None
    model: str = ""
    count_answer: Callable[[str], int] | None = None  # tokens the model generates to say this answer
    max_new_tokens: int = 16  # model.max_new_tokens: a rule's budget unless it sets its own
    context: int | None = None  # the model's context in tokens, where known
    image_tokens: int | None = None  # tokens of one image at model.max_image_side, where known

    def _room(self, images: int) -> int | None:
        """Tokens left for a question beside `images` images, the template and the answer."""
        if self.context is None or self.image_tokens is None:
            return None
        return self.context - images * self.image_tokens - TEMPLATE_TOKENS - self.max_new_tokens

    def images_problem(self, images: int) -> str | None:
        """Why `images` images (a question over several frames) cannot fit the model's context, or None."""
        room = self._room(images)
        if room is None or room > 0:
            return None
        return (
            f"{images} images of up to {self.image_tokens} tokens each (at model.max_image_side) do not fit the "
            f"context of {self.model} ({self.context} tokens); ask over fewer frames or lower model.max_image_side"
        )

    def answer_problem(self, answer: str, budget: int | None) -> str | None:
        if self.count_answer is None:
            return None
        tokens, allowed = self.count_answer(answer), budget or self.max_new_tokens
        if tokens <= allowed:
            return None
        return (
            f"the answer {answer!r} takes {tokens} tokens of {self.model} (with its answer wrapper) but "
            f"max_new_tokens is {allowed}: it would be cut off"
        )

    def problem(self, text: str, images: int = 1) -> str | None:
        """Why a question about `images` images is refused, or None."""
        if not text.strip():
            return "the question is empty"
        if len(text) > self.max_chars:
            return f"the question is {len(text)} characters long; at most {self.max_chars} (model.max_question_chars)"
        if self.count_tokens is not None and self.max_tokens is not None:
            room = self._room(images) if images > 1 else None
            allowed = self.max_tokens if room is None else max(0, min(self.max_tokens, room))
            tokens = self.count_tokens(text)
            if tokens > allowed:
                beside = f" beside {images} images" if images > 1 else ""
                return (
                    f"the question is {tokens} tokens long; at most {allowed} for {self.model}{beside} "
                    "(model.max_question_tokens, within the model's context)"
                )
        return None


def context_tokens(config: Any) -> int | None:
    """The model's context length from its config (text config of a multimodal model), if it says."""
    for part in (getattr(config, "text_config", None), config):
        length = getattr(part, "max_position_embeddings", None) if part is not None else None
        if isinstance(length, int) and length > 0:
            return length
    return None


def image_tokens(config: Any, side: int) -> int:
    """An upper bound on the tokens of one frame at `side` x `side` pixels (patches merged 2x2 by the
    GLM-4V / Qwen2-VL family; 14-pixel patches unless the vision config says otherwise)."""
    vision = getattr(config, "vision_config", None)
    patch = int(getattr(vision, "patch_size", 14) or 14)
    merge = int(getattr(vision, "spatial_merge_size", 2) or 2)
    cells = -(-side // (patch * merge))
    return cells * cells


def token_limits(
    tokenizer: Any,
    config: Any,
    *,
    model: str,
    max_chars: int,
    max_tokens: int,
    max_image_side: int,
    max_new_tokens: int,
) -> PromptLimits:
    """Limits counting with the model's own tokenizer, within its context."""
    budget = max_tokens
    context, per_image = context_tokens(config), image_tokens(config, max_image_side)
    if context is not None:
        room = context - per_image - TEMPLATE_TOKENS - max_new_tokens
        budget = max(0, min(budget, room))

    prefix = answer_prefix(tokenizer.get_vocab())

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False))

    return PromptLimits(
        max_chars, budget, count, model, lambda answer: count(prefix + answer), max_new_tokens, context, per_image
    )


def offline_limits(
    model_ref: str, *, max_chars: int, max_tokens: int, max_image_side: int, max_new_tokens: int
) -> tuple[PromptLimits, str | None]:
    """The limits `streamwatch check` applies before any model is loaded: the checkpoint's tokenizer and
    config read from disk (a local directory or the hub cache, never the network); characters only when
    they are not there, with a note saying so."""
    try:
        from transformers import AutoConfig, AutoTokenizer

        config = AutoConfig.from_pretrained(model_ref, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(model_ref, local_files_only=True)
    except Exception as exc:  # not downloaded yet, not a checkpoint, no transformers: characters only
        log.debug("no tokenizer for %s offline: %s", model_ref, exc)
        note = f"question lengths checked in characters only: the tokenizer of {model_ref} is not available offline"
        return PromptLimits(max_chars, max_new_tokens=max_new_tokens), note
    limits = token_limits(
        tokenizer,
        config,
        model=model_ref,
        max_chars=max_chars,
        max_tokens=max_tokens,
        max_image_side=max_image_side,
        max_new_tokens=max_new_tokens,
    )
    return limits, None
