"""Questions over several frames: one multi-image prompt per question, batched across cameras with
single-frame questions, on GLM-4V and Qwen2-VL; batched answers equal unbatched ones, and the frames
really reach the model (their order changes the answer); the ring of recent frames; `streamwatch run`
with a rule over several frames, change gating on its newest frame."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from PIL import Image
from support.helpers import random_image, wait_for
from support.service import MOTION_RULE, MotionBackend, Running, write_site

from streamwatch.config import load_settings
from streamwatch.inference.backends.transformers import TransformersBackend
from streamwatch.inference.types import Prompt
from streamwatch.pipeline.frame_history import FrameHistory, Shape
from streamwatch.tools.synthetic import scene

MOVING = "Across these frames, oldest first, is the forklift moving? Answer yes or no."
STILL = "Is the aisle blocked? Answer yes or no."


def cameras() -> list[list[Image.Image]]:
    """Two cameras' last four samples, of different sizes (different image token counts)."""
    return [[random_image(40 + i, 320, 200) for i in range(4)], [random_image(50 + i, 256, 256) for i in range(4)]]


def test_the_prompt_holds_one_image_marker_per_frame(shared_and_plain: tuple[TransformersBackend, ...]) -> None:
    shared, _ = shared_and_plain
    one, four = shared.prompt_text(MOVING), shared.prompt_text(MOVING, 4)
    marker = "<|image|>" if "<|image|>" in one else "<|image_pad|>"
    assert (one.count(marker), four.count(marker)) == (1, 4)


def test_batched_multi_frame_answers_equal_unbatched(shared_and_plain: tuple[TransformersBackend, ...]) -> None:
    shared, plain = shared_and_plain
    gate, yard = cameras()
    prompts = [
        Prompt(gate[-1], MOVING, tuple(gate[:-1])),
        Prompt(gate[-1], STILL),  # a single-frame rule on the same newest frame
        Prompt(yard[-1], MOVING, tuple(yard[:-1])),
        Prompt(gate[-1], STILL, tuple(gate[:-1])),  # shares gate's frames with the first
        Prompt(yard[-1], MOVING, tuple(yard[1:-1])),  # three frames
    ]
    one_by_one = [plain.score_yes_no([p])[0].p_yes for p in prompts]
    assert [a.p_yes for a in plain.score_yes_no(prompts)] == pytest.approx(one_by_one, abs=1e-4)
    assert [a.p_yes for a in shared.score_yes_no(prompts)] == pytest.approx(one_by_one, abs=1e-4)
    generated = shared.generate(prompts[:3], 4)
    assert generated == [plain.generate([p], 4)[0] for p in prompts[:3]]


def test_the_model_sees_every_frame_in_order(shared_and_plain: tuple[TransformersBackend, ...]) -> None:
    _, plain = shared_and_plain
    gate, _yard = cameras()
    forward = Prompt(gate[-1], MOVING, tuple(gate[:-1]))
    reversed_older = Prompt(gate[-1], MOVING, tuple(reversed(gate[:-1])))
    newest_only = Prompt(gate[-1], MOVING)
    p = [plain.score_yes_no([prompt])[0].p_yes for prompt in (forward, reversed_older, newest_only)]
    assert p[0] != pytest.approx(p[1], abs=1e-6) and p[0] != pytest.approx(p[2], abs=1e-6)


def test_torch_preprocessing_takes_several_frames_per_prompt(tiny_model: Path) -> None:
    """The GPU preprocessing path (here on the CPU) with prompts of several images: as the processor's."""
    on_cpu = TransformersBackend.load(str(tiny_model), device="cpu", preprocess="processor")
    in_torch = TransformersBackend.load(str(tiny_model), device="cpu", preprocess="torch")
    gate, yard = cameras()
    prompts = [Prompt(gate[-1], MOVING, tuple(gate[:-1])), Prompt(yard[-1], STILL), Prompt(gate[-1], STILL)]
    expected = [a.p_yes for a in on_cpu.score_yes_no(prompts)]
    assert [a.p_yes for a in in_torch.score_yes_no(prompts)] == pytest.approx(expected, abs=0.02)


def shape(frames: int = 3, span_s: float = 1.0) -> Shape:
    return Shape(None, frames, span_s)


def test_the_ring_keeps_frames_a_spacing_apart_and_the_newest_last() -> None:
    history, images = FrameHistory(max_image_side=64), [random_image(i, 160, 90) for i in range(12)]
    wanted = {shape(3, 1.0)}  # 3 frames 0.5 s apart
    for i, at in enumerate([0.0, 0.2, 0.5, 0.6, 1.0]):
        history.add(wanted, at, images[i])
    window = history.window(shape(3, 1.0), 1.0)
    assert window is not None and len(window) == 3
    assert window[-1].size == (64, 36)  # kept at model size, never the full frame
    assert history.window(shape(3, 1.0), 0.6) is None  # not the newest frame: never an old window
    kept = [e.at for e in history._rings[shape(3, 1.0)]]
    assert kept == [0.0, 0.5, 1.0]  # 0.2 and 0.6 were only ever the newest for a moment
    assert len(kept) <= 3 + 1 and history.bytes() == 3 * 64 * 36 * 3


def test_no_window_until_enough_frames_nor_across_a_gap() -> None:
    history, wanted = FrameHistory(max_image_side=64), {shape(3, 1.0)}
    history.add(wanted, 0.0, random_image(1, 64, 64))
    history.add(wanted, 0.5, random_image(2, 64, 64))
    assert history.window(shape(3, 1.0), 0.5) is None  # two of three frames
    history.add(wanted, 60.0, random_image(3, 64, 64))  # the camera was away for a minute
    assert history.window(shape(3, 1.0), 60.0) is None
    history.add(wanted, 60.5, random_image(4, 64, 64))
    history.add(wanted, 61.0, random_image(5, 64, 64))
    assert history.window(shape(3, 1.0), 61.0) is not None


def test_rings_follow_the_rules_and_memory_stays_bounded() -> None:
    history = FrameHistory(max_image_side=32)
    a, b = Shape((0.0, 0.0, 0.5, 1.0), 4, 3.0), shape(2, 10.0)
    for step in range(200):
        history.add({a, b}, step * 0.25, random_image(step % 5, 64, 64))
    assert history.bytes() <= (4 + 1 + 2 + 1) * 32 * 32 * 3
    history.add({b}, 100.0, random_image(9, 64, 64))  # rule a was edited away
    assert set(history._rings) == {b}
    assert FrameHistory.interval_s({a, b}, 2.0) == 1.0 and FrameHistory.interval_s(set(), 2.0) == 2.0


def test_a_camera_asks_its_motion_rule_about_its_last_frames(tmp_path: Path, clips: dict[str, Path]) -> None:
    """`streamwatch run` with a rule over 3 frames 0.5 s apart on a camera sampled every second: the
    sampler looks at the camera between samples for the middle frames; the model gets three images and
    says yes while the figure walks right."""
    settings = load_settings(write_site(tmp_path, str(clips["cam"]), None))
    (tmp_path / "rules" / "perimeter.toml").write_text(MOTION_RULE, encoding="utf-8")
    backend = MotionBackend()
    running = Running(settings, lambda _s: backend)
    try:
        wait_for(lambda: any(d.transition == "open" for d in running.decisions), 40, "the walking figure's alert")
        with urllib.request.urlopen(f"http://127.0.0.1:{settings.web.port}/metrics") as scrape:
            metrics = scrape.read().decode()
    finally:
        running.stop()
    assert backend.prompts and {n for n, _q in backend.prompts} == {3}
    assert backend.prompts[0][1] == (
        "The 3 images are frames from the same camera, oldest first, 1 seconds from the first to the last. "
        "Is the person walking to the right? Answer yes or no."
    )
    assert {d.rule.id for d in running.decisions} == {"walking-right"}
    kept = [line for line in metrics.splitlines() if line.startswith('streamwatch_frame_history_bytes{camera="gate"}')]
    assert kept and 0 < float(kept[0].split()[-1]) <= (3 + 1) * 640 * 360 * 3


def test_change_gating_looks_at_the_newest_frame_of_the_window(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A camera whose picture stands still (an image folder): the rule over 3 frames is asked once its
    frames are there, then its answer is reused while the newest frame does not change."""
    still = tmp_path / "still"
    still.mkdir()
    Image.fromarray(scene(640, 360, 5.0)).save(still / "yard.png")
    settings = load_settings(write_site(tmp_path, str(still), None))
    (tmp_path / "rules" / "perimeter.toml").write_text(MOTION_RULE.replace("span_s = 1", "span_s = 2"), "utf-8")
    backend = MotionBackend()
    with caplog.at_level("DEBUG", logger="streamwatch.pipeline.answer_log"):
        running = Running(settings, lambda _s: backend)
        try:
            wait_for(lambda: len(running.decisions) >= 4, 40, "four decisions")
            base = f"http://127.0.0.1:{settings.web.port}"
            with urllib.request.urlopen(base + "/metrics") as scrape:
                metrics = scrape.read().decode()
            with urllib.request.urlopen(base + "/api/rules") as listed:
                (rule,) = json.loads(listed.read())
        finally:
            running.stop()
    assert len(backend.prompts) == 1 and backend.prompts[0][0] == 3
    assert [d.answer.reused for d in running.decisions[:4]] == [False, True, True, True]
    assert {d.answer.text for d in running.decisions} == {"no"}  # nothing moves
    # the gate explains itself: the log line, the API's latest answer and the metrics
    assert "gate=first" in caplog.text and "gate=reused area=0px noise=" in caplog.text
    (latest,) = rule["last_answers"]
    assert latest["reused"] and latest["gate"] == "reused" and latest["gate_area_px"] == 0.0
    assert latest["gate_noise"] is not None and latest["gate_noise"] < 1
    assert 'streamwatch_gate_decisions_total{camera="gate",why="reused"}' in metrics
    assert 'streamwatch_gate_noise{camera="gate",rule="walking-right"}' in metrics
