"""The training objective fine-tuning and the demo trainer share, the same prompts, answer format and
loss as the service's backend: the prompt rendered exactly as at inference (chat template, thinking
off), the target the answer wrapped as the model family answers (GLM: in a box) then end of text, and
only the target tokens carrying loss; and the optimisation loop (AdamW, warm-up then cosine decay,
gradients clipped), seeded."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from PIL import Image

from streamwatch.ingest.preprocess import fit_longest_side
from streamwatch.learning.finetune.example import TrainingExample
from streamwatch.vlm.prompts import PromptStyle


def answer_suffix(style: PromptStyle, tokenizer: Any) -> str:
    """What ends an answer: the box's closing tag where answers are boxed, then end of text."""
    close = "<|end_of_box|>" if style.answer_prefix == "<|begin_of_box|>" else ""
    return close + str(tokenizer.eos_token)


def answer_target(style: PromptStyle, suffix: str, answer: str) -> str:
    """The text the model is trained to produce after the prompt."""
    return f"{style.answer_prefix}{answer}{suffix}"


def encode(
    processor: Any, style: PromptStyle, suffix: str, batch: Sequence[TrainingExample], max_image_side: int
) -> dict[str, Any]:
    """Model inputs plus `target_mask`: which positions' next token is an answer token (left padding puts
    every row's answer at the end)."""
    images = [fit_longest_side(Image.fromarray(ex.image), max_image_side) for ex in batch]
    targets = [answer_target(style, suffix, ex.answer) for ex in batch]
    texts = [style.render(processor, ex.question) + target for ex, target in zip(batch, targets, strict=True)]
    inputs = dict(processor(images=images, text=texts, return_tensors="pt", padding=True))
    inputs["target_mask"] = target_mask(
        [len(processor.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in targets]
    )
    return inputs


def target_mask(lengths: Sequence[int]) -> torch.Tensor:
    """(rows, longest target) bool: which of the last positions predict a target token, for rows whose
    targets (`lengths` tokens each) end every left-padded row."""
    mask = torch.zeros(len(lengths), max(lengths), dtype=torch.bool)
    for row, length in enumerate(lengths):
        mask[row, mask.shape[1] - length :] = True
    return mask


def answer_loss(model: Any, inputs: dict[str, Any]) -> torch.Tensor:
    """Cross-entropy of the answer tokens only (logits kept for the last few positions)."""
    mask = inputs["target_mask"]
    keep = mask.shape[1] + 1
    model_inputs = {k: v for k, v in inputs.items() if k != "target_mask"}
    logits = model(**model_inputs, logits_to_keep=keep, use_cache=False).logits[:, :-1, :]
    targets = model_inputs["input_ids"][:, -(keep - 1) :]
    return torch.nn.functional.cross_entropy(logits[mask].float(), targets[mask])


class Schedule(Protocol):
    """What `optimise` needs of a stage's settings."""

    @property
    def steps(self) -> int: ...
    @property
    def lr(self) -> float: ...
    @property
    def warmup(self) -> int: ...
    @property
    def log_every(self) -> int: ...


def optimise(
    groups: list[dict[str, Any]],
    schedule: Schedule,
    step_loss: Callable[[], torch.Tensor],
    progress: Callable[[int, float, float], None] | None = None,
) -> list[tuple[int, float]]:
    """The training loop every stage shares: AdamW over the parameter `groups`, warm-up then cosine decay,
    gradients clipped at norm 1, `step_loss()` per step. Returns (step, mean loss) every `log_every`
    steps and at the end; `progress(step, loss, seconds)` is called with each."""
    trained = [p for group in groups for p in group["params"]]
    optimiser = torch.optim.AdamW(groups, lr=schedule.lr, betas=(0.9, 0.98))
    rate = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: lr_factor(step, schedule.warmup, schedule.steps))
    history: list[tuple[int, float]] = []
    started, total = time.monotonic(), 0.0
    for step in range(1, schedule.steps + 1):
        loss = step_loss()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimiser.step()
        rate.step()
        total += float(loss.detach())
        if step % schedule.log_every == 0 or step == schedule.steps:
            count = schedule.log_every if step % schedule.log_every == 0 else step % schedule.log_every
            history.append((step, total / count))
            total = 0.0
            if progress:
                progress(step, history[-1][1], time.monotonic() - started)
    return history


def lr_factor(step: int, warmup: int, steps: int) -> float:
    """Linear warm-up, then cosine decay to a tenth."""
    if step < warmup:
        return (step + 1) / warmup
    done = (step - warmup) / max(1, steps - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, done)))
