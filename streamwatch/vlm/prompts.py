"""Per-family prompting: chat template options, yes/no answer tokens, and answer clean-up."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

# Text the model may wrap answers in: GLM-4.5V/4.6V put the final answer in a box, thinking models
# emit a (possibly empty) think block, and chat models may echo an end-of-turn token.
_THINK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL)
_WRAPPERS = re.compile(
    r"<\|begin_of_box\|>|<\|end_of_box\|>|<\|im_end\|>|<\|endoftext\|>|<\|user\|>|<\|assistant\|>"
    r"|<\|observation\|>|<end_of_utterance>|</s>|<eos>"
)

YES_VARIANTS = ("Yes", "yes", " Yes", " yes", "YES", " YES")
NO_VARIANTS = ("No", "no", " No", " no", "NO", " NO")


def clean_answer(text: str) -> str:
    """Strip template wrappers, think blocks and surrounding whitespace from a generated answer."""
    text = _THINK.sub("", text)
    text = _WRAPPERS.sub("", text)
    return text.strip()


@dataclass(frozen=True)
class PromptStyle:
    """How to ask one model family a question about one image, or several."""

    template_kwargs: dict[str, Any]
    answer_prefix: str  # appended after the generation prompt when scoring yes/no in one pass

    def render(self, processor: Any, question: str, images: int = 1) -> str:
        """The chat template around `images` images (oldest first) and the question."""
        content: list[dict[str, Any]] = [{"type": "image"} for _ in range(images)]
        messages = [{"role": "user", "content": [*content, {"type": "text", "text": question}]}]
        text: str = processor.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, **self.template_kwargs
        )
        return text


def prompt_style(processor: Any) -> PromptStyle:
    """Derive the prompt style from the checkpoint's own chat template and vocabulary."""
    template = processor.chat_template
    if not isinstance(template, str) or not template:
        raise ValueError("the checkpoint has no chat template; streamwatch needs a chat (instruct) model")
    kwargs: dict[str, Any] = {}
    if "enable_thinking" in template:
        kwargs["enable_thinking"] = False  # GLM-4.5V/4.6V, Qwen3-VL: answer directly, no reasoning
    return PromptStyle(template_kwargs=kwargs, answer_prefix=answer_prefix(processor.tokenizer.get_vocab()))


def answer_prefix(vocab: Collection[str]) -> str:
    """What opens an answer: GLM-4.5V/4.6V put it in a box; other families answer plainly."""
    return "<|begin_of_box|>" if "<|begin_of_box|>" in vocab else ""


def single_token_ids(tokenizer: Any, variants: Sequence[str]) -> list[int]:
    """Ids of the variants that the tokenizer encodes as exactly one token (deduplicated)."""
    ids: list[int] = []
    for word in variants:
        encoded = tokenizer.encode(word, add_special_tokens=False)
        if len(encoded) == 1 and encoded[0] not in ids:
            ids.append(int(encoded[0]))
    return ids
