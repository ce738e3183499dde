"""`streamwatch bench finetune-recipes`: fine-tuning recipes compared on the same labels, per seed.

The learning-loop bench gathers its labels through the running service (minutes a seed); this one
takes the same boards (the same seed streams) and labels them the way that loop does, without the
service, so several recipes can be trained on identical examples:

- the base model scores every training board; one at or above the rule's threshold opens an alert,
  which the operator reviews (a "review" example, by the board's truth);
- a label request is kept where the score is within `[labels] band` of the threshold, for a share
  `sample_no` of the other "no" answers and a share `sample_yes` of the other "yes" answers (one seeded
  draw per board); the operator answers it by the board's truth (a "label" example);
- `streamwatch model finetune`'s own split (a hash of `--seed` 0 and each example's id) keeps a quarter
  of them out of training; its threshold rule, on that quarter, picks the adapter's threshold.

Each recipe trains on the identical training part; reported per seed and recipe: false alerts on the
good held-out boards and recall on the bridged ones at the suggested threshold (the rule's own where
none is suggested), and over the seeds the mean and the worst case.
"""

from __future__ import annotations

import functools
import multiprocessing
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import mean
from typing import Any

from PIL import Image

from streamwatch.learning.finetune.settings import LoraSettings
from streamwatch.reports import markdown_table, write_report
from streamwatch.tools.bench.learning_loop import HELD_OUT_STREAM, TRAINING_STREAM, _now_iso, _rng, _say
from streamwatch.tools.bench.loop_site import CAMERA, RULE, Board, LabelSettings, Site, make_boards
from streamwatch.tools.bench.report import machine

RECIPES: dict[str, dict[str, Any]] = {
    "200 plain": {"steps": 200, "augment": False},
    "200 jittered": {"steps": 200, "augment": True},
    "400 plain": {"steps": 400, "augment": False},
    "400 jittered": {"steps": 400, "augment": True},
}
HOLDOUT, SPLIT_SEED = 0.25, 0  # as `streamwatch model finetune` splits by default


@dataclass(frozen=True)
class RecipesConfig:
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    train_good: int = 300
    train_bridged: int = 150
    held_good: int = 400
    held_bridged: int = 200
    recipes: dict[str, dict[str, Any]] = field(default_factory=lambda: dict(RECIPES))
    labels: LabelSettings = field(default_factory=LabelSettings)
    band: float = 0.15  # [labels] band, as shipped
    device: str = "auto"
    parallel: int = 1  # seeds at once, each in its own process
    repo: Path = Path(".")
    out_dir: Path = Path("bench")
    name: str = "finetune-recipes"


def run_bench(config: RecipesConfig, progress: Callable[[str], None] = print) -> list[Path]:
    started = time.monotonic()
    if config.parallel > 1:
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(config.parallel, len(config.seeds)), mp_context=spawn) as pool:
            said = [functools.partial(_say, "") for _ in config.seeds]
            runs = list(pool.map(run_seed, [config] * len(config.seeds), config.seeds, said))
    else:
        runs = [run_seed(config, seed, progress) for seed in config.seeds]
    data = {
        "machine": machine() | {"gpu": _gpu(config.device)},
        "date": _now_iso()[:16] + "Z",
        "config": {k: str(v) for k, v in asdict(config).items() if k not in ("labels", "recipes")},
        "labels": asdict(config.labels) | {"band": config.band},
        "recipes": config.recipes,
        "runs": runs,
        "summary": summary(runs, list(config.recipes)),
        "minutes": round((time.monotonic() - started) / 60, 1),
    }
    return write_report(config.out_dir, config.name, data, markdown(data))


def _gpu(device: str) -> str | None:
    import torch

    return torch.cuda.get_device_name() if device != "cpu" and torch.cuda.is_available() else None


def run_seed(config: RecipesConfig, seed: int, progress: Callable[[str], None]) -> dict[str, Any]:
    from streamwatch.config import load_settings
    from streamwatch.learning.evaluation.thresholds import suggest
    from streamwatch.learning.finetune.command import _train
    from streamwatch.learning.finetune.data import held_out, training_examples
    from streamwatch.rules.loader import load_rules

    repo = config.repo.resolve()
    held = make_boards("held", config.held_good, config.held_bridged, _rng(HELD_OUT_STREAM, seed), repo)
    train = make_boards("train", config.train_good, config.train_bridged, _rng(TRAINING_STREAM, seed), repo)
    with tempfile.TemporaryDirectory(prefix="streamwatch-recipes-") as folder:
        work = Path(folder)
        Site(work, repo, 1.0, config.labels, None, config.device).write()
        config_file = work / "config.toml"  # the site's, without its (identity) adapter slot
        config_file.write_text(config_file.read_text().replace('adapter = "adapters/current"\n', ""))
        settings = load_settings(config_file)
        rules = {rule.id: rule for rule in load_rules(settings.path(settings.rules_dir), settings.cameras).rules}
        scorer = _Scorer(rules, {camera.id: camera for camera in settings.cameras})
        threshold = rules[RULE].threshold
        base_train = scorer.score(settings, train)
        base_held = scorer.score(settings, held)
        labelled = gathered(train, base_train, threshold, config, seed)
        hold = [e for e in labelled if held_out(e, HOLDOUT, SPLIT_SEED)]
        training = training_examples(
            labelled,
            rules,
            scorer.cameras,
            fraction=HOLDOUT,
            seed=SPLIT_SEED,
            max_image_side=settings.model.max_image_side,
            limit=100_000,
            skipped=Counter(),
        )
        run: dict[str, Any] = {
            "seed": seed,
            "labelled": {"reviews": sum(e.source == "review" for e in labelled), "labels": len(labelled)},
            "training": {"examples": len(training), "yes": sum(e.answer == "yes" for e in training)},
            "base": figures(held, base_held, threshold) | {"threshold": threshold},
            "recipes": {},
        }
        progress(f"seed {seed}: {len(training)} training examples; base {_line(run['base'])}")
        for name, recipe in config.recipes.items():
            began = time.monotonic()
            lora = LoraSettings(**recipe, max_image_side=settings.model.max_image_side)
            adapter = work / "adapters" / name.replace(" ", "-")
            _train(settings, training, lora, config.device, adapter)
            adapted = settings.model_copy(update={"model": settings.model.model_copy(update={"adapter": str(adapter)})})
            scores = scorer.score(adapted, held, hold)
            on_held, on_hold = scores[: len(held)], scores[len(held) :]
            suggestion = suggest(on_hold, [e.truth for e in hold], threshold)
            chosen = threshold if suggestion.threshold is None else suggestion.threshold
            run["recipes"][name] = figures(held, on_held, chosen) | {
                "threshold": chosen,
                "seconds": round(time.monotonic() - began, 1),
            }
            progress(f"seed {seed}, {name}: {_line(run['recipes'][name])}")
    return run


class _Scorer:
    """P(yes) of the rule, asked as the service asks it, for boards or labelled examples."""

    def __init__(self, rules: dict[str, Any], cameras: dict[str, Any]) -> None:
        self.rules, self.cameras = rules, cameras

    def score(self, settings: Any, boards: Sequence[Board], extra: Sequence[Any] = ()) -> list[float]:
        from streamwatch.inference.build import load_backend
        from streamwatch.learning.evaluation.replay import prepare

        examples = [as_example(board, "board") for board in boards] + list(extra)
        backend = load_backend(settings)
        try:
            scores: list[float] = []
            for start in range(0, len(examples), 32):
                prompts = []
                for example in examples[start : start + 32]:
                    prepared = prepare(example, self.rules, self.cameras)
                    assert not isinstance(prepared, str), prepared
                    prompts.append(prepared[2])
                scores += [answer.p_yes for answer in backend.score_yes_no(prompts)]
            return scores
        finally:
            backend.close()


def as_example(board: Board, source: str) -> Any:
    from streamwatch.learning.evaluation.examples import Example

    return Example(CAMERA, RULE, bool(board.bridged), source, board.key, Image.fromarray(board.image))


def gathered(
    train: Sequence[Board], scores: Sequence[float], threshold: float, config: RecipesConfig, seed: int
) -> list[Any]:
    """The examples the learning loop's operator would give: every alert reviewed, the label requests
    the `[labels]` settings keep answered (module note)."""
    from streamwatch.learning.labels import distance, half_band

    draw = random.Random(seed)
    found = []
    for board, p in zip(train, scores, strict=True):
        if p >= threshold:
            found.append(as_example(board, "review"))
        chance = draw.random()
        uncertain = abs(distance(p, threshold)) <= half_band(config.band) + 1e-9
        sampled = chance < (config.labels.sample_yes if p >= threshold else config.labels.sample_no)
        if uncertain or sampled:
            found.append(as_example(board, "label"))
    return found


def figures(boards: Sequence[Board], scores: Sequence[float], threshold: float) -> dict[str, Any]:
    said = [p >= threshold for p in scores]
    good = [s for s, b in zip(said, boards, strict=True) if not b.bridged]
    bridged = [s for s, b in zip(said, boards, strict=True) if b.bridged]
    return {
        "false_alerts": sum(good),
        "good": len(good),
        "false_alert_rate": round(sum(good) / len(good), 4),
        "alerted_bridged": sum(bridged),
        "bridged": len(bridged),
        "recall": round(sum(bridged) / len(bridged), 4),
    }


def summary(runs: Sequence[dict[str, Any]], recipes: Sequence[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name in ["base", *recipes]:
        rows = [run["base"] if name == "base" else run["recipes"][name] for run in runs]
        found[name] = {
            "false_alert_rate_mean": round(mean(r["false_alert_rate"] for r in rows), 4),
            "false_alert_rate_worst": max(r["false_alert_rate"] for r in rows),
            "recall_mean": round(mean(r["recall"] for r in rows), 4),
            "recall_worst": min(r["recall"] for r in rows),
        }
    return found


def _line(row: dict[str, Any]) -> str:
    return (
        f"false alerts {row['false_alerts']}/{row['good']} ({row['false_alert_rate']:.2%}), "
        f"recall {row['alerted_bridged']}/{row['bridged']} ({row['recall']:.2%}) at {row['threshold']:g}"
    )


def markdown(data: dict[str, Any]) -> str:
    where = data["machine"]
    config, labels = data["config"], data["labels"]
    lines = [
        "# Fine-tuning recipes on the same labels, over seeds",
        "",
        f"{where.get('gpu') or where['cpu'] + ' (CPU only)'}, {where['cores']} cores, {data['date']}. "
        f"`streamwatch bench finetune-recipes` ({data['minutes']} min). Boards as the learning-loop bench draws "
        "them (training from `SeedSequence([1, seed])`, held-out from `SeedSequence([2, seed])`): "
        f"{config['train_good']} + {config['train_bridged']} "
        f"training and {config['held_good']} + {config['held_bridged']} held-out boards (good + bridged). Labels "
        f"as that loop gathers them, without the service: every board the base model alerts on reviewed, "
        f"label requests within the band {labels['band']} of the threshold, for {labels['sample_no']:g} of the "
        f"other no and {labels['sample_yes']:g} of the other yes answers, answered by truth; the fine-tune's "
        "own split holds a quarter out, whose suggested threshold each adapter is measured at.",
        "",
    ]
    recipes = list(data["recipes"])
    columns = [("seed", "seed"), ("training", "training examples (yes)"), ("base", "base")]
    columns += [(name, name) for name in recipes]
    rows = [
        {"seed": str(run["seed"]), "training": f"{run['training']['examples']} ({run['training']['yes']})"}
        | {"base": _cell(run["base"])}
        | {name: _cell(run["recipes"][name]) for name in recipes}
        for run in data["runs"]
    ]
    lines += [markdown_table(rows, columns), ""]
    lines.append("Over the seeds (false alerts on good boards, recall on bridged boards):")
    lines.append("")
    for name, row in data["summary"].items():
        lines.append(
            f"- {name}: false alerts {row['false_alert_rate_mean']:.2%} mean, {row['false_alert_rate_worst']:.2%} "
            f"worst; recall {row['recall_mean']:.2%} mean, {row['recall_worst']:.2%} worst"
        )
    lines += ["", "Each cell: false alerts on good boards / recall on bridged boards, at the threshold in brackets."]
    return "\n".join(lines)


def _cell(row: dict[str, Any]) -> str:
    return f"{row['false_alert_rate']:.2%} / {row['recall']:.2%} ({row['threshold']:g})"
