"""Labelled examples through a model, as the service would ask them: each rule's question rendered for
the example's camera, its `roi` cropped from the full frame, P(yes) from the backend in batches."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from streamwatch.config import CameraConfig
from streamwatch.inference.backends.base import Backend
from streamwatch.inference.types import Prompt
from streamwatch.ingest.preprocess import crop_roi
from streamwatch.learning.evaluation.examples import Example
from streamwatch.rules.model import Rule

BATCH = 16
GENERATE_TOKENS = 16  # model.max_new_tokens's default


@dataclass
class Scored:
    """One rule on one camera: P(yes) and the truth of each example, and where the examples came from."""

    camera: str
    rule: Rule
    sample_interval_s: float
    p_yes: list[float] = field(default_factory=list)
    truth: list[bool] = field(default_factory=list)
    sources: Counter[str] = field(default_factory=Counter)

    @property
    def threshold(self) -> float:
        """Where an answer counts as an alert: a yes/no rule's threshold; count and choice answers are
        scored 1.0 (the rule's condition met) or 0.0."""
        return self.rule.threshold if self.rule.answer == "yes_no" else 0.5


def replay(
    backend: Backend,
    rules: Mapping[str, Rule],
    cameras: Mapping[str, CameraConfig],
    examples: Iterable[Example],
    skipped: Counter[str],
    max_new_tokens: int = GENERATE_TOKENS,
) -> dict[tuple[str, str], Scored]:
    """Score every usable example; why the others were left out is counted in `skipped`.
    `max_new_tokens`: a count or choice rule's answer length unless it sets its own (model.max_new_tokens)."""
    scored: dict[tuple[str, str], Scored] = {}
    batch: list[tuple[Scored, Prompt, bool]] = []
    for example in examples:
        prepared = prepare(example, rules, cameras)
        if isinstance(prepared, str):
            skipped[prepared] += 1
            continue
        rule, camera, prompt = prepared
        key = (camera.id, rule.id)
        if key not in scored:
            scored[key] = Scored(camera.id, rule, rule.sample_interval_s or camera.sample_interval_s)
        scored[key].sources[example.source] += 1
        batch.append((scored[key], prompt, example.truth))
        if len(batch) >= BATCH:
            _score(backend, batch, max_new_tokens)
    _score(backend, batch, max_new_tokens)
    return scored


def prepare(
    example: Example, rules: Mapping[str, Rule], cameras: Mapping[str, CameraConfig]
) -> tuple[Rule, CameraConfig, Prompt] | str:
    """The rule, the camera (with the example's own variables) and the prompt as the service would ask
    it; or why the example cannot be asked that way."""
    rule = rules.get(example.rule)
    why = _unusable(rule, example)
    if why is not None:
        return why
    assert rule is not None
    camera = cameras.get(example.camera) or CameraConfig(id=example.camera, url="-")
    if example.vars:
        camera = camera.model_copy(update={"vars": {**camera.vars, **dict(example.vars)}})
    missing = rule.missing_variables(camera)
    if missing:
        return f"rule {rule.id} on camera {camera.id}: no value for {{{missing[0]}}}"
    if rule.frames > 1:  # the frames as the service asked them: already the region, at model size
        *earlier, newest = example.frames
        return rule, camera, Prompt(newest, rule.prompt(camera), tuple(earlier))
    return rule, camera, Prompt(crop_roi(example.image, rule.roi), rule.prompt(camera))


def _unusable(rule: Rule | None, example: Example) -> str | None:
    if rule is None:
        return f"rule {example.rule}: not among the rules evaluated"
    if rule.answer == "text":
        return f"rule {rule.id}: a text rule meets no condition to measure"
    if rule.on == "change":
        return f'rule {rule.id}: on = "change" compares two answers; one kept frame cannot replay it'
    if rule.frames > 1 and len(example.frames) != rule.frames:
        kept = len(example.frames) or 1
        return f"rule {rule.id}: asks over {rule.frames} frames; the example kept {kept}"
    return None


def _score(backend: Backend, batch: list[tuple[Scored, Prompt, bool]], max_new_tokens: int) -> None:
    """yes/no rules: P(yes) in one pass; count and choice rules: the generated answer, through the rule's
    condition (1.0 when it alerts, else 0.0: they have no threshold to tune)."""
    if not batch:
        return
    yes_no = [item for item in batch if item[0].rule.answer == "yes_no"]
    if yes_no:
        answers = backend.score_yes_no([prompt for _, prompt, _ in yes_no])
        for (target, _prompt, truth), answer in zip(yes_no, answers, strict=True):
            target.p_yes.append(answer.p_yes)
            target.truth.append(truth)
    generated = [item for item in batch if item[0].rule.answer != "yes_no"]
    for tokens in sorted({item[0].rule.max_new_tokens or max_new_tokens for item in generated}):
        group = [item for item in generated if (item[0].rule.max_new_tokens or max_new_tokens) == tokens]
        texts = backend.generate([prompt for _, prompt, _ in group], tokens)
        for (target, _prompt, truth), text in zip(group, texts, strict=True):
            target.p_yes.append(1.0 if target.rule.is_alert(text, None) else 0.0)
            target.truth.append(truth)
    batch.clear()
