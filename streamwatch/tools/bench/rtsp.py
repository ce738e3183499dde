"""Start and stop GStreamer's RTSP server (rtsp_server.py) as a child process: simulated cameras."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")
GST_PYTHON = os.environ.get("STREAMWATCH_GST_PYTHON", "/usr/bin/python3")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RtspServer:
    """`with RtspServer({"/cam": clip}) as server: server.url("/cam")`. stop() and start() again
    keep the port, like a camera that reboots."""

    def __init__(
        self,
        mounts: Mapping[str, Path],
        *,
        audio_only: Sequence[str] = (),
        port: int | None = None,
        python: str = GST_PYTHON,
    ) -> None:
        self.mounts = dict(mounts)
        self.audio_only = list(audio_only)
        self.port = port or free_port()
        self.python = python
        self.process: subprocess.Popen[str] | None = None

    def url(self, mount: str, *, userinfo: str = "") -> str:
        at = f"{userinfo}@" if userinfo else ""
        return f"rtsp://{at}127.0.0.1:{self.port}{mount}"

    def start(self, timeout_s: float = 20.0) -> None:
        command = [self.python, str(SERVER_SCRIPT), "--port", str(self.port)]
        command += [arg for path, file in self.mounts.items() for arg in ("--mount", f"{path}={file}")]
        command += [arg for path in self.audio_only for arg in ("--audio-only", path)]
        deadline = time.monotonic() + timeout_s
        while True:  # the port of a just-killed server can take a moment to be free again
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            line = self._first_line(process, deadline)
            if line.startswith("ready"):
                self.process = process
                return
            process.kill()
            output = line + (process.stdout.read() if process.stdout else "")
            process.wait()
            if "cannot listen" not in line or time.monotonic() > deadline:
                raise RuntimeError(f"RTSP server did not start ({' '.join(command)}):\n{output}")
            time.sleep(0.2)

    @staticmethod
    def _first_line(process: subprocess.Popen[str], deadline: float) -> str:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], max(0.0, deadline - time.monotonic()))
        return process.stdout.readline() if ready else "timed out waiting for the server\n"

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None

    def __enter__(self) -> RtspServer:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
