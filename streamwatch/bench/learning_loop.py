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
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from streamwatch.bench.report import machine
from streamwatch.demo.dataset import demo_tasks, example
from streamwatch.reports import markdown_table, write_report

RULE, CAMERA = "solder-bridge", "line"
TOKEN = "learning-loop-operator"  # the operator's API token in the throwaway config
BLANK = (58, 60, 64)  # the empty belt between boards
TAIL = 12  # empty-belt frames ending a pass: time to change the folder before the camera starts it again


@dataclass(frozen=True)
class LoopConfig:
    train_good: int = 300
    train_bridged: int = 150
    held_good: int = 400
    held_bridged: int = 200
    interval_s: float = 0.15  # the camera's sample interval: one image shown per interval
    steps: int = 200  # fine-tuning steps
    seed: int = 0
    repo: Path = Path(".")
    out_dir: Path = Path("bench")
    name: str = "learning-loop"
    work_dir: Path | None = None  # default: a temporary folder, removed afterwards


@dataclass
class Board:
    key: str  # e.g. "train-0042"
    bridged: bool | None  # None: the empty belt
    image: np.ndarray

    @property
    def thumb(self) -> np.ndarray:
        return thumb(Image.fromarray(self.image))


def thumb(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB").resize((48, 27), Image.Resampling.BILINEAR), dtype=np.float32)


@dataclass
class Phase:
    """One pass of boards and the alerts the service opened on them."""

    name: str
    good: int
    bridged: int
    alerted_good: int = 0
    alerted_bridged: int = 0
    alerts_on_belt: int = 0
    seconds: float = 0.0

    @property
    def false_alert_rate(self) -> float:
        return self.alerted_good / self.good if self.good else 0.0

    @property
    def recall(self) -> float:
        return self.alerted_bridged / self.bridged if self.bridged else 0.0


@dataclass
class Operator:
    """The scripted operator: recognises each picture among the generated boards, knows its truth."""

    boards: list[Board] = field(default_factory=list)
    _thumbs: np.ndarray | None = None

    def add(self, boards: list[Board]) -> None:
        self.boards += boards
        self._thumbs = np.stack([board.thumb for board in self.boards])

    def recognise(self, jpeg: bytes) -> Board:
        assert self._thumbs is not None
        seen = thumb(Image.open(io.BytesIO(jpeg)))
        distances = ((self._thumbs - seen) ** 2).mean(axis=(1, 2, 3))
        return self.boards[int(np.argmin(distances))]


def make_boards(prefix: str, good: int, bridged: int, rng: np.random.Generator, repo: Path) -> list[Board]:
    """Good and bridged boards, shuffled (other defects at random, as on a line)."""
    (task,) = [t for t in demo_tasks(repo / "rules") if t.rule.id == RULE]
    truths = [False] * good + [True] * bridged
    rng.shuffle(truths)
    return [
        Board(f"{prefix}-{index:04d}", truth, example(task, rng, "yes" if truth else "no").image)
        for index, truth in enumerate(truths)
    ]


def belt() -> Board:
    return Board("belt", None, np.full((360, 640, 3), BLANK, dtype=np.uint8))


class Site:
    """The throwaway deployment: config, rules, the camera's folder (a symlink swapped between passes)
    and the adapter slot, and `streamwatch run` on it."""

    def __init__(self, work: Path, config: LoopConfig) -> None:
        self.work, self.config = work, config
        self.port = _free_port()
        self.camera = work / "camera"
        self.rules = work / "rules" / "defect.toml"
        self.slot = work / "adapters" / "current"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = work / "service.log"

    def write(self) -> None:
        from streamwatch.web.auth import hash_secret

        repo = self.config.repo.resolve()
        self.rules.parent.mkdir(parents=True)
        shipped = (repo / "rules" / "defect.toml").read_text(encoding="utf-8")
        block = "[[rules]]" + shipped.split("[[rules]]")[1]  # the shipped solder-bridge rule, as it is
        assert f'id = "{RULE}"' in block
        # one board after another: each is its own item (no cooldown hides the next board's alert)
        self.rules.write_text(block.replace("cooldown_s = 10", "cooldown_s = 0"), encoding="utf-8")
        self.write_pass("idle", [belt()], tail=0)
        self.point("idle")
        identity_adapter(repo / "models" / "demo-glm4v", self.slot)
        config = f"""
            rules_dir = "rules"
            [model]
            id = "{repo / "models" / "demo-glm4v"}"
            device = "cpu"
            max_image_side = 640
            adapter = "adapters/current"
            watch_s = 1
            [[cameras]]
            id = "{CAMERA}"
            name = "Line 2 inspection"
            url = "camera"
            sample_interval_s = {self.config.interval_s}
            describe = false
            tags = ["defect"]
            location = "line 2"
            [storage]
            database_url = "sqlite:///data/streamwatch.db"
            snapshot_dir = "data/snapshots"
            [labels]
            every_s = 0
            sample_no = 0.3
            max_pending = 100000
            [web]
            port = {self.port}
            token_hash = "{hash_secret(TOKEN)}"
            [mqtt]
            enabled = false
        """
        (self.work / "config.toml").write_text(textwrap.dedent(config).lstrip(), encoding="utf-8")

    def write_pass(self, name: str, boards: list[Board], tail: int = TAIL) -> int:
        """A folder of this pass's images: each board twice, then the empty belt twice; `tail` belt
        frames at the end. Returns how many images the pass shows."""
        folder = self.work / f"pass-{name}"
        folder.mkdir()
        blank = belt().image
        frames: list[np.ndarray] = []
        for board in boards:
            frames += [board.image, board.image] if board.bridged is not None else [board.image]
            if board.bridged is not None:
                frames += [blank, blank]
        frames += [blank] * tail
        for index, pixels in enumerate(frames):
            Image.fromarray(pixels).save(folder / f"{index:06d}.png", compress_level=1)
        return len(frames)

    def point(self, name: str) -> None:
        """The camera's folder becomes this pass's (atomically: the camera lists it at its next pass)."""
        link = self.work / "camera.new"
        link.symlink_to(self.work / f"pass-{name}")
        os.replace(link, self.camera)

    def start(self) -> None:
        command = [sys.executable, "-m", "streamwatch", "run", "-c", str(self.work / "config.toml")]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(command, cwd=self.work, stdout=log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def cli(self, *args: str) -> str:
        """A streamwatch command on this site's config (its output; an error names the command)."""
        command = [sys.executable, "-m", "streamwatch", *args, "-c", str(self.work / "config.toml")]
        result = subprocess.run(command, cwd=self.work, capture_output=True, text=True, timeout=3600)
        if result.returncode != 0:
            raise RuntimeError(f"streamwatch {' '.join(args)} failed ({result.returncode}): {result.stderr[-2000:]}")
        return result.stdout


def identity_adapter(model: Path, out: Path) -> None:
    """A LoRA adapter of the demo model that changes nothing (fresh LoRA weights are zero in one factor):
    the slot the service watches from the start."""
    from transformers import AutoModelForImageTextToText

    from streamwatch.finetune.lora import LoraSettings, add_lora, save_adapter

    save_adapter(add_lora(AutoModelForImageTextToText.from_pretrained(str(model)), LoraSettings()), out)


def run_bench(config: LoopConfig, progress: Callable[[str], None] = print) -> list[Path]:
    with _work_dir(config) as work:
        result = run_loop(config, work, progress)
    data = {
        "machine": machine(),
        "date": _now_iso()[:16] + "Z",
        "config": {k: str(v) for k, v in asdict(config).items()},
        **result,
    }
    return write_report(config.out_dir, config.name, data, markdown(data))


@contextlib.contextmanager
def _work_dir(config: LoopConfig) -> Iterator[Path]:
    if config.work_dir is not None:
        config.work_dir.mkdir(parents=True, exist_ok=True)
        yield config.work_dir
        return
    with tempfile.TemporaryDirectory(prefix="streamwatch-loop-") as folder:
        yield Path(folder)


def run_loop(config: LoopConfig, work: Path, progress: Callable[[str], None]) -> dict[str, Any]:
    rng = np.random.default_rng(config.seed)
    repo = config.repo.resolve()
    held = make_boards("held", config.held_good, config.held_bridged, rng, repo)
    train = make_boards("train", config.train_good, config.train_bridged, rng, repo)
    operator = Operator()
    operator.add([*held, *train, belt()])
    site = Site(work, config)
    site.write()
    site.write_pass("held", held)
    site.write_pass("train", train)
    started = time.monotonic()
    site.start()
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{site.port}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
    )
    try:
        _wait(lambda: _ready(client), 300, "the service to be ready", site)
        progress(f"service ready in {time.monotonic() - started:.0f} s")
        before = stream(site, client, operator, "held", held, progress)
        stream(site, client, operator, "train", train, progress)
        reviewed, labelled = review(client, operator, {board.key for board in held})
        progress(f"reviewed {sum(reviewed.values())} alerts {dict(reviewed)}, labelled {dict(labelled)}")
        site.cli("eval", "--out", str(work / "eval"))
        evaluation = json.loads((work / "eval" / "eval.json").read_text())
        (row,) = [r for r in evaluation["candidates"][0]["rows"] if r["rule"] == RULE and r["camera"] == CAMERA]
        threshold = row["suggested_threshold"] if row["suggested_threshold"] is not None else row["threshold"]
        set_threshold(site, client, threshold)
        progress(f"eval: F1 {row['f1']} at {row['threshold']}; threshold {threshold} applied")
        tuned = time.monotonic()
        site.cli("model", "finetune", str(work / "adapters" / "v1"), "--from-reviews", "--steps", str(config.steps))
        finetune_s = time.monotonic() - tuned
        report = json.loads((work / "adapters" / "v1" / "finetune.json").read_text())
        (tuned_row,) = [r for r in report["candidates"][1]["rows"] if r["rule"] == RULE and r["camera"] == CAMERA]
        adapted = tuned_row["suggested_threshold"] if tuned_row["suggested_threshold"] is not None else threshold
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            shutil.copy(work / "adapters" / "v1" / name, site.slot / name)
        _wait(lambda: _model(client)["reloads"] >= 1, 300, "the adapter to be swapped in", site)
        set_threshold(site, client, adapted)  # the adapter's own threshold, from its held-out part
        model = _model(client)
        progress(f"fine-tuned in {finetune_s:.0f} s; adapter swapped in ({model['adapter']}), threshold {adapted}")
        after = stream(site, client, operator, "held", held, progress)
    finally:
        client.close()
        site.stop()
    return {
        "phases": {"before": _phase(before), "after": _phase(after)},
        "reviewed": dict(reviewed),
        "labelled": dict(labelled),
        "eval": {key: row[key] for key in ("n", "positives", "threshold", "precision", "recall", "f1")}
        | {"suggested_threshold": row["suggested_threshold"], "applied_threshold": threshold},
        "finetune": {
            "suggested_threshold": tuned_row["suggested_threshold"],
            "applied_threshold": adapted,
            "seconds": round(finetune_s, 1),
            "examples": report["training"]["examples"],
            "loss": report["training"]["loss"],
            "held_out_rows": [c["rows"] for c in report["candidates"]],
        },
        "reloads": model["reloads"],
        "minutes": round((time.monotonic() - started) / 60, 1),
    }


def stream(
    site: Site,
    client: httpx.Client,
    operator: Operator,
    name: str,
    boards: list[Board],
    progress: Callable[[str], None],
) -> Phase:
    """The pass `name` (its folder written by Site.write_pass) past the camera; the alerts opened on
    `boards` meanwhile, each recognised by the operator."""
    since = _now_iso()
    shown = len(list((site.work / f"pass-{name}").iterdir()))
    frames = _frames(client)
    began = time.monotonic()
    site.point(name)
    limit = 120 + shown * site.config.interval_s * 4
    _wait(lambda: _frames(client) >= frames + shown - TAIL // 2, limit, f"the {name} pass", site)
    site.point("idle")
    time.sleep(site.config.interval_s * 4)  # the last boards' answers reach the store
    keys = {board.key for board in boards}
    alerted: set[str] = set()
    on_belt = 0
    for event in _events(client, since):
        board = operator.recognise(client.get(f"/api/events/{event['event_id']}/snapshot").content)
        if board.key in keys:
            alerted.add(board.key)
        elif board.bridged is None:
            on_belt += 1
    phase = Phase(
        name,
        good=sum(1 for b in boards if not b.bridged),
        bridged=sum(1 for b in boards if b.bridged),
        alerted_good=sum(1 for b in boards if b.key in alerted and not b.bridged),
        alerted_bridged=sum(1 for b in boards if b.key in alerted and b.bridged),
        alerts_on_belt=on_belt,
        seconds=time.monotonic() - began,
    )
    progress(
        f"{name}: {phase.good} good boards, {phase.alerted_good} alerted ({phase.false_alert_rate:.2%}); "
        f"{phase.bridged} bridged, {phase.alerted_bridged} alerted (recall {phase.recall:.2%}); {phase.seconds:.0f} s"
    )
    return phase


def review(client: httpx.Client, operator: Operator, held_out: set[str]) -> tuple[dict[str, int], dict[str, int]]:
    """Every open alert and every pending label request of the training boards, answered by truth
    (pictures of held-out boards are left alone: they are never labelled)."""
    reviewed: dict[str, int] = {"confirmed": 0, "false_positive": 0}
    for event in _events(client, None):
        board = operator.recognise(client.get(f"/api/events/{event['event_id']}/snapshot").content)
        if board.key in held_out:
            continue
        verdict = "confirmed" if board.bridged else "false_positive"
        _ok(client.post(f"/api/events/{event['event_id']}/review", json={"verdict": verdict, "note": board.key}))
        reviewed[verdict] += 1
    labelled: dict[str, int] = {"yes": 0, "no": 0}
    left = 0  # held-out requests stay pending, at the front of the queue: skip past them
    while True:
        params: dict[str, str | int] = {"state": "pending", "limit": 200, "offset": left}
        items = _ok(client.get("/api/labels", params=params)).json()["items"]
        if not items:
            break
        for item in items:
            board = operator.recognise(client.get(f"/api/labels/{item['id']}/frame").content)
            if board.key in held_out:
                left += 1
                continue
            label = "yes" if board.bridged else "no"
            _ok(client.post(f"/api/labels/{item['id']}", json={"label": label}))
            labelled[label] += 1
    return reviewed, labelled


def set_threshold(site: Site, client: httpx.Client, threshold: float) -> None:
    """The rule file edited as an operator would; the service reloads it."""
    text = site.rules.read_text(encoding="utf-8")
    lines = [f"threshold = {threshold}" if line.startswith("threshold = ") else line for line in text.splitlines()]
    site.rules.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def applied() -> bool:
        rules = _ok(client.get("/api/rules")).json()
        return any(r["id"] == RULE and r["threshold"] == threshold for r in rules)

    _wait(applied, 60, "the new threshold to be loaded", site)


def _events(client: httpx.Client, since: str | None) -> Iterator[dict[str, Any]]:
    offset = 0
    params: dict[str, str | int] = {"rule": RULE, "kind": "open", "limit": 200}
    if since is not None:
        params["since"] = since
    while True:
        page = _ok(client.get("/api/events", params={**params, "offset": offset})).json()
        yield from page["items"]
        if page["next_offset"] is None:
            return
        offset = page["next_offset"]


def _ok(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        request = response.request
        raise RuntimeError(f"{request.method} {request.url.path}: {response.status_code} {response.text[:300]}")
    return response


def _ready(client: httpx.Client) -> bool:
    try:
        return client.get("/readyz").status_code == 200
    except httpx.HTTPError:
        return False


def _model(client: httpx.Client) -> dict[str, Any]:
    return dict(client.get("/readyz").json()["model"])


def _frames(client: httpx.Client) -> int:
    (camera,) = [c for c in _ok(client.get("/api/cameras")).json() if c["id"] == CAMERA]
    return int(camera["frames"])


def _now_iso() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat()


def _wait(condition: Callable[[], bool], timeout_s: float, what: str, site: Site) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if site.process is not None and site.process.poll() is not None:
            raise RuntimeError(f"the service stopped while waiting for {what}; see {site.log}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}; see {site.log}")
        time.sleep(0.2)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _phase(phase: Phase) -> dict[str, Any]:
    return asdict(phase) | {"false_alert_rate": round(phase.false_alert_rate, 4), "recall": round(phase.recall, 4)}


def _machine(info: dict[str, Any]) -> str:
    return f"{info.get('cpu', '?')}, {info.get('cores', '?')} cores (CPU only)"


def _percent(phase: dict[str, Any]) -> dict[str, Any]:
    return phase | {key: f"{phase[key]:.2%}" for key in ("false_alert_rate", "recall")}


def markdown(data: dict[str, Any]) -> str:
    before, after = data["phases"]["before"], data["phases"]["after"]
    rows = [
        {"when": "before (shipped threshold, no adapter)", **_percent(before)},
        {"when": "after (suggested threshold, fine-tuned adapter)", **_percent(after)},
    ]
    columns = [
        ("when", "held-out pass"),
        ("good", "good boards"),
        ("alerted_good", "alerted"),
        ("false_alert_rate", "false-alert rate"),
        ("bridged", "bridged boards"),
        ("alerted_bridged", "alerted"),
        ("recall", "recall"),
        ("alerts_on_belt", "alerts on the empty belt"),
    ]
    evaluation, tuned = data["eval"], data["finetune"]
    reviewed, labelled = data["reviewed"], data["labelled"]
    return "\n".join(
        [
            "# The learning loop on the demo model",
            "",
            f"{_machine(data['machine'])}, {data['date']}. `streamwatch bench learning-loop` "
            f"({data['minutes']} min): the shipped demo model and solder-bridge rule watching an inspection camera",
            "through `streamwatch run`; a scripted operator reviews alerts and answers label requests through the",
            "REST API by each board's truth, runs `streamwatch eval`, applies the suggested threshold,",
            "fine-tunes an adapter from the reviews and copies it into the watched adapter slot (swapped in",
            "without a restart). The same held-out boards, never reviewed or trained on, pass the camera before",
            "and after. A board counts as alerted when an alert opened on it.",
            "",
            markdown_table(rows, columns),
            "",
            f"- Operator: {sum(reviewed.values())} alerts reviewed ({reviewed.get('confirmed', 0)} confirmed, "
            f"{reviewed.get('false_positive', 0)} false positives), {sum(labelled.values())} label requests "
            f"answered ({labelled.get('yes', 0)} yes, {labelled.get('no', 0)} no); the held-out boards' are left "
            "unanswered.",
            f"- eval on those labels: {evaluation['n']} examples, F1 {evaluation['f1']} at the shipped threshold "
            f"{evaluation['threshold']}; suggested {evaluation['suggested_threshold']}, applied "
            f"{evaluation['applied_threshold']}.",
            f"- finetune: {tuned['examples']} training examples, {tuned['seconds']} s; loss "
            f"{tuned['loss'][0][1]:.2e} at step {tuned['loss'][0][0]} -> {tuned['loss'][-1][1]:.2e} at step "
            f"{tuned['loss'][-1][0]}; swapped in without a restart "
            f"(reloads: {data['reloads']}), with the threshold its report suggests on its own held-out part "
            f"({tuned['applied_threshold']}): an adapter moves the scores, so the base model's threshold does not "
            "carry over.",
            "",
        ]
    )
