"""`streamwatch model make-tiny | train-demo | evaluate-demo | demo-clips`: models and clips for tests and
the offline demo."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamwatch.tools.demo.evaluate import Evaluation

# What a trained demo model must reach on every yes/no rule whose answer varies in the scenes.
ACCURACY_BAR = 0.95


def cmd_make_tiny(args: argparse.Namespace) -> int:
    from streamwatch.tools.tiny import make_tiny

    out = Path(args.directory)
    if (out / "config.json").exists() and not args.force:
        print(f"{out} already holds a model; use --force to rebuild it")
        return 0
    make_tiny(out, args.family, seed=args.seed)
    print(f"wrote a tiny {args.family} model with random weights to {out} (its answers are meaningless)")
    return 0


def cmd_train_demo(args: argparse.Namespace) -> int:
    import torch

    from streamwatch.tools.demo.build import DemoRecipe, train_demo

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    out, rules = Path(args.directory), Path(args.rules)
    if (out / "model.safetensors").exists() and not args.force:
        print(f"error: {out} already holds a model; use --force to replace it", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    out.mkdir(parents=True, exist_ok=True)
    default = DemoRecipe()
    recipe = replace(
        default,
        scenes=args.scenes or default.scenes,
        workers=args.workers or default.workers,
        seed=args.seed,
        vision=replace(default.vision, steps=args.vision_steps or default.vision.steps, seed=args.seed),
        answers=replace(default.answers, steps=args.steps or default.answers.steps, seed=args.seed),
    )
    evaluation = train_demo(
        out, rules, recipe, per_answer=args.per_answer, device=args.device, progress=lambda s: print(s, flush=True)
    )
    return _verdict(evaluation, out / "REPORT.md")


def cmd_evaluate_demo(args: argparse.Namespace) -> int:
    from streamwatch.tools.demo.build import HELD_OUT_SEED, evaluate_model
    from streamwatch.tools.demo.evaluate import report

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    model = Path(args.directory)
    if not (model / "config.json").is_file():
        print(f"error: {model}: no model here (config.json missing)", file=sys.stderr)
        return 2
    seed = HELD_OUT_SEED if args.seed is None else args.seed
    evaluation = evaluate_model(model, Path(args.rules), per_answer=args.per_answer, seed=seed)
    notes = [
        f"Model {model}; {args.per_answer} scenes per answer of each rule, seed {seed}"
        f"{' (the report seed)' if seed == HELD_OUT_SEED else ''}."
    ]
    print(report(evaluation, title="Demo model: held-out evaluation", notes=notes))
    return _verdict(evaluation, None)


def _verdict(evaluation: Evaluation, path: Path | None) -> int:
    below = [r for r in evaluation.rules if r.kind == "yes_no" and r.varies and r.accuracy < ACCURACY_BAR]
    yes_no = [r.accuracy for r in evaluation.rules if r.kind == "yes_no" and r.varies]
    print(
        f"yes/no rules: lowest accuracy {min(yes_no):.1%}; calibration error {evaluation.calibration_error:.3f}"
        + (f"; report: {path}" if path else "")
    )
    for r in below:
        print(f"below {ACCURACY_BAR:.0%}: {r.rule} {r.accuracy:.1%}", file=sys.stderr)
    return 1 if below else 0


def cmd_demo_clips(args: argparse.Namespace) -> int:
    from streamwatch.tools.demo.clips import write_demo_clips

    for path in write_demo_clips(Path(args.directory)):
        print(f"wrote {path} ({path.stat().st_size // 1024} kB)")
    return 0


def add_demo_model_parsers(model_sub: Any) -> None:
    """The demo's `model` subcommands: tiny test models, the trained demo model, the demo clips."""
    tiny = model_sub.add_parser("make-tiny", help="build a tiny random-weight model of a real architecture")
    tiny.add_argument("directory")
    tiny.add_argument("--family", choices=["glm4v", "qwen2_vl"], default="glm4v")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--force", action="store_true")
    tiny.set_defaults(func=cmd_make_tiny)

    train = model_sub.add_parser("train-demo", help="train the offline demo model on synthetic scenes (CPU)")
    train.add_argument("directory", help="where to write the model and its REPORT.md")
    train.add_argument("--rules", default="rules", help="rules folder whose questions to learn (default: rules)")
    train.add_argument("--scenes", type=int, help="generated training scenes (default: the recipe's)")
    train.add_argument("--workers", type=int, help="processes drawing the scenes (default: the recipe's)")
    train.add_argument("--vision-steps", type=int, help="stage 1 (vision) steps (default: the recipe's)")
    train.add_argument("--steps", type=int, help="stage 2 (answers) steps (default: the recipe's)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's choice)")
    train.add_argument("--device", default="cpu", help="where to train: cpu (the shipped model), cuda, cuda:N")
    train.add_argument("--per-answer", type=int, default=100, help="held-out scenes per answer of each rule")
    train.add_argument("--force", action="store_true")
    train.set_defaults(func=cmd_train_demo)

    evaluate = model_sub.add_parser("evaluate-demo", help="accuracy and reliability of a model on held-out scenes")
    evaluate.add_argument("directory")
    evaluate.add_argument("--rules", default="rules")
    evaluate.add_argument("--per-answer", type=int, default=100)
    evaluate.add_argument("--seed", type=int, default=None, help="held-out seed (default: the one REPORT.md used)")
    evaluate.set_defaults(func=cmd_evaluate_demo)

    clips = model_sub.add_parser("demo-clips", help="write the demo cameras' clips (yard, aisle, line)")
    clips.add_argument("directory")
    clips.set_defaults(func=cmd_demo_clips)
