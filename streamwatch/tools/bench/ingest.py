"""`streamwatch bench ingest`: N simulated RTSP cameras, sampled like the service samples them.

Each camera is a client of GStreamer's RTSP server streaming the same H.264 file without re-encoding
(every client gets its own paced stream). Camera workers run exactly as in the service; a sampler
takes each camera's newest frame every sample interval (staggered across cameras) and converts it to
RGB, as the service does before the model. Measured over a window after a warm-up:

- cores used: CPU time of this process (all camera threads, the sampler) / wall time; the RTSP
  server's CPU is reported separately
- decode ms: the decoder's CPU time per decoded frame, averaged over cameras; decoded fps per camera
- sample age: now - the frame's capture time, when the sampler takes it (p50, p95)
- memory: resident set size, peak during the window, and its growth over the idle process
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from streamwatch.config import CameraConfig
from streamwatch.ingest.camera import CameraWorker
from streamwatch.reports import markdown_table, write_report
from streamwatch.tools.bench.report import machine, percentile
from streamwatch.tools.bench.rtsp import RtspServer
from streamwatch.tools.synthetic import write_clip

log = logging.getLogger(__name__)

TARGET_CORES = 1.0  # the target: 32 keyframe-only 1080p cameras under one core


@dataclass(frozen=True)
class IngestBenchConfig:
    cameras: Sequence[int] = (4, 16, 32)
    modes: Sequence[str] = ("keyframes", "all")
    seconds: float = 30.0
    warmup_s: float = 5.0
    sample_interval_s: float = 2.0
    width: int = 1920
    height: int = 1080
    fps: int = 25
    gop: int = 25
    bit_rate: int = 4_000_000
    out_dir: Path = Path("bench")
    name: str = "ingest"


@dataclass
class IngestRun:
    mode: str
    cameras: int
    online: int
    cores_used: float
    server_cores: float
    decode_ms: float
    decoded_fps_per_camera: float
    stream_fps_per_camera: float
    keeps_up: bool  # decoded >= 90 % of what the mode should decode (every frame, or every keyframe)
    convert_ms: float  # CPU time of one sampled frame's conversion to RGB
    samples: int
    missed_samples: int
    sample_age_p50_ms: float | None
    sample_age_p95_ms: float | None
    rss_peak_mb: float
    rss_growth_mb: float


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _process_cpu_s(pid: int | None = None) -> float:
    if pid is None:
        times = os.times()
        return times.user + times.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_clip(config: IngestBenchConfig, cache: Path) -> Path:
    """The camera file: long enough for warm-up + window + connecting, cached between runs."""
    seconds = int(config.warmup_s + config.seconds + 20)
    size = f"{config.width}x{config.height}"
    name = f"camera-{size}-{config.fps}fps-gop{config.gop}-{config.bit_rate // 1000}k-{seconds}s"
    path = cache / f"{name}.mp4"
    if not path.exists():
        log.info("encoding the %d s camera clip %s (once; cached) ...", seconds, path)
        partial = path.with_suffix(".partial.mp4")
        write_clip(
            partial,
            seconds=seconds,
            fps=config.fps,
            width=config.width,
            height=config.height,
            gop=config.gop,
            bit_rate=config.bit_rate,
            grain=6,
        )
        partial.rename(path)
    return path


def run_one(
    server: RtspServer, mode: str, count: int, config: IngestBenchConfig, progress: Callable[[str], None]
) -> IngestRun:
    workers = [
        CameraWorker(
            CameraConfig(
                id=f"cam-{index:02d}",
                url=server.url("/cam"),
                decode=mode,
                sample_interval_s=config.sample_interval_s,
                open_timeout_s=20,
                read_timeout_s=20,
            )
        )
        for index in range(count)
    ]
    rss_idle = _rss_mb()
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(w.latest() is not None for w in workers):
        time.sleep(0.1)
    time.sleep(config.warmup_s)

    ages: list[float] = []
    convert: list[float] = []
    missed = 0
    rss_peak = _rss_mb()
    assert server.process is not None
    cpu0, server0, wall0 = _process_cpu_s(), _process_cpu_s(server.process.pid), time.monotonic()
    frames0 = {w.camera.id: w.status().frames for w in workers}
    last_seq: dict[str, int] = {}
    step = config.sample_interval_s / count
    tick = 0
    end = wall0 + config.seconds
    while True:  # camera i is sampled at wall0 + i*step + k*interval: spread like independent samplers
        due = wall0 + tick * step
        if due >= end:
            break
        time.sleep(max(0.0, due - time.monotonic()))
        worker = workers[tick % count]
        tick += 1
        frame = worker.latest()
        if frame is None or last_seq.get(worker.camera.id) == frame.seq:
            missed += 1  # no new frame since the last sample: the camera fell behind
            continue
        last_seq[worker.camera.id] = frame.seq
        ages.append(time.time() - frame.captured_at)
        started = time.thread_time()
        frame.array  # noqa: B018 - the RGB conversion the service does for every sample
        convert.append(time.thread_time() - started)
        rss_peak = max(rss_peak, _rss_mb())
    wall = time.monotonic() - wall0
    cpu, server_cpu = _process_cpu_s() - cpu0, _process_cpu_s(server.process.pid) - server0
    statuses = [w.status() for w in workers]
    for worker in workers:
        worker.stop()
    decoded = [(s.frames - frames0[s.id]) / wall for s in statuses]
    expected_fps = config.fps if mode == "all" else config.fps / config.gop
    result = IngestRun(
        mode=mode,
        cameras=count,
        online=sum(s.state == "online" for s in statuses),
        cores_used=round(cpu / wall, 3),
        server_cores=round(server_cpu / wall, 3),
        decode_ms=round(sum(s.decode_ms for s in statuses) / count, 2),
        decoded_fps_per_camera=round(sum(decoded) / count, 2),
        stream_fps_per_camera=round(sum(s.stream_fps for s in statuses) / count, 2),
        keeps_up=all(rate * wall >= 0.9 * expected_fps * wall - 1 for rate in decoded),  # 1 frame: window edges
        convert_ms=round(1000 * sum(convert) / len(convert), 2) if convert else 0.0,
        samples=len(ages),
        missed_samples=missed,
        sample_age_p50_ms=_ms(percentile(ages, 50)),
        sample_age_p95_ms=_ms(percentile(ages, 95)),
        rss_peak_mb=round(rss_peak, 1),
        rss_growth_mb=round(rss_peak - rss_idle, 1),
    )
    progress(
        f"{mode:>9} x{count:<3} cores {result.cores_used:.2f} (server {result.server_cores:.2f})  "
        f"decode {result.decode_ms:.1f} ms  age p50/p95 {result.sample_age_p50_ms}/{result.sample_age_p95_ms} ms  "
        f"rss {result.rss_peak_mb:.0f} MB  online {result.online}/{count}"
    )
    return result


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def run_bench(config: IngestBenchConfig, progress: Callable[[str], None] = print) -> list[Path]:
    clip = bench_clip(config, config.out_dir / ".cache")
    runs: list[IngestRun] = []
    with RtspServer({"/cam": clip}) as server:
        for mode in config.modes:
            for count in config.cameras:
                runs.append(run_one(server, mode, count, config, progress))
                time.sleep(1.0)  # let the server tear the sessions down
    data: dict[str, Any] = {
        "benchmark": "ingest",
        "machine": machine(),
        "config": {**asdict(config), "out_dir": str(config.out_dir), "clip": clip.name},
        "target": f"{max(config.cameras)} keyframe-only cameras under {TARGET_CORES:g} core",
        "runs": [asdict(run) for run in runs],
    }
    paths = write_report(config.out_dir, config.name, data, _markdown(data, runs, config))
    paths.append(_plot(runs, config.out_dir / f"{config.name}.png", config))
    return paths


def _markdown(data: dict[str, Any], runs: list[IngestRun], config: IngestBenchConfig) -> str:
    m = data["machine"]
    columns = [
        ("mode", "decode"),
        ("cameras", "cameras"),
        ("online", "online"),
        ("cores_used", "cores used"),
        ("server_cores", "RTSP server cores"),
        ("decode_ms", "decode CPU ms/frame"),
        ("decoded_fps_per_camera", "decoded fps/camera"),
        ("stream_fps_per_camera", "received fps/camera"),
        ("keeps_up", "keeps up"),
        ("convert_ms", "RGB convert CPU ms"),
        ("sample_age_p50_ms", "sample age p50 ms"),
        ("sample_age_p95_ms", "sample age p95 ms"),
        ("missed_samples", "missed samples"),
        ("rss_peak_mb", "RSS MB"),
        ("rss_growth_mb", "RSS growth MB"),
    ]
    keyframe_runs = [r for r in runs if r.mode == "keyframes"]
    verdict = ""
    if keyframe_runs:
        biggest = max(keyframe_runs, key=lambda r: r.cameras)
        ok = biggest.cores_used < TARGET_CORES and biggest.online == biggest.cameras
        verdict = (
            f"**Target** ({biggest.cameras} keyframe-only cameras under {TARGET_CORES:g} core): "
            f"{'met' if ok else 'NOT met'}: {biggest.cores_used:.2f} cores.\n"
        )
    return f"""# Ingest benchmark

{config.width}x{config.height} H.264 at {config.fps} fps, keyframe every {config.gop} frames,
{config.bit_rate / 1e6:g} Mbit/s, streamed over RTSP/TCP by GStreamer's RTSP server without re-encoding.
One sample per camera every {config.sample_interval_s:g} s; {config.seconds:g} s window after {config.warmup_s:g} s
warm-up. Machine: {m["cpu"]}, {m["cores"]} cores; Python {m["python"]}, PyAV {m["pyav"]} (FFmpeg {m["ffmpeg"]}),
{m["date"]}.

{verdict}
{markdown_table([asdict(r) for r in runs], columns)}

- cores used: CPU time of the streamwatch process (camera threads, sampler, RGB conversion) / wall time.
  The RTSP server runs on the same cores and is reported separately.
- keeps up: the cameras decoded at least 90 % of what their mode should (every frame, or every keyframe).
  A machine that cannot keep up reads the streams slower than real time (TCP pushes back on the server),
  so its frames fall ever further behind live, whatever the sample age says.
- sample age: how old the newest decoded frame was when the sampler took it. Keyframe-only holds a frame
  up to one keyframe interval (here 1 s), so its median is about half of that.
- Plot: `{config.name}.png`. Raw numbers: `{config.name}.json`. Re-run: `streamwatch bench ingest`.
"""


def _plot(runs: list[IngestRun], path: Path, config: IngestBenchConfig) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (cores, ages) = plt.subplots(1, 2, figsize=(10, 4))
    for index, mode in enumerate(config.modes):
        points = [r for r in runs if r.mode == mode]
        counts, color = [r.cameras for r in points], f"C{index}"
        cores.plot(counts, [r.cores_used for r in points], marker="o", color=color, label=mode)
        ages.plot(counts, [r.sample_age_p95_ms or 0 for r in points], marker="o", color=color, label=f"{mode} p95")
        ages.plot(
            counts,
            [r.sample_age_p50_ms or 0 for r in points],
            marker=".",
            linestyle=":",
            color=color,
            label=f"{mode} p50",
        )
    cores.axhline(TARGET_CORES, color="grey", linestyle="--", label="target: 1 core")
    cores.set(xlabel="cameras", ylabel="CPU cores used", title=f"{config.width}x{config.height} H.264 decode")
    ages.set(xlabel="cameras", ylabel="ms", title="sample age")
    for axis in (cores, ages):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
