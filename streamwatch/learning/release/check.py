"""The gate run on a change: every labelled example (reviews, answered label requests, the labelled
clips in jobs.clips_dir) scored by the live model (with the adapter it runs) and, where the change
brings another adapter, by the candidate; then judged rule by rule (gate.py). An adapter is judged on
the examples it was not trained on (those its fine-tune listed in trained.json are left out for both).

Judged: for another adapter, every enabled live rule that alerts (an adapter moves every answer); for
thresholds alone, the rules whose threshold changes."""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from streamwatch.config import Settings
from streamwatch.config.release import ReleaseConfig
from streamwatch.inference.adapter import is_empty_slot
from streamwatch.learning.evaluation.examples import TRAINED, Example, all_examples, example_key
from streamwatch.learning.evaluation.manifest import LabelledClip, load_manifest
from streamwatch.learning.evaluation.replay import Scored, replay
from streamwatch.learning.release.gate import GateReport, judge
from streamwatch.rules.loader import load_rules
from streamwatch.rules.model import Rule
from streamwatch.store.db import Database

log = logging.getLogger(__name__)

OTHER_RULE = "not among the rules evaluated"  # an example of a rule the change does not touch: not a note


class Keep:
    """The adapter is not part of the change."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP = Keep()


@dataclass(frozen=True)
class Change:
    adapter: Path | Keep | None = KEEP  # a folder, None (the model alone) or KEEP
    thresholds: Mapping[str, float] = field(default_factory=dict)

    def describe(self, live_adapter: Path | None, rules: Mapping[str, Rule]) -> list[str]:
        lines = []
        if not isinstance(self.adapter, Keep):
            was = str(live_adapter) if live_adapter is not None else "none"
            lines.append(f"adapter: {was} -> {self.adapter if self.adapter is not None else 'none'}")
        for rule_id, value in sorted(self.thresholds.items()):
            old = rules[rule_id].threshold if rule_id in rules else None
            lines.append(f"{rule_id}: threshold {'-' if old is None else f'{old:g}'} -> {value:g}")
        return lines


def live_adapter(settings: Settings) -> Path | None:
    """The adapter the service runs: model.adapter's folder unless it is an empty slot."""
    path = settings.adapter_path()
    return None if path is None or is_empty_slot(path) else path


def trained_on(adapter: Path | Keep | None) -> frozenset[str]:
    """The examples a candidate adapter was trained on (`streamwatch model finetune` lists them beside
    it): judged on those, an adapter looks better than it will do; none where it lists none."""
    if not isinstance(adapter, Path) or not (adapter / TRAINED).is_file():
        return frozenset()
    try:
        return frozenset(json.loads((adapter / TRAINED).read_text(encoding="utf-8"))["examples"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"adapter {adapter}: {TRAINED} is not readable: {exc}") from None


def unseen(examples: Iterator[Example], trained: frozenset[str], skipped: Counter[str]) -> Iterator[Example]:
    for example in examples:
        if trained and example_key(example) in trained:
            skipped[f"rule {example.rule}: the candidate adapter was trained on it (judged on the others)"] += 1
            continue
        yield example


def labelled_clips(settings: Settings) -> list[LabelledClip]:
    folder = settings.path(settings.jobs.clips_dir)
    if not folder.is_dir():
        return []
    names = sorted(entry.name for entry in os.scandir(folder) if entry.name.endswith(".toml") and entry.is_file())
    return [load_manifest(folder / name) for name in names]


def run_gate(settings: Settings, change: Change, database: Database | None, config: ReleaseConfig) -> GateReport:
    rules = {rule.id: rule for rule in load_rules(settings.path(settings.rules_dir), settings.cameras).rules}
    unknown = sorted(set(change.thresholds) - set(rules))
    if unknown:
        raise ValueError(f"threshold for {unknown[0]!r}: no such rule in {settings.rules_dir}")
    new_adapter = not isinstance(change.adapter, Keep)
    if new_adapter:
        judged = [r for r in rules.values() if r.mode == "live" and r.enabled and r.answer != "text"]
    else:
        judged = [rules[r] for r, value in change.thresholds.items() if rules[r].threshold != value]
    clips = labelled_clips(settings)
    cameras = {camera.id: camera for camera in settings.cameras}
    asked = {rule.id: rule for rule in judged}
    current = live_adapter(settings)
    notes: list[str] = []
    skipped: Counter[str] = Counter()

    trained = trained_on(change.adapter)

    def scores(adapter: Path | None) -> dict[tuple[str, str], Scored]:
        from streamwatch.inference.build import load_backend

        model = settings.model.model_copy(update={"adapter": None if adapter is None else str(adapter)})
        backend = load_backend(settings.model_copy(update={"model": model}))
        try:
            notes.clear()
            skipped.clear()
            examples = unseen(all_examples(settings, database, clips, notes, asked), trained, skipped)
            return replay(backend, asked, cameras, examples, skipped, settings.model.max_new_tokens)
        finally:
            backend.close()

    before = scores(current) if asked else {}
    after = before
    if new_adapter and asked:
        assert not isinstance(change.adapter, Keep)
        after = scores(change.adapter)
    why_not = {
        rule.id: 'on = "change" compares two answers; kept frames cannot replay it'
        for rule in judged
        if rule.on == "change"
    }
    left_out = [f"{why}: {n}" for why, n in sorted((skipped + Counter(notes)).items()) if OTHER_RULE not in why]
    return judge(judged, before, after, change.thresholds, config, why_not, change.describe(current, rules), left_out)
