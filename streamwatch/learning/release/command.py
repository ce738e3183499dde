"""`streamwatch release`: apply an adapter and/or thresholds through the gate, list the versions, roll
back to one.

    streamwatch release apply --adapter DIR|none --threshold RULE=VALUE ... [--override REASON]
    streamwatch release list
    streamwatch release rollback VERSION

`apply` exits 0 when the change went live, 1 when the gate refused it (recorded, nothing changed), 2
when it cannot be made at all (no adapter slot, a broken adapter, an unknown rule)."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import Any


def cmd_release(args: argparse.Namespace) -> int:
    from streamwatch.errors import NotApplied
    from streamwatch.logs import setup_logging

    setup_logging(args.log_level)
    try:
        return {"apply": _apply, "list": _list, "rollback": _rollback}[args.action](args)
    except (NotApplied, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _opened(args: argparse.Namespace) -> tuple[Any, Any]:
    from streamwatch.config import load_settings
    from streamwatch.store.db import open_database

    settings = load_settings(args.config)
    return settings, open_database(settings)


def _apply(args: argparse.Namespace) -> int:
    from streamwatch.learning.release.actions import adapter_folder, apply_change
    from streamwatch.learning.release.check import Change
    from streamwatch.learning.release.gate import markdown
    from streamwatch.reports import write_report

    thresholds = dict(_threshold(text) for text in args.threshold)
    change = Change(adapter_folder(args.adapter), thresholds)
    if args.adapter is None and not thresholds:
        raise ValueError("nothing to apply: give --adapter DIR (or none) and/or --threshold RULE=VALUE")
    settings, database = _opened(args)
    try:
        outcome = apply_change(
            settings,
            database,
            change,
            by=args.by,
            override=args.override,
            job_id=args.job,
            service_loads=args.service_loads,
        )
    finally:
        database.close()
    report = outcome.report
    if args.out:
        data = report.to_json() | {"version": outcome.version.version, "outcome": outcome.version.outcome}
        for path in write_report(Path(args.out), "gate", data, markdown(report)):
            print(f"wrote {path}")
    for line in report.change:
        print(f"change: {line}")
    for verdict in report.verdicts:
        said = ("ok, coarse" if verdict.coarse else "ok") if verdict.passed else "refused"
        print(f"gate: {verdict.rule} ({verdict.yes} yes, {verdict.no} no): {said}")
        for line in verdict.coarse if verdict.passed else ():
            print(f"gate: {verdict.rule}: {line}")
    for line in report.refusals():
        print(f"refused: {line}", file=sys.stderr)
    version = outcome.version
    if outcome.applied:
        how = f"overridden by {version.by}: {version.override_reason}" if version.outcome == "overridden" else "passed"
        print(f"release: version {version.version} is live (the gate {how})")
        return 0
    print(
        f"release: refused, recorded as version {version.version} (nothing changed); label what is missing, "
        "or apply with --override REASON",
        file=sys.stderr,
    )
    return 1


def _list(args: argparse.Namespace) -> int:
    from streamwatch.learning.release.actions import versions_of

    settings, database = _opened(args)
    try:
        versions = versions_of(settings, database).all(limit=args.limit)
        live = versions_of(settings, database).live()
    finally:
        database.close()
    if args.json:
        print(json.dumps([v.to_json() for v in versions], indent=2))
        return 0
    for version in versions:
        mark = "*" if live is not None and version.version == live.version else " "
        when = version.created_at.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
        what = "; ".join(version.changes)
        print(f"{mark} {version.version:>4}  {when}  {version.action:<8} {version.outcome:<10} {version.by}: {what}")
    if not versions:
        print("no versions yet: the first `release apply` records the state before it as version 1")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from streamwatch.learning.release.actions import rollback

    if args.version is None:
        raise ValueError("rollback: give the version to return to (see `streamwatch release list`)")
    settings, database = _opened(args)
    try:
        version = rollback(settings, database, args.version, by=args.by)
    finally:
        database.close()
    print(f"release: back to version {args.version}, live as version {version.version}")
    for line in version.changes[1:]:
        print(f"change: {line}")
    return 0


def _threshold(text: str) -> tuple[str, float]:
    rule, _, value = text.partition("=")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"--threshold {text!r}: give RULE=VALUE, the value a number between 0 and 1") from None
    if not rule.strip() or not 0.0 <= number <= 1.0:
        raise ValueError(f"--threshold {text!r}: give RULE=VALUE, the value a number between 0 and 1")
    return rule.strip(), number


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def add_release_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "release", help="apply an adapter or thresholds through the release gate; list versions; roll back"
    )
    parser.add_argument("action", choices=["apply", "list", "rollback"])
    parser.add_argument("version", nargs="?", type=int, help="rollback: the version to return to")
    parser.add_argument("-c", "--config", default="config.toml")
    parser.add_argument("--adapter", metavar="DIR", help="apply: this LoRA adapter folder (none: the model alone)")
    parser.add_argument(
        "--threshold", action="append", default=[], metavar="RULE=VALUE", help="apply: a rule's new threshold"
    )
    parser.add_argument("--override", metavar="REASON", help="apply even where the gate refuses (recorded)")
    parser.add_argument("--job", help=argparse.SUPPRESS)  # the fine-tune job the adapter came from (jobs)
    # a release job of the running service, which hands the adapter to its model itself once this ends
    parser.add_argument("--service-loads", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--by", default=_user(), help="who makes the change (default: the user name)")
    parser.add_argument("--out", metavar="DIR", help="apply: write the gate's report (gate.md, gate.json) here")
    parser.add_argument("--limit", type=int, default=50, help="list: versions shown")
    parser.add_argument("--json", action="store_true", help="list: as JSON")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], default="WARNING")
    parser.set_defaults(func=cmd_release)
