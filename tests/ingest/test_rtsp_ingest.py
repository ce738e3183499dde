"""Camera workers against GStreamer's real RTSP server: frames, keyframes, outages, bad cameras, leaks."""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.helpers import wait_for

from streamwatch.config import CameraConfig
from streamwatch.ingest.camera import CameraWorker
from streamwatch.tools.bench.rtsp import RtspServer


def camera(camera_id: str, url: str, **options: Any) -> CameraConfig:
    fast = {"open_timeout_s": 3.0, "read_timeout_s": 2.0, "reconnect_max_s": 0.5}
    return CameraConfig(id=camera_id, url=url, **{**fast, **options})


@pytest.fixture
def workers() -> Iterator[list[CameraWorker]]:
    """Workers started by a test; all stopped at the end, whatever happened."""
    started: list[CameraWorker] = []
    yield started
    for worker in started:
        worker.stop()


def start(workers: list[CameraWorker], config: CameraConfig, **options: Any) -> CameraWorker:
    worker = CameraWorker(config, **options)
    workers.append(worker)
    worker.start()
    return worker


def test_frames_arrive_from_several_cameras_at_once(
    rtsp_server: RtspServer, workers: list[CameraWorker], clips: dict[str, Path]
) -> None:
    gate = start(workers, camera("gate", rtsp_server.url("/cam"), decode="all"))
    dock = start(workers, camera("dock", rtsp_server.url("/small"), decode="all"))
    yard = start(workers, camera("yard", rtsp_server.url("/cam"), decode="keyframes"))
    replay = start(workers, camera("replay", str(clips["small"]), decode="all"))
    everyone = [gate, dock, yard, replay]
    wait_for(lambda: all(w.status().frames >= 3 for w in everyone), 15, "frames from all four cameras")

    for worker in everyone:
        frame = worker.latest()
        assert frame is not None
        assert frame.camera_id == worker.camera.id
        assert frame.seq >= 2 and frame.pts is not None
        assert abs(time.time() - frame.captured_at) < 2.0
        assert worker.status().state == "online" and worker.status().quality == "good"
    assert gate.latest().size == (640, 360)  # type: ignore[union-attr]
    assert dock.latest().size == (320, 180) and replay.latest().size == (320, 180)  # type: ignore[union-attr]
    assert gate.latest().array.shape == (360, 640, 3)  # type: ignore[union-attr]
    # each camera counts on: sequence numbers only grow
    before = {w.camera.id: w.latest().seq for w in everyone}  # type: ignore[union-attr]
    wait_for(lambda: all(w.latest().seq > before[w.camera.id] for w in everyone), 5, "newer frames")  # type: ignore[union-attr]


def test_keyframe_only_mode_decodes_only_keyframes(rtsp_server: RtspServer, workers: list[CameraWorker]) -> None:
    keyframes = start(workers, camera("kf", rtsp_server.url("/cam"), decode="keyframes"))
    full = start(workers, camera("full", rtsp_server.url("/cam"), decode="all"))
    seen: list[tuple[int, bool]] = []
    deadline = time.monotonic() + 4.0
    wait_for(lambda: keyframes.latest() is not None, 10, "the first keyframe")
    while time.monotonic() < deadline:
        frame = keyframes.latest()
        if frame is not None and (not seen or seen[-1][0] != frame.seq):
            seen.append((frame.seq, frame.keyframe))
        time.sleep(0.02)
    kf, all_frames = keyframes.status(), full.status()
    assert all(key for _, key in seen), seen
    assert [seq for seq, _ in seen] == list(range(seen[0][0], seen[0][0] + len(seen)))  # none decoded unseen
    assert 3 <= len(seen) <= 6  # 10 fps, a keyframe every second, for 4 s
    assert kf.decode_mode == "keyframes" and kf.keyframe_interval_s == pytest.approx(1.0, abs=0.05)
    assert kf.stream_fps > 5 * kf.fps  # every packet arrived, one in ten was decoded
    assert all_frames.decode_mode == "all" and all_frames.frames > 4 * kf.frames
    assert not full.latest().keyframe or full.status().frames % 10 == 1  # type: ignore[union-attr]


@pytest.mark.parametrize(("interval", "mode"), [(2.0, "keyframes"), (1.0, "keyframes"), (0.5, "all")])
def test_auto_mode_compares_the_sample_interval_with_the_keyframe_interval(
    rtsp_server: RtspServer, workers: list[CameraWorker], interval: float, mode: str
) -> None:
    worker = start(workers, camera("auto", rtsp_server.url("/cam"), sample_interval_s=interval))
    wait_for(lambda: worker.status().keyframe_interval_s is not None and worker.status().frames >= 2, 10, "GOP")
    assert worker.status().decode_mode == mode


def test_camera_comes_back_after_the_server_restarts(
    rtsp_server: RtspServer, workers: list[CameraWorker], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="streamwatch")
    worker = start(workers, camera("gate", rtsp_server.url("/cam", userinfo="admin:hunter2")))
    wait_for(lambda: worker.state == "online", 10, "online")
    rtsp_server.stop()
    wait_for(lambda: worker.state == "offline", 10, "offline after the server died")
    last_seq = worker.latest().seq  # type: ignore[union-attr]
    assert worker.status().quality == "down"
    rtsp_server.start()
    wait_for(lambda: worker.state == "online", 15, "online again after the server restarted")
    status = worker.status()
    assert status.reconnects >= 1 and status.reconnects_last_hour >= 1
    assert worker.latest().seq > last_seq  # type: ignore[union-attr]
    assert status.quality == "fair"  # recovered, but it had trouble this hour
    messages = [r.getMessage() for r in caplog.records if "gate" in r.getMessage()]
    assert any("offline" in m for m in messages) and any("online" in m for m in messages)
    assert "hunter2" not in caplog.text and "hunter2" not in str(status)


def test_a_frozen_server_is_a_read_timeout_and_the_camera_recovers(
    rtsp_server: RtspServer, workers: list[CameraWorker]
) -> None:
    worker = start(workers, camera("gate", rtsp_server.url("/cam"), read_timeout_s=1.0))
    wait_for(lambda: worker.state == "online", 10, "online")
    assert rtsp_server.process is not None
    os.kill(rtsp_server.process.pid, signal.SIGSTOP)  # TCP stays open, nothing more is sent
    try:
        wait_for(lambda: worker.state == "offline", 6, "offline after the read timeout")
    finally:
        os.kill(rtsp_server.process.pid, signal.SIGCONT)
    wait_for(lambda: worker.state == "online", 15, "online after the server woke up")


def test_watchdog_restarts_a_camera_that_sends_packets_but_no_frame(
    rtsp_server: RtspServer, workers: list[CameraWorker]
) -> None:
    # keyframes only, but the stream has a keyframe every 6 s: 2 s without a decoded frame = stall
    worker = start(workers, camera("slow", rtsp_server.url("/long-gop"), decode="keyframes", stall_timeout_s=2.0))
    wait_for(lambda: worker.status().stalls_last_hour >= 1, 12, "the watchdog to fire")
    status = worker.status()
    assert "watchdog" in status.last_error or status.state == "online"
    wait_for(lambda: worker.state == "online", 10, "online again after the watchdog restart")


def test_a_listening_socket_that_never_answers_times_out_without_hanging(workers: list[CameraWorker]) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel accepts connections; nobody ever reads or writes
    port = silent.getsockname()[1]
    try:
        rtsp = start(workers, camera("mute", f"rtsp://user:pw1@127.0.0.1:{port}/cam", open_timeout_s=1.0))
        http = start(workers, camera("mute-http", f"http://127.0.0.1:{port}/video", open_timeout_s=1.0))
        wait_for(lambda: rtsp.state == "offline" and http.state == "offline", 5, "both to time out")
        for worker in (rtsp, http):
            assert "timed out after 1 s" in worker.status().last_error
        assert "pw1" not in rtsp.status().last_error
        stopped = time.monotonic()
        rtsp.stop()
        http.stop()
        assert time.monotonic() - stopped < 20  # bounded by the timeouts, not stuck in a read
    finally:
        silent.close()


def test_bad_cameras_get_a_clear_status_and_log_line_and_leave_others_alone(
    rtsp_server: RtspServer, workers: list[CameraWorker], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="streamwatch")
    good = start(workers, camera("good", rtsp_server.url("/cam")))
    bad_host = start(workers, camera("bad-host", "rtsp://admin:s3cret@no-such-camera.invalid/stream1"))
    bad_path = start(workers, camera("bad-path", rtsp_server.url("/nope", userinfo="admin:s3cret")))
    no_video = start(workers, camera("no-video", rtsp_server.url("/mic")))
    refused = socket.socket()
    refused.bind(("127.0.0.1", 0))
    closed_port = refused.getsockname()[1]
    refused.close()
    closed = start(workers, camera("closed", f"rtsp://127.0.0.1:{closed_port}/cam"))
    expected = {
        bad_host: "cannot resolve host 'no-such-camera.invalid'",
        bad_path: "404 Not Found",
        no_video: "no video stream (found audio)",
        closed: "Connection refused",
    }
    wait_for(lambda: all(w.state == "offline" for w in expected), 10, "bad cameras offline")
    wait_for(lambda: good.state == "online", 10, "the good camera online")
    for worker, message in expected.items():
        status = worker.status()
        assert message in status.last_error, status
        assert status.quality == "down" and status.frames == 0
        assert any(
            f"camera {worker.camera.id} offline" in r.getMessage() and message in r.getMessage() for r in caplog.records
        )
    assert "s3cret" not in caplog.text
    assert "s3cret" not in str([w.status() for w in workers])
    frames = good.status().frames
    wait_for(lambda: good.status().frames > frames + 1, 5, "the good camera to keep going")


def test_udp_transport_works(rtsp_server: RtspServer, workers: list[CameraWorker]) -> None:
    worker = start(workers, camera("udp", rtsp_server.url("/cam"), transport="udp"))
    wait_for(lambda: worker.status().frames >= 2, 10, "frames over RTP/UDP")


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_hundred_reconnect_cycles_leak_no_threads_or_file_descriptors(rtsp_server: RtspServer) -> None:
    config = camera("flappy", rtsp_server.url("/short"), reconnect_max_s=0.01)
    warmup = CameraWorker(config, backoff_initial_s=0.01)  # let FFmpeg and GStreamer do one-time set-up
    warmup.start()
    wait_for(lambda: warmup.status().reconnects >= 2, 20, "warm-up reconnects")
    warmup.stop()
    gc.collect()  # objects of earlier tests closing their files later would lower the count mid-test
    threads, fds = threading.active_count(), _fds()

    worker = CameraWorker(config, backoff_initial_s=0.01)
    worker.start()
    wait_for(lambda: worker.status().reconnects >= 100, 120, "100 reconnect cycles")
    status = worker.status()
    worker.stop()
    assert status.frames >= 100  # every cycle really connected and decoded
    assert threading.active_count() == threads
    gc.collect()
    assert _fds() <= fds, f"{_fds() - fds} file descriptors leaked"  # unclosed containers: +100


def test_reconnects_back_off_exponentially_with_jitter_up_to_the_cap(
    workers: list[CameraWorker], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="streamwatch.ingest.camera")
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # connection refused, at once, every time
    start(workers, camera("refused", f"rtsp://127.0.0.1:{port}/cam", reconnect_max_s=0.4), backoff_initial_s=0.05)

    def delays() -> list[float]:  # read from the log lines themselves: the counter moves before its line is logged
        return [
            float(r.getMessage().split("reconnecting in ")[1].split()[0])
            for r in list(caplog.records)
            if "reconnecting in" in r.getMessage()
        ][:7]

    wait_for(lambda: len(delays()) >= 7, 30, "7 reconnect attempts logged")
    expected = [0.05, 0.1, 0.2, 0.4, 0.4, 0.4, 0.4]
    logged = delays()
    for delay, nominal in zip(logged, expected, strict=True):
        assert 0.8 * nominal - 0.001 <= delay <= 1.2 * nominal + 0.001, logged
    assert len(set(logged[3:])) > 1  # jitter: capped cameras do not retry in lockstep


def test_http_streams_are_cameras_too(tmp_path: Path, workers: list[CameraWorker]) -> None:
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from streamwatch.tools.synthetic import write_clip

    write_clip(tmp_path / "live.ts", seconds=2, width=320, height=180)  # MPEG-TS, as HTTP encoders send
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        worker = start(workers, camera("http", f"http://127.0.0.1:{server.server_port}/live.ts", decode="all"))
        wait_for(lambda: worker.status().frames >= 10, 10, "frames over HTTP")
        assert worker.latest().size == (320, 180)  # type: ignore[union-attr]
    finally:
        server.shutdown()
        server.server_close()
