"""`streamwatch run | serve | check | ask | probe | events | model ... | bench ...`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamwatch import __version__
from streamwatch.errors import DataFileError
from streamwatch.logs import setup_logging
from streamwatch.vocabulary import EventKind, ReviewChoice, Severity

if TYPE_CHECKING:
    from streamwatch.store.events import EventStore

log = logging.getLogger("streamwatch")


def cmd_check(args: argparse.Namespace) -> int:
    """The config and the rules as `run` would load them, question lengths counted in the model's
    tokens where its tokenizer is on disk, and the addresses it would listen on."""
    from streamwatch.config import load_settings
    from streamwatch.config.deployment import host_problems
    from streamwatch.inference.limits import PromptLimits, offline_limits
    from streamwatch.rules.loader import configured_rules

    settings = load_settings(args.config)
    model = settings.model
    limits, note = PromptLimits(model.max_question_chars, max_new_tokens=model.max_new_tokens), None
    if model.backend == "transformers":
        limits, note = offline_limits(
            settings.model_ref(),
            max_chars=model.max_question_chars,
            max_tokens=model.max_question_tokens,
            max_image_side=model.max_image_side,
            max_new_tokens=model.max_new_tokens,
        )
    problems = host_problems(settings)
    try:
        rules = configured_rules(settings, limits)
    except DataFileError as exc:
        problems += exc.problems
    if problems:
        raise DataFileError(problems)
    for warning in [*rules.warnings, *([note] if note else [])]:
        print(f"note: {warning}")
    print(f"{args.config}: OK: {len(settings.cameras)} cameras, {len(rules.rules)} rules, model {settings.model.id}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from streamwatch.app.service import Service
    from streamwatch.config import load_settings
    from streamwatch.config.shard import Shard

    settings = load_settings(args.config)
    if args.shard is not None:
        try:
            settings = settings.model_copy(update={"shard": str(Shard.parse(args.shard))})
        except ValueError as exc:
            print(f"error: --shard: {exc}", file=sys.stderr)
            return 2
    setup_logging(args.log_level or settings.log_level, settings.log_format)
    return _until_stopped(Service(settings).run(duration_s=args.duration))


def _until_stopped(main: Coroutine[Any, Any, None]) -> int:
    """Run a long-running command; 2 with the message when it cannot start as configured."""
    from streamwatch.errors import StartupError

    try:
        asyncio.run(main)
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from streamwatch.config import load_settings
    from streamwatch.serve.command import serve_model

    settings = load_settings(args.config)
    overrides = {key: value for key, value in (("host", args.host), ("port", args.port)) if value is not None}
    if overrides:
        settings = settings.model_copy(update={"serve": settings.serve.model_copy(update=overrides)})
    setup_logging(args.log_level or settings.log_level, settings.log_format)
    return _until_stopped(serve_model(settings, duration_s=args.duration))


def cmd_ask(args: argparse.Namespace) -> int:
    from streamwatch.config import ModelConfig, Settings, load_settings
    from streamwatch.errors import SourceError
    from streamwatch.inference.build import build_queue, load_backend
    from streamwatch.inference.types import AnswerKind, Request
    from streamwatch.ingest.sources import grab_frame

    setup_logging(args.log_level or "WARNING")
    use_config = Path(args.config).exists() or args.model is None
    settings = load_settings(args.config, sections=("model",)) if use_config else Settings()
    if args.model is not None:  # another model: the config's adapter was trained for its own, not this one
        overrides = {"id": args.model, "adapter": None, **({"device": args.device} if args.device else {})}
        settings = settings.model_copy(update={"model": ModelConfig(**{**settings.model.model_dump(), **overrides})})
    try:
        image = grab_frame(args.source)
    except SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    backend = load_backend(settings)
    model = settings.model
    limits = backend.prompt_limits(
        max_chars=model.max_question_chars, max_tokens=model.max_question_tokens, max_new_tokens=model.max_new_tokens
    )
    why = limits.problem(args.question)
    if why is not None:
        print(f"error: question: {why}", file=sys.stderr)
        return 2
    queue = build_queue(settings, backend)
    queue.start()
    kind = AnswerKind.YES_NO if args.kind == "yes_no" else AnswerKind.GENERATE
    try:
        started = time.monotonic()
        answer = queue.submit(
            Request(
                image, args.question, kind, source="cli", deadline=started + 600, max_new_tokens=args.max_new_tokens
            )
        ).result()
    finally:
        queue.stop()
    result = {
        "answer": answer.text,
        "confidence": None if answer.confidence is None else round(answer.confidence, 4),
        "latency_ms": round(answer.latency_s * 1000, 1),
        "model": answer.model,
    }
    if args.json:
        print(json.dumps(result))
    else:
        confidence = "-" if answer.confidence is None else f"{answer.confidence:.3f} (P(yes))"
        print(f"answer:     {answer.text}\nconfidence: {confidence}\nlatency:    {result['latency_ms']} ms")
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    """Connect to cameras for a few seconds, as the service would, and report what each one does."""
    from pydantic import ValidationError

    from streamwatch.config import CameraConfig, load_settings
    from streamwatch.ingest.camera import CameraWorker
    from streamwatch.redact import redact_url

    setup_logging(args.log_level or "ERROR")
    if args.urls:
        cameras = []
        for index, url in enumerate(args.urls, 1):
            try:
                cameras.append(CameraConfig(id=f"cam{index}", url=url))
            except ValidationError as exc:  # the URL was registered as a secret holder: its password is masked
                print(
                    f"error: {redact_url(url)}: {exc.errors()[0]['msg'].removeprefix('Value error, ')}", file=sys.stderr
                )
                return 2
    else:
        cameras = load_settings(args.config).cameras
    workers = [CameraWorker(camera) for camera in cameras]
    for worker in workers:
        worker.start()
    time.sleep(args.seconds)
    statuses = [worker.status() for worker in workers]
    for worker in workers:
        worker.request_stop()
    for worker in workers:  # a camera still connecting is left behind: its thread is a daemon
        worker.stop(timeout=1.0, quiet=True)
    if args.json:
        print(json.dumps([status.as_dict() for status in statuses], indent=2))
    else:
        for s in statuses:
            print(f"{s.id}  {s.url}")
            print(f"  state {s.state}, quality {s.quality}, reconnects {s.reconnects}")
            if s.width:
                gop = "-" if s.keyframe_interval_s is None else f"{s.keyframe_interval_s:g} s"
                print(f"  {s.width}x{s.height} {s.decoder}, keyframe interval {gop}, decoding {s.decode_mode}")
                print(f"  {s.fps:g} fps decoded of {s.stream_fps:g} received, {s.decode_ms:g} ms per decoded frame")
            if s.last_error:
                print(f"  error: {s.last_error}")
    return 0 if all(s.state == "online" for s in statuses) else 1


def _since(text: str) -> datetime:
    """'90m', '2h', '7d' ago, or an ISO date/time (local time unless it says otherwise)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[:-1].isdigit() and text[-1:] in units:
        try:
            return datetime.now(UTC) - timedelta(seconds=int(text[:-1]) * units[text[-1]])
        except OverflowError:
            raise argparse.ArgumentTypeError(f"{text!r} reaches back before the year 1") from None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected e.g. 90m, 2h, 7d or 2026-11-21T08:00, got {text!r}") from None
    return moment if moment.tzinfo else moment.astimezone()


def _event_store(config: str) -> EventStore:
    """The event history of the config's database and snapshot folder. Only `[storage]` of the config is
    read: the other sections' secrets (the MQTT password, ...) need not be in the environment."""
    from streamwatch.config import load_settings
    from streamwatch.store.db import open_database
    from streamwatch.store.events import EventStore

    settings = load_settings(config, sections=("storage",))
    return EventStore(open_database(settings), settings.path(settings.storage.snapshot_dir))


def cmd_events(args: argparse.Namespace) -> int:
    """Event history from the database of the config: newest first, filtered."""
    from streamwatch.alerts.payload import event_payload
    from streamwatch.store.events import EventFilter

    action = list(args.action)
    if action[:1] == ["mark"]:
        if len(action) != 2 or args.verdict is None:
            print(
                "usage: streamwatch events mark ID --verdict confirmed|false_positive|seen [--note TEXT]",
                file=sys.stderr,
            )
            return 2
        from streamwatch.cli.events import mark_event

        args.event_id = action[1]
        return mark_event(_event_store(args.config), args)
    if action[:1] == ["search"]:
        from streamwatch.cli.events import search_alerts

        return search_alerts(_event_store(args.config), args, " ".join(action[1:]))
    if action[:1] == ["show"]:
        action = action[1:]
    if len(action) > 1:
        print("usage: streamwatch events [show ID | mark ID --verdict V] [filters]", file=sys.stderr)
        return 2
    args.event_id = action[0] if action else None
    store = _event_store(args.config)
    if args.event_id:
        event = store.get(args.event_id)
        if event is None:
            print(f"error: no event {args.event_id!r}", file=sys.stderr)
            return 1
        events = [event]
    else:
        where = EventFilter(
            camera=args.camera, rule=args.rule, kind=args.kind, severity=args.severity, since=args.since
        )
        events = store.list(where, limit=args.limit)
    payloads = [event_payload(e, store.snapshot_dir) for e in events]
    if args.json or args.event_id:
        print(json.dumps(payloads[0] if args.event_id else payloads, indent=2))
        return 0
    if not events:
        print("no events")
    for e in events:
        confidence = "" if e.confidence is None else f" p={e.confidence:.2f}"
        when = e.created_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
        print(f"{when}  {e.kind:<8} {e.severity:<8} {e.camera}/{e.rule}  {e.answer!r}{confidence}  {e.uid}")
    return 0


def cmd_hash_password(args: argparse.Namespace) -> int:
    """Print the hash of a password or token for config.toml (web.password_hash / web.token_hash)."""
    import getpass

    from streamwatch.config.passwords import hash_secret

    secret = sys.stdin.readline().rstrip("\n") if args.stdin else getpass.getpass("password or token: ")
    if len(secret) < 8:
        print("error: use at least 8 characters", file=sys.stderr)
        return 2
    print(hash_secret(secret))
    return 0


RUNTIME_COMMANDS = ("run", "serve", "check", "ask", "probe", "events", "labels", "hash-password", "release")


def build_parser(*, tools: bool = True) -> argparse.ArgumentParser:
    """The command line; `tools`: also `model ...` and `bench ...`, whose modules (demo/, bench/) the
    runtime commands never import."""
    parser = argparse.ArgumentParser(prog="streamwatch", description=__doc__)
    parser.add_argument("--version", action="version", version=f"streamwatch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the service")
    run.add_argument("-c", "--config", default="config.toml")
    run.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    run.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    run.add_argument("--shard", metavar="I/N", help="run only the cameras of shard I of N (default: config shard)")
    run.set_defaults(func=cmd_run)

    serve = sub.add_parser("serve", help="serve the model as an OpenAI-compatible API (batched across clients)")
    serve.add_argument("-c", "--config", default="config.toml")
    serve.add_argument("--host", help="bind address (default: serve.host)")
    serve.add_argument("--port", type=int, help="port (default: serve.port, 8000)")
    serve.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    serve.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("check", help="validate the config and the rules")
    check.add_argument("-c", "--config", default="config.toml")
    check.set_defaults(func=cmd_check)

    ask = sub.add_parser("ask", help="ask one question about an image, a video or a stream")
    ask.add_argument("source", help="image file, video file, image folder or rtsp/http URL")
    ask.add_argument("question")
    ask.add_argument("--kind", choices=["yes_no", "text"], default="yes_no")
    ask.add_argument("-c", "--config", default="config.toml", help="model settings come from here")
    ask.add_argument(
        "--model", help="hub id or local directory (overrides the config; the config's adapter is left out)"
    )
    ask.add_argument("--device", help="auto, cpu, cuda, cuda:N (with --model)")
    ask.add_argument("--max-new-tokens", type=int, default=32)
    ask.add_argument("--json", action="store_true", help="print one JSON object")
    ask.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    ask.set_defaults(func=cmd_ask)

    probe = sub.add_parser("probe", help="connect to cameras for a few seconds and report their status")
    probe.add_argument("urls", nargs="*", help="camera URLs or files (default: every camera in the config)")
    probe.add_argument("-c", "--config", default="config.toml")
    probe.add_argument("--seconds", type=float, default=8.0, help="how long to watch (default 8)")
    probe.add_argument("--json", action="store_true", help="print the status objects as JSON")
    probe.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    probe.set_defaults(func=cmd_probe)

    hashing = sub.add_parser("hash-password", help="hash a web password or API token for config.toml")
    hashing.add_argument("--stdin", action="store_true", help="read it from standard input instead of a prompt")
    hashing.set_defaults(func=cmd_hash_password)

    events = sub.add_parser(
        "events",
        help="alert event history: list (newest first), `show ID`, `mark ID --verdict V [--note N]`, `search TEXT`",
    )
    events.add_argument("action", nargs="*", metavar="show ID | mark ID | search TEXT", help="default: list")
    events.add_argument("--verdict", choices=[choice.value for choice in ReviewChoice], help="with mark")
    events.add_argument("--note", default=None, help="with mark")
    events.add_argument("-c", "--config", default="config.toml")
    events.add_argument("--camera")
    events.add_argument("--rule")
    events.add_argument("--kind", choices=[kind.value for kind in EventKind])
    events.add_argument("--severity", choices=[severity.value for severity in Severity])
    events.add_argument("--since", type=_since, help="e.g. 90m, 2h, 7d or 2026-11-21T08:00")
    events.add_argument("--limit", type=int, default=50)
    events.add_argument("--json", action="store_true")
    events.set_defaults(func=cmd_events)
    from streamwatch.cli.labels import add_labels_parser
    from streamwatch.learning.evaluation.command import add_eval_parser
    from streamwatch.learning.release.command import add_release_parser

    add_labels_parser(sub)
    add_eval_parser(sub)
    add_release_parser(sub)

    if tools:
        from streamwatch.learning.finetune.command import add_finetune_parser
        from streamwatch.tools.bench.commands import add_bench_parser
        from streamwatch.tools.demo.commands import add_demo_model_parsers

        model = sub.add_parser("model", help="fine-tuning from reviews; tiny test models, the demo model, demo clips")
        model_sub = model.add_subparsers(dest="model_command", required=True)
        add_finetune_parser(model_sub)
        add_demo_model_parsers(model_sub)
        add_bench_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from streamwatch.errors import StartupError
    from streamwatch.redact import SECRETS

    arguments = sys.argv[1:] if argv is None else argv
    args = build_parser(tools=not arguments or arguments[0] not in RUNTIME_COMMANDS).parse_args(arguments)
    for value in vars(args).values():  # URLs given on the command line may carry passwords
        for url in value if isinstance(value, list) else [value]:
            if isinstance(url, str) and "://" in url:
                SECRETS.add_url(url)
    try:
        code: int = args.func(args)
    except DataFileError as exc:  # config or rules: print every file:line problem, no traceback
        print("\n".join(exc.problems), file=sys.stderr)
        return 2
    except StartupError as exc:  # a database or model that cannot be opened, a port that is taken
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return code
