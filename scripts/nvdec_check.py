"""NVDEC check on a GPU machine: decode the same 1080p H.264 file in software and with hwaccel=cuda.

    python scripts/nvdec_check.py [--frames 250] [--streams 8] [--json OUT]

Prints the decoder each path used, frames/s and CPU time per frame for one stream, the same for
`--streams` parallel streams (one thread each, as camera workers do), and how far the RGB pictures of
the two paths differ. Needs PyAV built with CUDA support (the PyPI wheels are).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streamwatch.ingest.stream import VideoStream
from streamwatch.tools.synthetic import write_clip


def decode(path: Path, hwaccel: str, keep: int = 3) -> dict[str, Any]:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    frames = 0
    kept: list[np.ndarray] = []
    with VideoStream(str(path), mode="all", hwaccel=hwaccel) as stream:
        for frame, _ in stream.frames():
            frames += 1
            if len(kept) < keep:
                kept.append(frame.to_ndarray(format="rgb24"))
        decoder, note = stream.decoder, stream.hwaccel_note
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {"decoder": decoder, "note": note, "frames": frames, "fps": frames / wall, "cpu_ms_per_frame":
            1000 * cpu / frames, "kept": kept}  # fmt: skip


def parallel(path: Path, hwaccel: str, streams: int) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    threads = [threading.Thread(target=lambda: results.append(decode(path, hwaccel, keep=0))) for _ in range(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    frames = sum(r["frames"] for r in results)
    return {"streams": streams, "fps_total": frames / wall, "cores_used": cpu / wall,
            "decoders": sorted({r["decoder"] for r in results})}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=250)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        clip = write_clip(Path(folder) / "cam.mp4", seconds=args.frames / 25, fps=25, width=1920, height=1080,
                          gop=25, bit_rate=4_000_000, grain=6)  # fmt: skip
        software, cuda = decode(clip, "none"), decode(clip, "cuda")
        diff = float(np.mean([np.abs(a.astype(int) - b.astype(int)).mean() for a, b in
                              zip(software.pop("kept"), cuda.pop("kept"), strict=True)]))  # fmt: skip
        report = {
            "cpu_count": os.cpu_count(),
            "one_stream": {"software": software, "cuda": cuda},
            "parallel": {
                "software": parallel(clip, "none", args.streams),
                "cuda": parallel(clip, "cuda", args.streams),
            },
            "mean_abs_rgb_difference": round(diff, 3),
        }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
