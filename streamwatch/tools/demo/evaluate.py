"""Held-out evaluation of a model on the demo rules, through the service's own backend.

Yes/no rules are scored with P(yes) and judged at each rule's own threshold (what the service alerts
on); count and choice rules are answered by greedy generation. The reliability table groups every
yes/no answer by P(yes) and shows how often the truth was "yes" in each group: for a usable confidence
the two columns agree (expected calibration error near 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from streamwatch.config import ModelConfig
from streamwatch.inference.backends.base import Backend
from streamwatch.inference.types import Prompt
from streamwatch.learning.evaluation import scores as metrics
from streamwatch.learning.finetune.example import TrainingExample
from streamwatch.tools.demo.dataset import Task, example


@dataclass
class RuleResult:
    rule: str
    kind: str
    varies: bool
    correct: int = 0
    total: int = 0
    confusion: dict[str, int] = field(default_factory=dict)  # "truth->answer": count, for mistakes

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0


@dataclass
class Evaluation:
    rules: list[RuleResult]
    p_yes: list[float]  # every yes/no answer of a rule whose truth varies ...
    truth: list[bool]  # ... and its truth

    def reliability(self) -> list[metrics.Bin]:
        """Per P(yes) bin (tenths): low, high, answers, mean P(yes), fraction truly yes."""
        return metrics.reliability(self.p_yes, self.truth)

    @property
    def calibration_error(self) -> float:
        """Expected calibration error: answers-weighted gap between mean P(yes) and the yes fraction."""
        return metrics.calibration_error(self.p_yes, self.truth) or 0.0

    @property
    def brier(self) -> float:
        return float(np.mean((np.array(self.p_yes) - np.array(self.truth, dtype=float)) ** 2)) if self.p_yes else 0.0


# as long as the service lets an answer be (a choice's word can be several tokens: p-ar-t-ial)
ANSWER_TOKENS = int(ModelConfig.model_fields["max_new_tokens"].default)


def held_out(tasks: Sequence[Task], per_answer: int, seed: int) -> list[TrainingExample]:
    """`per_answer` examples of each answer of each task, from a seed training never uses."""
    rng = np.random.default_rng(seed)
    return [example(task, rng, answer) for task in tasks for answer in task.answers for _ in range(per_answer)]


def evaluate(
    backend: Backend, tasks: Sequence[Task], examples: Sequence[TrainingExample], batch: int = 16
) -> Evaluation:
    by_rule = {t.rule.id: t for t in tasks}
    results = {t.rule.id: RuleResult(t.rule.id, t.rule.answer, t.varies) for t in tasks}
    evaluation = Evaluation(list(results.values()), [], [])
    for kind in ("yes_no", "generate"):
        chosen = [ex for ex in examples if (by_rule[ex.rule].rule.answer == "yes_no") == (kind == "yes_no")]
        for start in range(0, len(chosen), batch):
            part = chosen[start : start + batch]
            prompts = [Prompt(Image.fromarray(ex.image), ex.question) for ex in part]
            if kind == "yes_no":
                scores = backend.score_yes_no(prompts)
                for ex, score in zip(part, scores, strict=True):
                    task = by_rule[ex.rule]
                    said = "yes" if score.p_yes >= task.rule.threshold else "no"
                    _count(results[ex.rule], ex.answer, said)
                    if task.varies:
                        evaluation.p_yes.append(score.p_yes)
                        evaluation.truth.append(ex.answer == "yes")
            else:
                texts = backend.generate(prompts, max_new_tokens=ANSWER_TOKENS)
                for ex, text in zip(part, texts, strict=True):
                    _count(results[ex.rule], ex.answer, text.strip().strip(".").lower())
    return evaluation


def _count(result: RuleResult, truth: str, said: str) -> None:
    result.total += 1
    if said == truth:
        result.correct += 1
    else:
        key = f"{truth}->{said}"
        result.confusion[key] = result.confusion.get(key, 0) + 1


def report(evaluation: Evaluation, *, title: str, notes: Sequence[str] = ()) -> str:
    """The evaluation as Markdown: accuracy per rule, then the reliability table."""
    lines = [f"# {title}", "", *notes, "", "## Accuracy per rule (held-out scenes)", ""]
    lines += ["| rule | answer | examples | accuracy | mistakes (truth->answer) |", "|---|---|---:|---:|---|"]
    for r in sorted(evaluation.rules, key=lambda r: (not r.varies, r.rule)):
        kind = r.kind if r.varies else f"{r.kind} (never shown: always no)"
        mistakes = ", ".join(f"{k} x{v}" for k, v in sorted(r.confusion.items())) or "-"
        lines.append(f"| {r.rule} | {kind} | {r.total} | {r.accuracy:.1%} | {mistakes} |")
    lines += ["", "## Reliability of P(yes) (yes/no rules whose answer varies)", ""]
    lines += ["| P(yes) | answers | mean P(yes) | truly yes |", "|---|---:|---:|---:|"]
    for low, high, n, mean, yes in evaluation.reliability():
        lines.append(f"| {low:.1f}-{high:.1f} | {n} | {mean:.3f} | {yes:.3f} |")
    summary = f"Expected calibration error {evaluation.calibration_error:.3f}; Brier score {evaluation.brier:.4f}."
    lines += ["", summary, ""]
    return "\n".join(lines)
