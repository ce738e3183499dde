"""Prometheus metrics: events observed as they happen, plus live values read at scrape time."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from streamwatch.inference.lanes import QueueStats
from streamwatch.ingest.status import CameraStatus

if TYPE_CHECKING:
    from streamwatch.pipeline.decision import Decision

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CAMERA_STATES = ("starting", "online", "offline", "disabled")


class Metrics:
    """One registry per service (tests run several services in one process)."""

    def __init__(self, cameras: Callable[[], Sequence[CameraStatus]] = list) -> None:
        self.registry = CollectorRegistry()
        self.inference_latency = Histogram(
            "streamwatch_inference_latency_seconds",
            "From submit to answer, per request",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
            registry=self.registry,
        )
        self.sample_age = Histogram(
            "streamwatch_sample_age_seconds",
            "Age of the camera frame when it was sampled",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
            registry=self.registry,
        )
        self.alert_events = Counter(
            "streamwatch_alert_events",
            "Alert events by camera, rule and kind (open/update/resolved)",
            ["camera", "rule", "kind"],
            registry=self.registry,
        )
        self.answers = Counter(
            "streamwatch_answers",
            "Rule answers by camera: asked the model, or reused while the picture stood still",
            ["camera", "how"],
            registry=self.registry,
        )
        self.gate = Counter(
            "streamwatch_gate_decisions",
            "Change gate decisions by camera and why: reused, changed, light, noisy, old, first, question, off",
            ["camera", "why"],
            registry=self.registry,
        )
        self.gate_noise = Gauge(
            "streamwatch_gate_noise",
            "The picture noise the change gate assumed at its last comparison (of 255), per camera and rule",
            ["camera", "rule"],
            registry=self.registry,
        )
        self.frame_history_bytes = Gauge(
            "streamwatch_frame_history_bytes",
            "Memory of the frames kept for questions over several frames, per camera",
            ["camera"],
            registry=self.registry,
        )
        self.jobs = Counter(
            "streamwatch_jobs",
            "Eval and fine-tune jobs finished, by kind and state (succeeded, failed, cancelled, ...)",
            ["kind", "state"],
            registry=self.registry,
        )
        self.notifications = Counter(
            "streamwatch_notifications",
            "Notifications by target (name#N) and outcome: sent, failed (an attempt, retried), quiet, over_limit",
            ["target", "outcome"],
            registry=self.registry,
        )
        self.job_running = Gauge("streamwatch_job_running", "1 while a job runs", registry=self.registry)
        self.registry.register(_Live(cameras))

    name = "the metrics"

    async def take(self, decisions: Sequence[Decision]) -> None:
        """A decision sink: answers asked or reused, the gate's verdicts and noise, alert events."""
        for decision in decisions:
            camera, verdict = decision.camera.id, decision.gate
            self.gate.labels(camera, verdict.why).inc()
            if verdict.compared:
                self.gate_noise.labels(camera, decision.rule.id).set(verdict.noise)
            self.answers.labels(camera, "reused" if decision.answer.reused else "asked").inc()
            if decision.transition is not None:
                self.alert_events.labels(camera, decision.rule.id, decision.transition).inc()

    def watch_queue(self, stats: Callable[[], QueueStats]) -> None:
        """Report the shared queue (inference/lanes.QueueStats) at scrape time."""
        self.registry.register(_Queue(stats))

    def watch_model(self, state: Callable[[], Mapping[str, Any]]) -> None:
        """Report the model in use and its reloads (inference/reload.ModelState.as_dict) at scrape time."""
        self.registry.register(_Model(state))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Live(Collector):
    def __init__(self, cameras: Callable[[], Sequence[CameraStatus]]) -> None:
        self.cameras = cameras

    def collect(self) -> Iterator[Metric]:
        yield from _cameras(self.cameras())
        yield from _gpu()


class _Queue(Collector):
    def __init__(self, stats: Callable[[], QueueStats]) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        yield from _queue(self.stats())


class _Model(Collector):
    def __init__(self, state: Callable[[], Mapping[str, Any]]) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        state = self.state()
        info = GaugeMetricFamily("streamwatch_model_info", "The model answering (1)", labels=["model", "adapter"])
        info.add_metric([str(state["id"]), str(state["adapter"] or "")], 1)
        yield info
        yield CounterMetricFamily("streamwatch_model_reloads", "New model versions swapped in", value=state["reloads"])
        yield CounterMetricFamily(
            "streamwatch_model_reload_failures",
            "New model versions that failed to load",
            value=state["reload_failures"],
        )
        yield GaugeMetricFamily(
            "streamwatch_model_reload_failing",
            "1 while the latest model version failed to load (the previous one answers)",
            value=int(state["reload_error"] is not None),
        )


def _queue(stats: QueueStats) -> Iterator[Metric]:
    yield GaugeMetricFamily("streamwatch_queue_depth", "Requests waiting for the model", value=stats.pending)
    yield GaugeMetricFamily(
        "streamwatch_model_stalled_seconds",
        "Seconds requests have waited with no model call finishing (0 while answers flow)",
        value=stats.stalled_for(time.monotonic()),
    )
    requests = CounterMetricFamily("streamwatch_requests", "Requests by outcome", labels=["outcome"])
    requests.add_metric(["answered"], stats.answered)
    requests.add_metric(["failed"], stats.failed)
    yield requests
    drops = CounterMetricFamily("streamwatch_dropped_requests", "Requests dropped, by reason", labels=["reason"])
    for reason in sorted({"deadline", "overflow", "shutdown", *stats.dropped}):
        drops.add_metric([reason], stats.dropped.get(reason, 0))
    yield drops
    cumulative, buckets = 0, []
    for bound in BATCH_BUCKETS:
        cumulative = sum(n for size, n in stats.batch_sizes.items() if size <= bound)
        buckets.append((str(bound), cumulative))
    total = sum(stats.batch_sizes.values())
    buckets.append(("+Inf", total))
    size_sum = sum(size * n for size, n in stats.batch_sizes.items())
    yield HistogramMetricFamily(
        "streamwatch_batch_size", "Requests per forward pass", buckets=buckets, sum_value=size_sum
    )


def _cameras(cameras: Sequence[CameraStatus]) -> Iterator[Metric]:
    up = GaugeMetricFamily("streamwatch_camera_up", "1 while the camera delivers frames", labels=["camera"])
    state = GaugeMetricFamily(
        "streamwatch_camera_state", "1 for the camera's current state", labels=["camera", "state"]
    )
    fps = GaugeMetricFamily("streamwatch_camera_fps", "Frames decoded per second", labels=["camera"])
    received = GaugeMetricFamily(
        "streamwatch_camera_stream_fps", "Video packets received per second", labels=["camera"]
    )
    reconnects = CounterMetricFamily("streamwatch_camera_reconnects", "Reconnects since start", labels=["camera"])
    stalls = GaugeMetricFamily("streamwatch_camera_stalls_last_hour", "Watchdog restarts", labels=["camera"])
    clip_buffer = GaugeMetricFamily(
        "streamwatch_camera_clip_buffer_bytes", "Memory of the packets kept for event clips", labels=["camera"]
    )
    for camera in cameras:
        up.add_metric([camera.id], 1.0 if camera.state == "online" else 0.0)
        for name in CAMERA_STATES:
            state.add_metric([camera.id, name], 1.0 if camera.state == name else 0.0)
        fps.add_metric([camera.id], camera.fps)
        received.add_metric([camera.id], camera.stream_fps)
        reconnects.add_metric([camera.id], camera.reconnects)
        stalls.add_metric([camera.id], camera.stalls_last_hour)
        clip_buffer.add_metric([camera.id], camera.clip_buffer_bytes)
    yield from (up, state, fps, received, reconnects, stalls, clip_buffer)


CUDA_ONLY = ("streamwatch_gpu_memory_bytes", "streamwatch_gpu_memory_reserved_bytes")  # gauges, on CUDA only


def _gpu() -> Iterator[Metric]:
    torch = sys.modules.get("torch")  # only if the backend loaded it; never import torch for a scrape
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return
    allocated = GaugeMetricFamily(CUDA_ONLY[0], "GPU memory held by tensors", labels=["device"])
    reserved = GaugeMetricFamily(CUDA_ONLY[1], "GPU memory reserved", labels=["device"])
    for index in range(torch.cuda.device_count()):
        allocated.add_metric([str(index)], float(torch.cuda.memory_allocated(index)))
        reserved.add_metric([str(index)], float(torch.cuda.memory_reserved(index)))
    yield allocated
    yield reserved
