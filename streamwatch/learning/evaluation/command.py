"""`streamwatch eval`: the labelled examples of the config's database (reviewed events, answered label
requests) and of labelled clips (`--clips`), replayed through the config's rules (or `--rules DIR`)
and model (or `--model`), measured per rule x camera; a JSON + Markdown report and a plot."""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamwatch.errors import DataFileError

if TYPE_CHECKING:  # the command line builds this parser for every command: nothing heavy at import
    from streamwatch.config import Settings
    from streamwatch.inference.backends.base import Backend
    from streamwatch.learning.evaluation.examples import Example
    from streamwatch.learning.evaluation.manifest import LabelledClip
    from streamwatch.learning.evaluation.replay import Scored
    from streamwatch.rules.model import Rule
    from streamwatch.store.db import Database

log = logging.getLogger(__name__)

NOTHING = (
    "no labelled examples: review alerts (Confirmed / False positive), answer label requests "
    "(the Label page, `streamwatch labels`), or give labelled clips with --clips MANIFEST"
)


def cmd_eval(args: argparse.Namespace) -> int:
    from streamwatch.config import load_settings
    from streamwatch.learning.evaluation.examples import all_examples, with_shadows
    from streamwatch.learning.evaluation.manifest import load_manifest
    from streamwatch.learning.evaluation.replay import replay
    from streamwatch.learning.evaluation.report import agreement_markdown, summarise, write
    from streamwatch.logs import setup_logging
    from streamwatch.store.db import open_database
    from streamwatch.store.measures import save

    setup_logging(args.log_level)
    settings = load_settings(args.config)
    clips: list[LabelledClip] = [load_manifest(Path(path)) for path in args.clips]
    base = Candidate(
        args.model or settings.model.id,
        Path(args.rules) if args.rules else settings.path(settings.rules_dir),
        _adapter(args.adapter, settings),
    )
    other = None
    if args.compare_rules or args.compare_model or args.compare_adapter:
        other = Candidate(
            args.compare_model or base.model,
            Path(args.compare_rules) if args.compare_rules else base.rules,
            _adapter(args.compare_adapter, settings) if args.compare_adapter else base.adapter,
        )
    runs = [base] if other is None else [base, other]
    rules = {candidate: _rules(candidate, settings, clips) for candidate in runs}

    database = None if args.no_store else open_database(settings)
    cameras = {camera.id: camera for camera in settings.cameras}
    notes: list[str] = []

    def examples(candidate: Candidate) -> Iterator[Example] | None:
        return _peek(all_examples(settings, database, clips, notes, rules[candidate]))

    if examples(base) is None:
        print(f"error: {NOTHING}", file=sys.stderr)
        return 2
    results: list[tuple[Candidate, dict[tuple[str, str], Scored], Counter[str]]] = []
    backend: Backend | None = None
    loaded: tuple[str, str | None] = ("", None)
    try:
        for candidate in runs:
            if backend is None or loaded != (candidate.model, candidate.adapter):
                if backend is not None:
                    backend.close()
                    backend = None  # closed: a failing load next must not close it again
                backend = _backend(settings, candidate, compared=candidate is not base, base=base)
                loaded = (candidate.model, candidate.adapter)
            notes.clear()
            skipped: Counter[str] = Counter()
            stream = examples(candidate)
            assert stream is not None
            stream = with_shadows(stream, shadow_map(rules[candidate]))
            scored = replay(backend, rules[candidate], cameras, stream, skipped, settings.model.max_new_tokens)
            skipped.update(notes)
            if not scored:
                print(f"error: none of the labelled examples can be replayed: {dict(skipped)}", file=sys.stderr)
                return 2
            results.append((candidate, scored, skipped))
    finally:
        if backend is not None:
            backend.close()
    candidates = summarise(results, args.target_precision)
    live = _agreement(database, rules[base])
    extra, lines = ({"live_agreement": live}, agreement_markdown(live)) if live else ({}, [])
    for path in write(Path(args.out), args.name, candidates, args.target_precision, extra, lines):
        print(f"wrote {path}")
    if database is not None and not args.no_save:
        saved = save(database, base.model, candidates[0]["rows"])
        print(f"saved the figures of {saved} rule x camera pairs for the rules page (--no-save: do not)")
    if other is not None:
        drops = regressions(results[0][1], results[1][1], args.tolerance)
        for line in drops:
            print(f"regression: {line}", file=sys.stderr)
        if drops and args.fail_on_regression:
            return 1
    return 0


@dataclass(frozen=True)
class Candidate:
    """What is evaluated: a model, a rules folder and the LoRA adapter merged into the model (or none)."""

    model: str
    rules: Path
    adapter: str | None = None


def _adapter(value: str | None, settings: Settings) -> str | None:
    """--adapter / --compare-adapter: a directory, `none` for the bare model; unset: the config's (its
    absolute path; None while its folder is an empty slot)."""
    if value is None:
        from streamwatch.inference.adapter import is_empty_slot

        path = settings.adapter_path()
        return None if path is None or is_empty_slot(path) else str(path)
    return None if value.lower() == "none" else os.path.abspath(value)  # a symlink stays one


def _rules(candidate: Candidate, settings: Settings, clips: list[LabelledClip]) -> dict[str, Rule]:
    from streamwatch.rules.loader import load_rules

    rules = {rule.id: rule for rule in load_rules(candidate.rules, settings.cameras).rules}
    problems = [
        clip.problem(("rule",), f"no rule {clip.manifest.rule!r} in {candidate.rules}")
        for clip in clips
        if clip.manifest.rule not in rules
    ]
    if problems:
        raise DataFileError(problems)
    return rules


def shadow_map(rules: dict[str, Rule]) -> dict[str, list[str]]:
    """Live rule id -> the ids of the shadow rules that are candidates for it (both among `rules`)."""
    found: dict[str, list[str]] = {}
    for rule in rules.values():
        if rule.shadows is not None and rule.shadows in rules:  # `shadows` is set on shadow rules only
            found.setdefault(rule.shadows, []).append(rule.id)
    return found


def _agreement(database: Database | None, rules: dict[str, Rule]) -> list[dict[str, Any]]:
    """What the running service stored of the shadow rules evaluated: how often each agreed with its live
    rule on the same frames (no database, or no such rule: nothing)."""
    if database is None or not any(not rule.live for rule in rules.values()):
        return []
    from streamwatch.store.shadow import ShadowStore

    return [row for row in ShadowStore(database).agreement() if row["rule"] in rules]


def _backend(settings: Settings, candidate: Candidate, *, compared: bool, base: Candidate) -> Backend:
    """The candidate's model; a load that fails names what was asked for: the config's model.id or
    model.adapter, or `--model`, `--adapter`, `--compare-model` or `--compare-adapter`."""
    from streamwatch.errors import StartupError
    from streamwatch.inference.build import load_backend

    model = settings.model.model_copy(update={"id": candidate.model, "adapter": candidate.adapter})
    try:
        return load_backend(settings.model_copy(update={"model": model}))
    except StartupError as exc:
        if not compared:
            raise
        if candidate.model != base.model:
            why = str(exc).split(f"cannot load the model {candidate.model}: ", 1)[-1]
            raise StartupError(f"--compare-model {candidate.model}: cannot load it as a model: {why}") from None
        if candidate.adapter != base.adapter:
            raise StartupError(f"--compare-adapter {candidate.adapter}: {exc}") from None
        raise


def regressions(
    before: dict[tuple[str, str], Scored], after: dict[tuple[str, str], Scored], tolerance: float
) -> list[str]:
    """Rule x camera pairs whose F1 at their own threshold dropped by more than `tolerance`."""
    from streamwatch.learning.evaluation import scores as metrics

    found = []
    for key in sorted(set(before) & set(after)):
        old, new = (metrics.counts(s.p_yes, s.truth, s.threshold).f1 for s in (before[key], after[key]))
        if old is not None and (new or 0.0) < old - tolerance:
            found.append(f"{key[1]} on {key[0]}: F1 {old:.3f} -> {0.0 if new is None else new:.3f}")
    return found


def _peek(examples: Iterator[Example]) -> Iterator[Example] | None:
    """None when there is no example at all; otherwise all of them (the first one included)."""
    first = next(examples, None)
    return None if first is None else itertools.chain([first], examples)


def add_eval_parser(sub: Any) -> None:
    parser = sub.add_parser("eval", help="replay labelled examples through rules and a model: precision, recall, ...")
    parser.add_argument("-c", "--config", default="config.toml")
    parser.add_argument("--rules", help="rules folder to evaluate (default: the config's rules_dir)")
    parser.add_argument("--model", help="model id or folder to evaluate (default: the config's model.id)")
    parser.add_argument("--clips", nargs="*", default=[], metavar="MANIFEST", help="labelled clips (TOML manifests)")
    parser.add_argument("--no-store", action="store_true", help="only the labelled clips, not the database")
    parser.add_argument("--no-save", action="store_true", help="do not show these figures on the rules page")
    parser.add_argument("--compare-rules", metavar="DIR", help="also evaluate this rules folder, side by side")
    parser.add_argument("--compare-model", metavar="ID", help="also evaluate this model, side by side")
    parser.add_argument("--adapter", metavar="DIR", help="LoRA adapter to evaluate (default: model.adapter; none: off)")
    parser.add_argument(
        "--compare-adapter", metavar="DIR", help="also evaluate with this adapter (none: without one), side by side"
    )
    parser.add_argument(
        "--fail-on-regression", action="store_true", help="exit 1 when the compared one's F1 drops on a rule"
    )
    parser.add_argument("--tolerance", type=float, default=0.02, help="F1 drop allowed with --fail-on-regression")
    parser.add_argument("--target-precision", type=float, help="suggest the lowest threshold reaching this precision")
    parser.add_argument("--out", default="eval", help="report folder")
    parser.add_argument("--name", default="eval", help="report file name (without extension)")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], default="WARNING")
    parser.set_defaults(func=cmd_eval)
