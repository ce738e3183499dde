"""`streamwatch eval`: the labelled examples of the config's database (reviewed events, answered label
requests) and of labelled clips (`--clips`), replayed through the config's rules (or `--rules DIR`)
and model (or `--model`), measured per rule x camera; a JSON + Markdown report and a plot."""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streamwatch.evaluation.examples import Example, from_clips, labelled, reviewed
from streamwatch.evaluation.manifest import LabelledClip, load_manifest
from streamwatch.evaluation.replay import replay
from streamwatch.evaluation.report import write
from streamwatch.tomlfile import DataFileError

log = logging.getLogger(__name__)

NOTHING = (
    "no labelled examples: review alerts (Confirmed / False positive), answer label requests "
    "(the Label page, `streamwatch labels`), or give labelled clips with --clips MANIFEST"
)


def cmd_eval(args: argparse.Namespace) -> int:
    from streamwatch.config import load_settings
    from streamwatch.inference.build import load_backend
    from streamwatch.logs import setup_logging
    from streamwatch.rules.loader import load_rules
    from streamwatch.store.db import open_database
    from streamwatch.store.events import EventStore
    from streamwatch.store.labels import LabelStore

    setup_logging(args.log_level)
    settings = load_settings(args.config)
    if args.model:
        settings = settings.model_copy(update={"model": settings.model.model_copy(update={"id": args.model})})
    rules_dir = Path(args.rules) if args.rules else settings.path(settings.rules_dir)
    rules = {rule.id: rule for rule in load_rules(rules_dir, settings.cameras).rules}
    clips: list[LabelledClip] = [load_manifest(Path(path)) for path in args.clips]
    problems = [
        clip.problem(("rule",), f"no rule {clip.manifest.rule!r} in {rules_dir}")
        for clip in clips
        if clip.manifest.rule not in rules
    ]
    if problems:
        raise DataFileError(problems)
    sources: list[Iterator[Example]] = [from_clips(clips)]
    skipped: Counter[str] = Counter()
    notes: list[str] = []
    if not args.no_store:
        database = open_database(settings)
        folder = settings.path(settings.storage.snapshot_dir)
        labels = LabelStore(database, folder, max_pending=10**9, max_labelled=10**9)  # reads only
        sources = [reviewed(EventStore(database, folder), notes), labelled(labels, notes), *sources]
    examples = _peek(itertools.chain(*sources))
    if examples is None:
        print(f"error: {NOTHING}", file=sys.stderr)
        return 2
    backend = load_backend(settings)
    try:
        scored = replay(backend, rules, {c.id: c for c in settings.cameras}, examples, skipped)
    finally:
        backend.close()
    skipped.update(notes)
    if not scored:
        print(f"error: none of the labelled examples can be replayed: {dict(skipped)}", file=sys.stderr)
        return 2
    total = sum(len(s.p_yes) for s in scored.values())
    kinds: Counter[str] = Counter()
    for item in scored.values():
        kinds.update(item.sources)
    about: dict[str, Any] = {
        "model": settings.model.id,
        "rules": str(rules_dir),
        "examples": total,
        "sources": ", ".join(f"{n} from {kind}" for kind, n in sorted(kinds.items())),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    for path in write(Path(args.out), args.name, scored, skipped, about, args.target_precision):
        print(f"wrote {path}")
    return 0


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
    parser.add_argument("--target-precision", type=float, help="suggest the lowest threshold reaching this precision")
    parser.add_argument("--out", default="eval", help="report folder")
    parser.add_argument("--name", default="eval", help="report file name (without extension)")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], default="WARNING")
    parser.set_defaults(func=cmd_eval)
