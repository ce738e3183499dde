"""A real RTSP server for tests and benchmarks: GStreamer's gst-rtsp-server, files served without re-encoding.

Runs under a Python that has GStreamer's `gi` bindings (Debian: /usr/bin/python3 with python3-gi and
gir1.2-gst-rtsp-server-1.0); it imports nothing from streamwatch. Prints "ready" once listening.

    rtsp_server.py --port 8554 --mount /cam=clip.mp4 [--mount /b=other.mp4] [--audio-only /mic]

Each client gets its own pipeline from the start of the file (like a camera, the stream is paced to
real time). H.264 in MP4 only; `--audio-only` serves a stream with no video at all.
"""

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", required=True)
    parser.add_argument("--mount", action="append", default=[], help="/path=FILE.mp4 (H.264)")
    parser.add_argument("--audio-only", action="append", default=[], help="/path: a stream with no video")
    args = parser.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_service(args.port)
    mounts = server.get_mount_points()
    for spec in args.mount:
        path, _, filename = spec.partition("=")
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(f'( filesrc location="{filename}" ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 )')
        factory.set_shared(False)
        mounts.add_factory(path, factory)
    for path in args.audio_only:
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch("( audiotestsrc is-live=true ! audioconvert ! mulawenc ! rtppcmupay name=pay0 pt=0 )")
        factory.set_shared(False)
        mounts.add_factory(path, factory)
    if server.attach(None) == 0:
        print(f"error: cannot listen on port {args.port}", flush=True)
        return 1
    print("ready", flush=True)
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
