"""`streamwatch bench learning-loop`: the learning loop end to end on the shipped demo model, whose known
weakness is calling a few per cent of good boards "solder bridge".

A scripted operator does what an operator does, only through the service's public interfaces:

1. `streamwatch run` watches an inspection camera (an image folder: each board shown for two samples,
   then the empty belt for two) with the shipped solder-bridge rule, a label queue and a LoRA adapter
   slot (model.adapter, at first an adapter that changes nothing).
2. A held-out set of boards (never reviewed, never trained on) passes the camera: the alerts it opens
   are the "before" figures.
3. Training boards pass; the operator reviews every alert (Confirmed / False positive) and answers
   every label request (yes / no) through the REST API, by the truth of the board in the picture
   (recognised by comparing the picture with the boards the script generated).
4. `streamwatch eval` measures the rule on those labels; its suggested threshold is written into the
   rule file (the service reloads it).
5. `streamwatch model finetune --from-reviews` trains an adapter on the same labels; its files are
   copied over the watched adapter slot, and the service swaps it in without a restart; the threshold
   its report suggests for the adapted model (on the labels it held out) goes into the rule file.
6. The held-out boards pass again: the "after" figures.

A board counts as alerted when an alert opened on it (each board is followed by the empty belt, so
every alert opens on one board). Reported: the false-alert rate on good boards and the recall on
bridged boards, before and after, with the threshold, the labels, the training and the reload.
"""

from __future__ import annotations

import contextlib
import functools
import json
import multiprocessing
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from streamwatch.learning.finetune.settings import LoraSettings
from streamwatch.reports import write_report
from streamwatch.tools.bench.loop_report import markdown, summary
from streamwatch.tools.bench.loop_site import (
    CAMERA,
    RULE,
    TAIL,
    Board,
    LabelSettings,
    Operator,
    Site,
    belt,
    make_boards,
)
from streamwatch.tools.bench.report import machine

TRAINING_STREAM, HELD_OUT_STREAM = 1, 2  # numpy SeedSequence([stream, seed]); the demo model trained on seed 0
ALSO_RULE = "foreign-object"  # the unjudged run's second live rule, which the operator never labels


@dataclass(frozen=True)
class LoopConfig:
    train_good: int = 300
    train_bridged: int = 150
    held_good: int = 400
    held_bridged: int = 200
    interval_s: float = 0.15  # the camera's sample interval: one image shown per interval
    board_frames: int = 2  # images a board is shown for (then the empty belt as many)
    steps: int = LoraSettings().steps  # fine-tuning steps
    seeds: tuple[int, ...] = (0,)
    unjudged_seed: int | None = None  # also a run with ALSO_RULE live and unlabelled: the gate must refuse
    labels: LabelSettings = field(default_factory=LabelSettings)
    repo: Path = Path(".")
    out_dir: Path = Path("bench")
    name: str = "learning-loop"
    work_dir: Path | None = None  # default: a temporary folder, removed afterwards
    device: str = "cpu"  # the service's model.device (the fine-tune takes the same)
    parallel: int = 1  # seeds run at once, each in its own process with its own service


@dataclass
class Phase:
    """One pass of boards and the alerts the service opened on them."""

    name: str
    good: int
    bridged: int
    alerted_good: int = 0
    alerted_bridged: int = 0
    alerts_on_belt: int = 0
    also_alerted_good: int | None = None  # ALSO_RULE's alerts on good boards (the unjudged run)
    shown: int = 0  # images the camera showed in the pass
    sampled: int = 0  # of them, how many the service answered (a slow service skips some)
    seconds: float = 0.0

    @property
    def false_alert_rate(self) -> float:
        return self.alerted_good / self.good if self.good else 0.0

    @property
    def recall(self) -> float:
        return self.alerted_bridged / self.bridged if self.bridged else 0.0


def run_bench(config: LoopConfig, progress: Callable[[str], None] = print) -> list[Path]:
    runs = []
    plan: list[tuple[int, str | None]] = [(seed, None) for seed in config.seeds]
    if config.unjudged_seed is not None:
        plan.append((config.unjudged_seed, ALSO_RULE))
    started = time.monotonic()
    with _work_dir(config) as work:
        folders = [work / (f"seed-{seed}" + ("-unjudged" if also else "")) for seed, also in plan]
        if config.parallel > 1:
            spawn = multiprocessing.get_context("spawn")  # no threads or torch state forked
            with ProcessPoolExecutor(min(config.parallel, len(plan)), mp_context=spawn) as pool:
                said = [functools.partial(_say, f"seed {seed}{' (unjudged)' if also else ''}: ") for seed, also in plan]
                seeds, alsos = [seed for seed, _ in plan], [also for _, also in plan]
                runs = list(pool.map(run_loop, [config] * len(plan), seeds, alsos, folders, said))
        else:
            for (seed, also), folder in zip(plan, folders, strict=True):
                progress(f"seed {seed}{' with ' + also + ' live and unlabelled' if also else ''}")
                runs.append(run_loop(config, seed, also, folder, progress))
    data = {
        "machine": machine(),
        "date": _now_iso()[:16] + "Z",
        "config": {k: str(v) for k, v in asdict(config).items() if k != "labels"},
        "labels": asdict(config.labels),
        "streams": {"training": TRAINING_STREAM, "held_out": HELD_OUT_STREAM},
        "runs": runs,
        "summary": summary([run for run in runs if run["also_rule"] is None]),
        "minutes": round((time.monotonic() - started) / 60, 1),
    }
    return write_report(config.out_dir, config.name, data, markdown(data))


def _say(prefix: str, line: str) -> None:
    print(prefix + line, flush=True)


@contextlib.contextmanager
def _work_dir(config: LoopConfig) -> Iterator[Path]:
    if config.work_dir is not None:
        config.work_dir.mkdir(parents=True, exist_ok=True)
        yield config.work_dir
        return
    with tempfile.TemporaryDirectory(prefix="streamwatch-loop-") as folder:
        yield Path(folder)


def run_loop(
    config: LoopConfig, seed: int, also_rule: str | None, work: Path, progress: Callable[[str], None]
) -> dict[str, Any]:
    """One seed: held-out and training boards from their own seed streams, the loop through the gate."""
    repo = config.repo.resolve()
    held = make_boards("held", config.held_good, config.held_bridged, _rng(HELD_OUT_STREAM, seed), repo)
    train = make_boards("train", config.train_good, config.train_bridged, _rng(TRAINING_STREAM, seed), repo)
    work.mkdir(parents=True, exist_ok=True)
    site = Site(work, repo, config.interval_s, config.labels, also_rule, config.device)
    site.write()
    site.write_pass("held", held, shown=config.board_frames)
    site.write_pass("train", train, shown=config.board_frames)
    started = time.monotonic()
    site.start()
    operator = Operator(site.port, [*held, *train, belt()])
    gates: dict[str, Any] = {}
    forced = None
    try:
        site.wait(operator.ready, 300, "the service to be ready")
        progress(f"service ready in {time.monotonic() - started:.0f} s")
        before = stream(site, operator, "held", held, progress, also_rule)
        stream(site, operator, "train", train, progress, also_rule)
        reviewed, labelled = review(operator, {board.key for board in held})
        progress(f"reviewed {sum(reviewed.values())} alerts {reviewed}, labelled {labelled}")
        site.cli("eval", "--out", str(work / "eval"))
        row = _row(json.loads((work / "eval" / "eval.json").read_text())["candidates"][0])
        threshold = row["threshold"]
        if row["suggested_threshold"] not in (None, threshold):
            gates["threshold"] = release(
                site, work / "gate-threshold", "--threshold", f"{RULE}={row['suggested_threshold']}"
            )
            threshold = row["suggested_threshold"] if gates["threshold"]["live"] else threshold
        wait_threshold(site, operator, threshold)
        progress(
            f"eval: F1 {row['f1']} at {row['threshold']}; suggested {row['suggested_threshold']}, live {threshold}"
        )
        tuned = time.monotonic()
        site.cli(
            "model",
            "finetune",
            str(work / "adapters" / "v1"),
            "--from-reviews",
            "--steps",
            str(config.steps),
            "--device",
            config.device,
        )
        finetune_s = time.monotonic() - tuned
        report = json.loads((work / "adapters" / "v1" / "finetune.json").read_text())
        tuned_row = _row(report["candidates"][1])
        adapted = tuned_row["suggested_threshold"] if tuned_row["suggested_threshold"] is not None else threshold
        args = ["--adapter", str(work / "adapters" / "v1")]
        args += ["--threshold", f"{RULE}={adapted}"] if adapted != threshold else []
        gates["adapter"] = release(site, work / "gate-adapter", *args)
        if gates["adapter"]["live"]:
            site.wait(lambda: operator.model()["reloads"] >= 1, 300, "the adapter to be swapped in")
            threshold = adapted
        wait_threshold(site, operator, threshold)
        progress(f"fine-tuned in {finetune_s:.0f} s; the gate {gates['adapter']['outcome']} the adapter")
        after = stream(site, operator, "held", held, progress, also_rule)
        if also_rule is not None and not gates["adapter"]["live"]:  # what the refusal kept from happening
            gates["forced"] = release(site, work / "gate-forced", *args, "--override", "bench: what it would do")
            site.wait(lambda: operator.model()["reloads"] >= 1, 300, "the forced adapter to be swapped in")
            wait_threshold(site, operator, adapted)
            forced = stream(site, operator, "held", held, progress, also_rule)
        model = operator.model()
    finally:
        operator.close()
        site.stop()
    return {
        "seed": seed,
        "also_rule": also_rule,
        "phases": {"before": _phase(before), "after": _phase(after)} | ({"forced": _phase(forced)} if forced else {}),
        "reviewed": reviewed,
        "labelled": labelled,
        "eval": {key: row[key] for key in ("n", "positives", "threshold", "precision", "recall", "f1")}
        | {"suggested_threshold": row["suggested_threshold"], "suggested_why": row.get("suggested_why")},
        "finetune": {
            "suggested_threshold": tuned_row["suggested_threshold"],
            "suggested_why": tuned_row.get("suggested_why"),
            "seconds": round(finetune_s, 1),
            "examples": report["training"]["examples"],
            "loss": report["training"]["loss"],
        },
        "gates": gates,
        "live_threshold": threshold,
        "reloads": model["reloads"],
        "minutes": round((time.monotonic() - started) / 60, 1),
    }


def _rng(stream: int, seed: int) -> np.random.Generator:
    return np.random.default_rng([stream, seed])


def release(site: Site, out: Path, *args: str) -> dict[str, Any]:
    """`streamwatch release apply ARGS` as the operator: the gate's outcome and its refusals."""
    result = site.cli("release", "apply", *args, "--by", "bench operator", "--out", str(out), refused_ok=True)
    gate = json.loads((out / "gate.json").read_text())
    unseen = any("was trained on it" in note for note in gate["notes"])
    return {"live": result.returncode == 0, "outcome": gate["outcome"], "refusals": gate["refusals"], "unseen": unseen}


def _row(candidate: dict[str, Any]) -> dict[str, Any]:
    """The solder-bridge rule's row on the camera, of an eval (or finetune) report's candidate."""
    (row,) = [r for r in candidate["rows"] if r["rule"] == RULE and r["camera"] == CAMERA]
    return dict(row)


def stream(
    site: Site,
    operator: Operator,
    name: str,
    boards: list[Board],
    progress: Callable[[str], None],
    also_rule: str | None = None,
) -> Phase:
    """The pass `name` (its folder written by Site.write_pass) past the camera; the alerts opened on
    `boards` meanwhile, each recognised by the operator."""
    since = _now_iso()
    shown, frames, answered = site.shown(name), operator.frames(), operator.answers()
    began = time.monotonic()
    site.point(name)
    limit = 120 + shown * site.interval_s * 4
    site.wait(lambda: operator.frames() >= frames + shown - TAIL // 2, limit, f"the {name} pass")
    site.point("idle")
    time.sleep(site.interval_s * 4)  # the last boards' answers reach the store
    sampled = (operator.answers() - answered) // (2 if also_rule else 1)
    keys = {board.key for board in boards}
    alerted: set[str] = set()
    on_belt = 0
    for event in operator.events(since):
        board = operator.look(f"/api/events/{event['event_id']}/snapshot")
        if board.key in keys:
            alerted.add(board.key)
        elif board.bridged is None:
            on_belt += 1
    also = None
    if also_rule is not None:
        seen = {operator.look(f"/api/events/{e['event_id']}/snapshot").key for e in operator.events(since, also_rule)}
        also = sum(1 for b in boards if b.key in seen and not b.bridged)
    phase = Phase(
        name,
        good=sum(1 for b in boards if not b.bridged),
        bridged=sum(1 for b in boards if b.bridged),
        alerted_good=sum(1 for b in boards if b.key in alerted and not b.bridged),
        alerted_bridged=sum(1 for b in boards if b.key in alerted and b.bridged),
        alerts_on_belt=on_belt,
        also_alerted_good=also,
        shown=shown,
        sampled=sampled,
        seconds=time.monotonic() - began,
    )
    progress(
        f"{name}: {phase.good} good boards, {phase.alerted_good} alerted ({phase.false_alert_rate:.2%}); "
        f"{phase.bridged} bridged, {phase.alerted_bridged} alerted (recall {phase.recall:.2%}); {phase.seconds:.0f} s; "
        f"{phase.sampled} of {phase.shown} images answered"
    )
    return phase


def review(operator: Operator, held_out: set[str]) -> tuple[dict[str, int], dict[str, int]]:
    """Every open alert and every pending label request of the training boards, answered by truth
    (pictures of held-out boards are left alone: they are never labelled)."""
    reviewed: dict[str, int] = {"confirmed": 0, "false_positive": 0}
    for event in operator.events(None):
        board = operator.look(f"/api/events/{event['event_id']}/snapshot")
        if board.key in held_out:
            continue
        verdict = "confirmed" if board.bridged else "false_positive"
        operator.post(f"/api/events/{event['event_id']}/review", {"verdict": verdict, "note": board.key})
        reviewed[verdict] += 1
    labelled: dict[str, int] = {"yes": 0, "no": 0}
    left = 0  # held-out requests stay pending, at the front of the queue: skip past them
    while True:
        items = operator.get("/api/labels", {"state": "pending", "limit": 200, "offset": left})["items"]
        if not items:
            break
        for item in items:
            if item["rule"] != RULE:  # the operator knows each board's solder joints, nothing else
                left += 1
                continue
            board = operator.look(f"/api/labels/{item['id']}/frame")
            if board.key in held_out:
                left += 1
                continue
            label = "yes" if board.bridged else "no"
            operator.post(f"/api/labels/{item['id']}", {"label": label})
            labelled[label] += 1
    return reviewed, labelled


def wait_threshold(site: Site, operator: Operator, threshold: float) -> None:
    """Until the service runs the rule at `threshold` (a release wrote it into the rule file)."""

    def applied() -> bool:
        return any(r["id"] == RULE and r["threshold"] == threshold for r in operator.get("/api/rules"))

    site.wait(applied, 60, f"threshold {threshold} to be loaded")


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _phase(phase: Phase) -> dict[str, Any]:
    return asdict(phase) | {"false_alert_rate": round(phase.false_alert_rate, 4), "recall": round(phase.recall, 4)}
