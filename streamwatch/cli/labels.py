"""`streamwatch labels`: the labelling queue from the command line, as the web UI's /labels page."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from streamwatch.store.labels import STATES, LabelStore, label_payload
from streamwatch.store.models import LabelRequest
from streamwatch.vocabulary import Label


def _label_store(config: str) -> LabelStore:
    """Only `[storage]` and `[labels]` of the config are read (other sections' secrets need not be set)."""
    from streamwatch.config import load_settings
    from streamwatch.store.db import open_database

    settings = load_settings(config, sections=("storage", "labels"))
    return LabelStore(
        open_database(settings),
        settings.path(settings.storage.snapshot_dir),
        max_pending=settings.labels.max_pending,
        max_labelled=settings.labels.max_labelled,
    )


def as_json(store: LabelStore, item: LabelRequest) -> dict[str, Any]:
    strip = store.window_path(item)
    return label_payload(item) | {"frame_file": str(store.frame_path(item)), "frames_file": strip and str(strip)}


def cmd_labels(args: argparse.Namespace) -> int:
    store = _label_store(args.config)
    if args.action == "set":
        if args.id is None or args.label is None:
            print("usage: streamwatch labels set ID yes|no|skip", file=sys.stderr)
            return 2
        item = store.set_label(args.id, Label(args.label))
        if item is None:
            print(f"error: no label request {args.id!r}", file=sys.stderr)
            return 1
        print(json.dumps(as_json(store, item), indent=2))
        return 0
    labelled = STATES[args.state]
    items = store.list(labelled=labelled, camera=args.camera, rule=args.rule, limit=args.limit)
    if args.json:
        print(json.dumps([as_json(store, item) for item in items], indent=2))
        return 0
    if not items:
        print("no label requests" if args.state != "pending" else "nothing to label")
    for item in items:
        p = "-" if item.confidence is None else f"{item.confidence:.3f}"
        shown = item.label or "?"
        print(
            f"{item.uid}  {item.camera}/{item.rule}  p_yes={p}  {item.reason:<9}  {shown:<4}  {store.frame_path(item)}"
        )
        print(f"    {item.question}")
        strip = store.window_path(item)
        if strip is not None:
            print(f"    asked over {item.window_frames} frames, oldest on the left: {strip}")
    return 0


def add_labels_parser(sub: Any) -> None:
    labels = sub.add_parser(
        "labels", help="label requests: list the queue (`labels`), answer one (`labels set ID yes|no|skip`)"
    )
    labels.add_argument("action", nargs="?", choices=["list", "set"], default="list")
    labels.add_argument("id", nargs="?", help="with set: the request's id")
    labels.add_argument("label", nargs="?", choices=[label.value for label in Label], help="with set")
    labels.add_argument("-c", "--config", default="config.toml")
    labels.add_argument("--state", choices=list(STATES), default="pending")
    labels.add_argument("--camera")
    labels.add_argument("--rule")
    labels.add_argument("--limit", type=int, default=50)
    labels.add_argument("--json", action="store_true")
    labels.set_defaults(func=cmd_labels)
