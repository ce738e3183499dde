"""The small interface every model backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from streamwatch.inference.limits import PromptLimits
from streamwatch.inference.types import Prompt


@dataclass(frozen=True)
class YesNo:
    """P(yes) from one scoring pass, and the answer it implies."""

    p_yes: float

    @property
    def text(self) -> str:
        return "yes" if self.p_yes >= 0.5 else "no"


class Backend(ABC):
    """Answers batches of prompts. Called from one worker thread; never from the event loop."""

    name: str
    adapter: str | None = None  # a LoRA adapter merged into the model's weights (transformers backend)

    @abstractmethod
    def score_yes_no(self, prompts: Sequence[Prompt]) -> list[YesNo]:
        """One forward pass per batch; P(yes) over the model's yes/no token variants."""

    @abstractmethod
    def generate(self, prompts: Sequence[Prompt], max_new_tokens: int) -> list[str]:
        """Greedy generation of short answers, cleaned of template wrappers."""

    def generate_counted(self, prompts: Sequence[Prompt], max_new_tokens: int) -> list[tuple[str, int | None]]:
        """`generate`, each answer with how many tokens the model generated for it (None: not known)."""
        return [(text, None) for text in self.generate(prompts, max_new_tokens)]

    def prompt_limits(self, *, max_chars: int, max_tokens: int, max_new_tokens: int) -> PromptLimits:
        """How long a question may be for this model: in characters here (a remote model's tokenizer is
        not at hand); backends that hold the tokenizer count tokens against the model's context too."""
        return PromptLimits(max_chars, max_new_tokens=max_new_tokens)

    def prompt_tokens(self, prompt: Prompt, yes_no: bool) -> int | None:
        """How many tokens the model gets for `prompt` (`serve`'s usage); None where this backend cannot
        count (a remote model's tokenizer is not at hand)."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model's memory."""
