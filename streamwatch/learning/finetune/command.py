"""`streamwatch model finetune --from-reviews OUT`: a LoRA adapter trained on the labelled examples
(reviewed events, answered label requests, labelled clips), measured before and after on a held-out
part, written with its report. The service loads it with `model.adapter = "OUT"`, without a restart
when that is already the adapter it watches."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamwatch.errors import FinetuneError
from streamwatch.learning.finetune.settings import LoraSettings

if TYPE_CHECKING:  # the command line builds this parser for every command: nothing heavy at import
    from streamwatch.config import Settings
    from streamwatch.learning.evaluation.examples import Example

log = logging.getLogger(__name__)

MIN_TRAINING = 8  # fewer labelled examples teach nothing but noise
NAME = "finetune"


def cmd_finetune(args: argparse.Namespace) -> int:
    from streamwatch.errors import DataFileError
    from streamwatch.logs import setup_logging

    setup_logging(args.log_level)
    try:
        return finetune(args)
    except (FinetuneError, DataFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def finetune(args: argparse.Namespace) -> int:
    from streamwatch.config import load_settings
    from streamwatch.learning.evaluation.command import Candidate
    from streamwatch.learning.evaluation.examples import TRAINED, all_examples
    from streamwatch.learning.evaluation.manifest import load_manifest
    from streamwatch.learning.evaluation.report import summarise, write
    from streamwatch.learning.finetune.data import held_out_only, training_examples
    from streamwatch.rules.loader import load_rules
    from streamwatch.store.db import open_database

    for name in ("steps", "batch", "rank", "max_examples"):
        if getattr(args, name) < 1:
            raise FinetuneError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be at least 1")
    if not args.lr > 0:
        raise FinetuneError(f"--lr {args.lr}: must be above 0")
    if not 0 < args.holdout < 1:
        raise FinetuneError(f"--holdout {args.holdout}: give the held-out share as a number between 0 and 1")
    if not args.from_reviews and not args.clips:
        raise FinetuneError("say where the labelled examples come from: --from-reviews, --clips MANIFEST, or both")
    settings = load_settings(args.config)
    if settings.model.backend != "transformers":
        raise FinetuneError('fine-tuning trains a local model: it needs model.backend = "transformers"')
    out = Path(os.path.abspath(args.out))
    if out.exists() and any(out.iterdir()) and not args.force:
        raise FinetuneError(f"{out} exists and is not empty (--force: write over it)")
    clips = [load_manifest(Path(path)) for path in args.clips]
    rules_dir = settings.path(settings.rules_dir)
    rules = {rule.id: rule for rule in load_rules(rules_dir, settings.cameras).rules}
    cameras = {camera.id: camera for camera in settings.cameras}
    database = open_database(settings) if args.from_reviews else None
    notes: list[str] = []
    lora = LoraSettings(
        steps=args.steps,
        batch=args.batch,
        lr=args.lr,
        rank=args.rank,
        seed=args.seed,
        max_image_side=settings.model.max_image_side,
        augment=args.augment,
    )

    skipped: Counter[str] = Counter()
    keys: list[str] = []
    training = training_examples(
        all_examples(settings, database, clips, notes, rules),
        rules,
        cameras,
        fraction=args.holdout,
        seed=args.seed,
        max_image_side=settings.model.max_image_side,
        limit=args.max_examples,
        skipped=skipped,
        keys=keys,
    )
    skipped.update(notes)
    if len(training) < MIN_TRAINING:
        why = f" (left out: {dict(skipped)})" if skipped else ""
        raise FinetuneError(
            f"{len(training)} usable training examples, at least {MIN_TRAINING} are needed{why}: review alerts "
            "(Confirmed / False positive), answer label requests, or give labelled clips with --clips"
        )

    def held_out() -> Iterator[Example]:
        notes.clear()
        return held_out_only(all_examples(settings, database, clips, notes, rules), args.holdout, args.seed)

    base = settings.model_copy(update={"model": settings.model.model_copy(update={"adapter": None})})
    held_skipped: Counter[str] = Counter()
    before = _replay(base, rules, cameras, held_out(), held_skipped)
    if not before:
        raise FinetuneError(
            f"no usable held-out example (--holdout {args.holdout:g} of {len(training)} + held-out ones; "
            f"left out: {dict(held_skipped)}): label more, or raise --holdout"
        )
    history = _train(settings, training, lora, args.device, out)
    (out / TRAINED).write_text(json.dumps({"examples": sorted(keys)}) + "\n", encoding="utf-8")  # the gate skips them
    adapted = base.model_copy(update={"model": base.model.model_copy(update={"adapter": str(out)})})
    after = _replay(adapted, rules, cameras, held_out(), Counter())
    held_skipped.update(notes)
    results = [
        (Candidate(settings.model.id, rules_dir, None), before, held_skipped),
        (Candidate(settings.model.id, rules_dir, str(out)), after, held_skipped),
    ]
    per_rule = Counter(example.rule for example in training)
    extra = {
        "training": {
            "examples": len(training),
            "per_rule": dict(per_rule),
            "left_out": dict(skipped),
            "holdout": args.holdout,
            "settings": dataclasses.asdict(lora) | {"alpha": lora.alpha},
            "loss": history,
        }
    }
    left_out = ", ".join(f"{n} {why}" for why, n in sorted(skipped.items())) or "none"
    lines = [
        f"Fine-tuned: a LoRA adapter (rank {lora.rank}) on {len(training)} labelled examples "
        f"({', '.join(f'{n} {rule}' for rule, n in sorted(per_rule.items()))}), {lora.steps} steps of "
        f"{lora.batch}{', each draw jittered' if lora.augment else ''}, seed {lora.seed}; "
        f"loss {history[0][1]:.3f} at step {history[0][0]} -> "
        f"{history[-1][1]:.3f} at step {history[-1][0]}.",
        f"Left out of training: {left_out}.",
        f"Measured on the held-out part ({args.holdout:g} of the examples, never trained on): A is the model "
        "without the adapter, B with it (what the held-out part left out is listed under each).",
    ]
    candidates = summarise(results, None)
    for path in write(out, NAME, candidates, None, extra, lines):
        print(f"wrote {path}")
    for row in candidates[1]["rows"]:  # an adapter moves the scores: its own threshold goes with it
        shown = {key: "-" if row[key] is None else row[key] for key in row}
        suggestion = (
            f"suggested threshold {shown['suggested_threshold']} (held-out precision {shown['suggested_precision']}, "
            f"recall {shown['suggested_recall']})"
            if row["suggested_threshold"] is not None
            else f"no threshold suggested ({row['suggested_why'] or 'the held-out part cannot separate yes from no'})"
        )
        print(
            f"with the adapter, {row['rule']} on {row['camera']}: F1 {shown['f1']} at threshold "
            f"{shown['threshold']}; {suggestion}"
        )
    print(f'adapter in {out}: set model.adapter = "{out}" (a running service watching it loads it)')
    return 0


def _replay(settings: Settings, rules: Any, cameras: Any, examples: Any, skipped: Counter[str]) -> Any:
    from streamwatch.inference.build import load_backend
    from streamwatch.learning.evaluation.replay import replay

    backend = load_backend(settings)
    try:
        return replay(backend, rules, cameras, examples, skipped)
    finally:
        backend.close()


PROGRESS_EVERY_S = 30.0


def _train(settings: Settings, training: list[Any], lora: LoraSettings, device: str, out: Path) -> list[Any]:
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForImageTextToText

    from streamwatch.inference.backends.transformers import resolve_device
    from streamwatch.learning.finetune.lora import add_lora, save_adapter, train_lora
    from streamwatch.vlm.processor import load_processor, pad_left

    ref = settings.model_ref()
    on = resolve_device(device)
    processor = load_processor(ref)
    pad_left(processor.tokenizer)  # the answer ends every row (demo/train.encode), as the backend asks
    model = AutoModelForImageTextToText.from_pretrained(ref, dtype=torch.float32).to(on)
    peft_model = add_lora(model, lora)
    print(f"training a LoRA adapter on {len(training)} examples on {on}", file=sys.stderr)
    lines = not sys.stderr.isatty()  # a job's log, a pipe: a line at most every PROGRESS_EVERY_S, not a bar
    said = [-PROGRESS_EVERY_S]
    with tqdm(total=lora.steps, unit="step", file=sys.stderr, disable=True if lines else None) as bar:

        def progress(step: int, loss: float, seconds: float) -> None:
            bar.update(step - bar.n)
            bar.set_postfix(loss=f"{loss:.4f}")
            if lines and (seconds - said[0] >= PROGRESS_EVERY_S or step == lora.steps):
                said[0] = seconds
                print(f"step {step} of {lora.steps}, loss {loss:.4f}, {seconds:.0f} s", file=sys.stderr, flush=True)

        history = train_lora(peft_model, processor, training, lora, progress)
    out.mkdir(parents=True, exist_ok=True)
    save_adapter(peft_model, out)
    return history


def add_finetune_parser(model_sub: Any) -> None:
    parser = model_sub.add_parser(
        "finetune", help="train a LoRA adapter on the labelled examples; report before/after on a held-out part"
    )
    parser.add_argument("out", metavar="OUT", help="folder for the adapter and its report")
    parser.add_argument("-c", "--config", default="config.toml")
    parser.add_argument(
        "--from-reviews", action="store_true", help="reviewed events and answered label requests of the database"
    )
    parser.add_argument("--clips", nargs="*", default=[], metavar="MANIFEST", help="labelled clips (TOML manifests)")
    parser.add_argument("--holdout", type=float, default=0.25, help="share of the examples held out (default 0.25)")
    default = LoraSettings()
    parser.add_argument("--steps", type=int, default=default.steps)
    parser.add_argument("--batch", type=int, default=default.batch)
    parser.add_argument("--lr", type=float, default=default.lr)
    parser.add_argument("--rank", type=int, default=default.rank, help="LoRA rank")
    parser.add_argument("--seed", type=int, default=default.seed)
    parser.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=default.augment,
        help="jitter each draw of a picture: a few per cent of shift and scale, a mirror image, light (default on)",
    )
    parser.add_argument("--max-examples", type=int, default=5000, help="training examples kept in memory at most")
    parser.add_argument("--device", default="auto", help="auto (CUDA where there is one), cpu, cuda, cuda:N")
    parser.add_argument("--force", action="store_true", help="write over OUT's files")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], default="WARNING")
    parser.set_defaults(func=cmd_finetune)
