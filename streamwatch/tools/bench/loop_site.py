"""The learning loop's stage (`streamwatch bench learning-loop`): the generated boards, the throwaway site
that `streamwatch run` watches (config, the shipped solder-bridge rule, a camera folder swapped between
passes, the adapter slot), and the scripted operator at its REST API, who knows every generated board
and recognises it in a picture."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from streamwatch.tools.bench.rtsp import free_port
from streamwatch.tools.demo.dataset import demo_tasks, example

RULE, CAMERA = "solder-bridge", "line"
TOKEN = "learning-loop-operator"  # the operator's API token in the throwaway config
BLANK = (58, 60, 64)  # the empty belt between boards
TAIL = 12  # empty-belt frames ending a pass: time to change the folder before the camera starts it again


@dataclass(frozen=True)
class LabelSettings:
    """[labels] of the site: a board passes every few tenths of a second, so no turn of minutes."""

    every_s: float = 0.0
    sample_no: float = 0.3
    sample_yes: float = 0.05


@dataclass(frozen=True)
class Board:
    key: str  # e.g. "train-0042"
    bridged: bool | None  # None: the empty belt
    image: np.ndarray


def thumb(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB").resize((48, 27), Image.Resampling.BILINEAR), dtype=np.float32)


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

    def __init__(
        self,
        work: Path,
        repo: Path,
        interval_s: float,
        labels: LabelSettings,
        also_rule: str | None,
        device: str = "cpu",
    ) -> None:
        self.work, self.repo, self.interval_s, self.device = work, repo, interval_s, device
        self.labels, self.also_rule = labels, also_rule
        self.port = free_port()
        self.camera = work / "camera"
        self.rules = work / "rules" / "defect.toml"
        self.slot = work / "adapters" / "current"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = work / "service.log"

    def write(self) -> None:
        from streamwatch.config.passwords import hash_secret

        self.rules.parent.mkdir(parents=True)
        shipped = (self.repo / "rules" / "defect.toml").read_text(encoding="utf-8")
        blocks = {b.split('"')[1]: "[[rules]]" + b for b in shipped.split("[[rules]]")[1:]}  # id -> its block
        chosen = [blocks[RULE]] + ([blocks[self.also_rule]] if self.also_rule else [])  # the shipped rules
        # one board after another: each is its own item (no cooldown hides the next board's alert)
        text = "".join(chosen).replace("cooldown_s = 10", "cooldown_s = 0")
        self.rules.write_text(text, encoding="utf-8")
        self.write_pass("idle", [belt()], tail=0)
        self.point("idle")
        identity_adapter(self.repo / "models" / "demo-glm4v", self.slot)
        config = f"""
            rules_dir = "rules"
            [model]
            id = "{self.repo / "models" / "demo-glm4v"}"
            device = "{self.device}"
            max_image_side = 640
            adapter = "adapters/current"
            watch_s = 1
            [[cameras]]
            id = "{CAMERA}"
            name = "Line 2 inspection"
            url = "camera"
            sample_interval_s = {self.interval_s}
            describe = false
            tags = ["defect"]
            location = "line 2"
            [storage]
            database_url = "sqlite:///data/streamwatch.db"
            snapshot_dir = "data/snapshots"
            [labels]
            every_s = {self.labels.every_s}
            sample_no = {self.labels.sample_no}
            sample_yes = {self.labels.sample_yes}
            max_pending = 100000
            [web]
            port = {self.port}
            token_hash = "{hash_secret(TOKEN)}"
            [mqtt]
            enabled = false
        """
        (self.work / "config.toml").write_text(textwrap.dedent(config).lstrip(), encoding="utf-8")

    def write_pass(self, name: str, boards: list[Board], tail: int = TAIL, shown: int = 2) -> None:
        """A folder of this pass's images: each board `shown` times, then the empty belt as often (the
        belt itself once); `tail` belt frames at the end."""
        folder = self.work / f"pass-{name}"
        folder.mkdir()
        blank = belt().image
        frames: list[np.ndarray] = []
        for board in boards:
            frames += [board.image] if board.bridged is None else [board.image] * shown + [blank] * shown
        frames += [blank] * tail
        for index, pixels in enumerate(frames):
            Image.fromarray(pixels).save(folder / f"{index:06d}.png", compress_level=1)

    def shown(self, name: str) -> int:
        """How many images the pass `name` shows."""
        return len(list((self.work / f"pass-{name}").iterdir()))

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

    def cli(self, *args: str, refused_ok: bool = False) -> subprocess.CompletedProcess[str]:
        """A streamwatch command on this site's config; an error names the command (exit 1 is an
        answer where `refused_ok`: the release gate refused)."""
        command = [sys.executable, "-m", "streamwatch", *args, "-c", str(self.work / "config.toml")]
        result = subprocess.run(command, cwd=self.work, capture_output=True, text=True, timeout=3600)
        if result.returncode != 0 and not (refused_ok and result.returncode == 1):
            raise RuntimeError(f"streamwatch {' '.join(args)} failed ({result.returncode}): {result.stderr[-2000:]}")
        return result

    def wait(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Poll `condition` until it holds; an error naming `what` if the service stops or time runs out."""
        deadline = time.monotonic() + timeout_s
        while not condition():
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"the service stopped while waiting for {what}; see {self.log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}; see {self.log}")
            time.sleep(0.2)


def identity_adapter(model: Path, out: Path) -> None:
    """A LoRA adapter of the demo model that changes nothing (fresh LoRA weights are zero in one factor):
    the slot the service watches from the start."""
    from transformers import AutoModelForImageTextToText

    from streamwatch.learning.finetune.lora import add_lora, save_adapter
    from streamwatch.learning.finetune.settings import LoraSettings

    save_adapter(add_lora(AutoModelForImageTextToText.from_pretrained(str(model)), LoraSettings()), out)


class Operator:
    """The scripted operator at the service's REST API (with its token): recognises each picture among
    the generated boards (the nearest by a small thumbnail) and so knows its truth."""

    def __init__(self, port: int, boards: list[Board]) -> None:
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
        )
        self.boards = boards
        self._thumbs = np.stack([thumb(Image.fromarray(board.image)) for board in boards])
        self._seen: dict[str, Board] = {}  # picture path -> the board in it (a picture never changes)

    def close(self) -> None:
        self.client.close()

    def get(self, path: str, params: dict[str, str | int] | None = None) -> Any:
        """The JSON of a GET; an error naming the request otherwise."""
        return _ok(self.client.get(path, params=params)).json()

    def post(self, path: str, body: dict[str, Any]) -> None:
        _ok(self.client.post(path, json=body))

    def look(self, path: str) -> Board:
        """The board in the picture at `path` (an event's snapshot, a label request's frame)."""
        if path not in self._seen:
            seen = thumb(Image.open(io.BytesIO(_ok(self.client.get(path)).content)))
            distances = ((self._thumbs - seen) ** 2).mean(axis=(1, 2, 3))
            self._seen[path] = self.boards[int(np.argmin(distances))]
        return self._seen[path]

    def events(self, since: str | None, rule: str = RULE) -> Iterator[dict[str, Any]]:
        """The rule's open events (since an ISO time), every page."""
        params: dict[str, str | int] = {"rule": rule, "kind": "open", "limit": 200, "offset": 0}
        if since is not None:
            params["since"] = since
        while True:
            page = self.get("/api/events", params)
            yield from page["items"]
            if page["next_offset"] is None:
                return
            params["offset"] = page["next_offset"]

    def ready(self) -> bool:
        try:
            return self.client.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def model(self) -> dict[str, Any]:
        return dict(self.client.get("/readyz").json()["model"])

    def answers(self) -> int:
        """Answers the service gave on the camera so far (asked or reused, every rule)."""
        text = _ok(self.client.get("/metrics")).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith("streamwatch_answers_total{") and f'camera="{CAMERA}"' in line:
                total += float(line.rsplit(" ", 1)[1])
        return int(total)

    def frames(self) -> int:
        """Frames the camera delivered since the service started."""
        (camera,) = [c for c in self.get("/api/cameras") if c["id"] == CAMERA]
        return int(camera["frames"])


def _ok(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        request = response.request
        raise RuntimeError(f"{request.method} {request.url.path}: {response.status_code} {response.text[:300]}")
    return response
