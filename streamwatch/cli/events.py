"""`streamwatch events mark ID --verdict V` (review an event as the web UI does) and `streamwatch events
search TEXT`: alerts (open, updates and resolved as one) whose events hold every word of TEXT in their
question, answer, description, review note, camera, rule or title."""

from __future__ import annotations

import argparse
import json
import sys

from streamwatch.alerts.payload import event_payload, review_fields
from streamwatch.errors import SearchError
from streamwatch.store.alert_list import AlertFilter, AlertList, alert_payload
from streamwatch.store.events import EventStore
from streamwatch.vocabulary import ReviewChoice


def search_alerts(store: EventStore, args: argparse.Namespace, text: str) -> int:
    where = AlertFilter(camera=args.camera, rule=args.rule, severity=args.severity, since=args.since, q=text)
    alerts = AlertList(store.db)
    try:
        found, total = alerts.list(where, limit=args.limit), alerts.count(where)
    except SearchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([alert_payload(alert) for alert in found], indent=2))
        return 0
    if not found:
        print(f"no alerts match {text!r}")
    for alert in found:
        first, peak = alert.first, alert.peak_confidence
        when = alert.opened_at.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
        shown = "" if peak is None else f" peak p={peak:.2f}"
        print(
            f"{when}  {alert.state:<8} {alert.duration_s():>7.0f}s  {first.camera}/{first.rule}  "
            f"{first.title!r}{shown}  {alert.alert_id}"
        )
    if total > len(found):
        print(f"... {total - len(found)} more (--limit)")
    return 0


def mark_event(store: EventStore, args: argparse.Namespace) -> int:
    event = store.review(args.event_id, ReviewChoice(args.verdict).verdict, args.note)
    if event is None:
        print(f"error: no event {args.event_id!r}", file=sys.stderr)
        return 1
    print(json.dumps(event_payload(event, None) | review_fields(event), indent=2))
    return 0
