"""Camera workers on files and image folders, the decoder's keyframe handling, status grading."""

from __future__ import annotations

import gc
import logging
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.helpers import wait_for

from streamwatch.config import CameraConfig
from streamwatch.ingest.camera import CameraWorker
from streamwatch.ingest.frame import Frame
from streamwatch.ingest.status import grade
from streamwatch.ingest.stream import VideoStream


def test_keyframe_mode_yields_every_keyframe_at_once_even_with_b_frames(clips: dict[str, Path]) -> None:
    # 5 s at 10 fps with B-frames: the decoder would hold each picture back until later keyframes
    with VideoStream(str(clips["bframes"]), mode="keyframes") as stream:
        frames = [frame for frame, _ in stream.frames()]
        assert stream.keyframe_interval_s == pytest.approx(1.0)
    assert [round(float(f.time), 3) for f in frames] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert all(f.key_frame for f in frames)


def test_all_mode_yields_every_frame(clips: dict[str, Path]) -> None:
    with VideoStream(str(clips["bframes"]), mode="all") as stream:
        frames = [frame for frame, _ in stream.frames()]
    assert len(frames) == 50 and sum(f.key_frame for f in frames) == 5


def test_a_slow_consumer_never_builds_a_backlog(tmp_path: Path, clips: dict[str, Path]) -> None:
    worker = CameraWorker(CameraConfig(id="busy", url=str(clips["cam"]), decode="all"))
    worker.start()
    try:
        wait_for(lambda: worker.status().frames >= 20, 10, "20 frames")
        gc.collect()
        alive = [o for o in gc.get_objects() if type(o) is Frame and o.camera_id == "busy"]  # not other tests' frames
        assert len(alive) <= 2, f"{len(alive)} frames held"  # the slot, and maybe one being replaced
        frame = worker.latest()
        assert frame is not None and frame.seq >= 19
    finally:
        worker.stop()


def test_files_loop_and_play_at_their_own_pace(tmp_path: Path) -> None:
    from streamwatch.tools.synthetic import write_clip

    clip = write_clip(tmp_path / "one-second.mp4", seconds=1)
    worker = CameraWorker(CameraConfig(id="loop", url=str(clip), decode="all"))
    started = time.monotonic()
    worker.start()
    try:
        wait_for(lambda: worker.status().frames >= 25, 10, "a second pass through the file")
        assert time.monotonic() - started >= 2.0  # 10 fps, paced: 25 frames take 2.4 s
        assert worker.state == "online" and worker.status().reconnects == 0
    finally:
        worker.stop()


def test_a_file_without_loop_ends_offline(tmp_path: Path) -> None:
    from streamwatch.tools.synthetic import write_clip

    clip = write_clip(tmp_path / "once.mp4", seconds=0.5)
    worker = CameraWorker(CameraConfig(id="once", url=str(clip), loop=False, decode="all"))
    worker.start()
    wait_for(lambda: worker.state == "offline", 5, "the end of the file")
    assert worker.status().last_error == "end of file" and worker.status().frames == 5
    worker.stop()


def test_an_image_folder_is_a_slow_camera_and_skips_broken_images(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "shots"
    folder.mkdir()
    Image.new("RGB", (64, 48), (200, 10, 10)).save(folder / "a.jpg")
    (folder / "b.jpg").write_bytes(b"not a jpeg")
    Image.new("RGB", (64, 48), (10, 200, 10)).save(folder / "c.png")
    worker = CameraWorker(CameraConfig(id="shots", url=str(folder), sample_interval_s=0.1))
    worker.start()
    try:
        wait_for(lambda: worker.status().frames >= 4, 5, "two passes over the folder")
        frame = worker.latest()
        assert frame is not None and frame.size == (64, 48) and frame.keyframe
        assert "b.jpg: not a readable image" in caplog.text
    finally:
        worker.stop()


def test_a_folder_without_readable_images_is_offline_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no pictures here")
    worker = CameraWorker(CameraConfig(id="empty", url=str(tmp_path)))
    worker.start()
    wait_for(lambda: worker.state == "offline", 5, "offline")
    assert "folder has no images" in worker.status().last_error
    worker.stop()


def test_a_missing_file_is_offline_and_a_disabled_camera_never_opens(tmp_path: Path) -> None:
    missing = CameraWorker(CameraConfig(id="missing", url=str(tmp_path / "gone.mp4")))
    disabled = CameraWorker(CameraConfig(id="off", url=str(tmp_path / "gone.mp4"), enabled=False))
    missing.start()
    disabled.start()
    wait_for(lambda: missing.state == "offline", 5, "offline")
    assert "file not found" in missing.status().last_error
    assert disabled.status().state == "disabled" and disabled.status().quality == "disabled"
    missing.stop()
    disabled.stop()


def test_garbage_instead_of_video_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "camera.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    worker = CameraWorker(CameraConfig(id="junk", url=str(junk)))
    worker.start()
    wait_for(lambda: worker.state == "offline", 5, "offline")
    assert "Invalid data" in worker.status().last_error
    worker.stop()


def test_hardware_decoding_falls_back_to_software(clips: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="streamwatch")
    worker = CameraWorker(CameraConfig(id="nvdec", url=str(clips["cam"]), hwaccel="cuda"))
    worker.start()
    try:
        wait_for(lambda: worker.status().frames >= 1, 10, "a frame")
        decoder = worker.status().decoder
        if "(cuda)" not in decoder:  # no GPU here: software, and the log says why
            assert decoder == "h264"
            assert "cuda decoding unavailable" in caplog.text and "decoding in software" in caplog.text
        assert worker.latest().array.shape == (360, 640, 3)  # type: ignore[union-attr]
    finally:
        worker.stop()


def test_frames_convert_to_rgb_once_and_only_when_asked(clips: dict[str, Path]) -> None:
    with VideoStream(str(clips["cam"]), mode="keyframes") as stream:
        decoded, _ = next(iter(stream.frames()))
        frame = Frame("cam", 0, time.time(), decoded, float(decoded.time), decoded.key_frame)
    assert frame.size == (640, 360) and frame._array is None
    first = frame.array
    assert first.shape == (360, 640, 3) and frame.array is first
    assert frame.image().size == (640, 360)
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        Frame("cam", 0, 0.0, np.zeros((4, 4), dtype=np.uint8))


@pytest.mark.parametrize(
    ("state", "problems", "fps", "nominal", "expected"),
    [
        ("online", 0, 10.0, 10.0, "good"),
        ("online", 0, 0.0, 10.0, "good"),  # not measured yet
        ("online", 0, 6.0, 10.0, "fair"),  # frames arrive too slowly
        ("online", 2, 10.0, 10.0, "fair"),
        ("online", 4, 10.0, 10.0, "poor"),
        ("offline", 0, 0.0, 10.0, "down"),
        ("starting", 0, 0.0, None, "down"),
        ("disabled", 0, 0.0, None, "disabled"),
    ],
)
def test_connection_quality_grade(state: str, problems: int, fps: float, nominal: float, expected: str) -> None:
    assert grade(state, problems, fps, nominal) == expected  # type: ignore[arg-type]
