"""The sections of `config.toml`: cameras, model, MQTT, storage, web UI, `serve`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from streamwatch.config.fields import (
    device_name,
    host_name,
    identifier,
    is_loopback,
    legacy_threshold,
    not_blank,
    proxy_networks,
    source_url,
    topic,
)
from streamwatch.redact import SECRETS, display_url


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CameraConfig(_Section):
    id: str = Field(description="Short unique id, used in MQTT topics: lowercase letters, digits, - and _.")
    url: str = Field(description="rtsp://, http(s):// stream, a video file or a folder of images.")
    name: str = Field("", description="Display name; defaults to the id.")
    enabled: bool = Field(True, description="Disabled cameras are not opened.")
    sample_interval_s: float = Field(2.0, ge=0.1, le=3600, description="Seconds between sampled frames.")
    transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP transport.")
    loop: bool = Field(True, description="Files and image folders: start again at the end.")
    decode: Literal["auto", "keyframes", "all"] = Field(
        "auto",
        description="keyframes: decode only keyframes; all: every frame; auto: keyframes when the sample "
        "interval is at least the stream's keyframe interval.",
    )
    hwaccel: Literal["none", "cuda", "vaapi", "qsv", "videotoolbox", "d3d11va"] = Field(
        "none", description="Hardware decoding (cuda = NVDEC); falls back to software when unavailable."
    )
    hwaccel_device: str | None = Field(None, description="Device for hwaccel, e.g. '1' (GPU index) or a DRI node.")
    open_timeout_s: float = Field(10.0, gt=0, le=300, description="Give up connecting after this long.")
    read_timeout_s: float = Field(10.0, gt=0, le=300, description="Give up when no data arrives for this long.")
    stall_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="Watchdog: reconnect when no frame was decoded for this long."
    )
    reconnect_max_s: float = Field(30.0, gt=0, le=3600, description="Cap of the reconnect backoff.")
    change_area: float = Field(
        16.0,
        ge=0,
        le=100_000_000,
        description="Reuse a rule's last answer while no changed patch of its picture covers this many "
        "source pixels (0: off; change.py says how light, noise and shake are evened out first).",
    )
    max_reuse_s: float = Field(30.0, ge=0, le=3600, description="...and for at most this long (0: never reuse).")
    change_threshold: float | None = Field(
        None, ge=0, le=1, description="Replaced by change_area: 0 still turns gating off; other values are ignored."
    )
    clips: bool = Field(True, description="Keep the stream's recent packets and save an MP4 clip of each alert.")
    clip_pre_s: float = Field(5.0, ge=0, le=60, description="Clip: seconds before the alert (from a keyframe).")
    clip_post_s: float = Field(5.0, ge=0, le=60, description="Clip: seconds after the alert.")
    clip_buffer_mb: float = Field(
        32.0, gt=0, le=1024, description="Most memory the clip buffer may hold (the oldest packets go first)."
    )
    tags: list[str] = Field(default_factory=list, description="Rules may select cameras by tag.")
    location: str = Field("", description="Template variable {location} for rule questions.")
    zone: str = Field("", description="Template variable {zone} for rule questions.")
    vars: dict[str, str] = Field(default_factory=dict, description="More template variables.")
    describe: bool = Field(
        True, description="Ask the rules' describe follow-up questions when an alert opens on this camera."
    )

    _id = field_validator("id")(identifier)

    @model_validator(mode="after")
    def _legacy_threshold(self) -> CameraConfig:
        legacy_threshold(f"camera {self.id}", self.change_threshold)
        return self

    @property
    def gate_area(self) -> float:
        """The change gate's least changed area, source pixels (0: gating off)."""
        return 0.0 if self.change_threshold == 0 else self.change_area

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return source_url(value)

    @property
    def display_name(self) -> str:
        return self.name or self.id


class RemoteConfig(_Section):
    """`model.backend = "openai"`: OpenAI-compatible chat-completions servers (vLLM, SGLang, llama.cpp,
    Ollama, LM Studio, another `streamwatch serve`)."""

    base_urls: list[str] = Field(default_factory=list, description="e.g. http://gpu1:8000/v1; several: round-robin.")
    api_key: SecretStr | None = Field(None, description="Sent as a Bearer token; use ${OPENAI_API_KEY}.")
    concurrency: int = Field(16, ge=1, le=1024, description="Most requests in flight at once, over all servers.")
    timeout_s: float = Field(30.0, gt=0, le=600, description="Longest wait for one reply.")
    retries: int = Field(2, ge=0, le=10, description="More attempts after a timeout, 5xx, 429 or malformed reply.")
    health_interval_s: float = Field(10.0, gt=0, le=3600, description="How often each server's /models is checked.")
    breaker_failures: int = Field(5, ge=1, le=1000, description="Failures in a row that take a server out of use...")
    breaker_reset_s: float = Field(30.0, gt=0, le=3600, description="...for this long; then one request tries it.")
    top_logprobs: int = Field(10, ge=0, le=20, description="Alternatives asked for with yes/no questions.")
    jpeg_quality: int = Field(90, ge=30, le=100, description="Frames are sent as JPEG at this quality.")

    @field_validator("base_urls")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for url in value:
            SECRETS.add_url(url)
            parts = urlsplit(display_url(url))
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{display_url(url)!r}: expected an http(s) URL like http://gpu1:8000/v1")
        return [url.rstrip("/") for url in value]


class ModelConfig(_Section):
    id: str = Field("./models/demo-glm4v", description="Hugging Face hub id or local checkpoint directory.")
    _id = field_validator("id")(not_blank)
    backend: Literal["transformers", "openai"] = Field(
        "transformers", description="transformers: in this process; openai: remote servers, see [model.remote]."
    )
    remote: RemoteConfig = Field(default_factory=RemoteConfig)
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: bf16/fp16 on CUDA, fp32 on CPU."
    )
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = Field("sdpa")
    max_batch: int = Field(8, ge=1, le=256, description="Most requests in one forward pass.")
    max_wait_ms: int = Field(50, ge=0, le=10_000, description="Longest wait to fill a batch.")
    max_image_side: int = Field(1280, ge=64, le=8192, description="Frames are downscaled to this longest side.")
    max_new_tokens: int = Field(16, ge=1, le=512, description="Longest generated answer (count/choice/text).")
    request_timeout_s: float = Field(10.0, gt=0, le=600, description="A request not answered by then is dropped.")
    compile: bool = Field(
        False, description="torch.compile the model's layers: ~30 % faster on an H100, a minute of warm-up per shape."
    )
    preprocess: Literal["auto", "torch", "processor"] = Field(
        "auto",
        description="Image preprocessing: torch on the model's device (auto: on CUDA), or the checkpoint's "
        "own processor on the CPU.",
    )
    quantize: Literal["none", "fp8"] = Field(
        "none", description="fp8: FP8 weights for the linear layers (Ada/Hopper GPUs): faster, slightly less exact."
    )
    workers: int = Field(
        2, ge=1, le=8, description="Batches in flight: the next is prepared on the CPU while one runs on the model."
    )
    max_question_chars: int = Field(
        2000, ge=16, le=100_000, description="Longest question (rule, describe, web, serve), in characters."
    )
    max_question_tokens: int = Field(
        512, ge=8, le=100_000, description="Longest question in the model's tokens (lowered to fit its context)."
    )
    stall_timeout_s: float = Field(
        60.0, gt=0, le=3600, description="Requests waiting and no model call finished for this long: not ready."
    )
    adapter: str | None = Field(
        None,
        description="A LoRA adapter directory (peft; `streamwatch model finetune` writes one) merged into the "
        "model's weights. transformers backend only.",
    )
    watch_s: float = Field(
        2.0,
        ge=0,
        le=3600,
        description="How often the local model directory and the adapter are checked for a new version, which "
        "is then loaded beside the running one and swapped in between batches (0: never).",
    )

    _device = field_validator("device")(device_name)


class MqttConfig(_Section):
    enabled: bool = Field(True, description="Publish alerts over MQTT.")
    host: str = Field("localhost")
    _host = field_validator("host")(host_name)
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = Field(None, description="Use ${MQTT_PASSWORD} to read it from the environment.")
    topic_prefix: str = Field("streamwatch", description="Every topic starts with this.")
    client_id: str | None = None
    tls: bool = False
    ca_file: Path | None = None
    home_assistant_discovery: bool = Field(False, description="Announce a binary_sensor per camera and rule.")
    home_assistant_prefix: str = Field("homeassistant", description="Home Assistant's discovery prefix.")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive; offline is declared after 1.5x.")

    _topics = field_validator("topic_prefix", "home_assistant_prefix")(topic)


class StorageConfig(_Section):
    database_url: str = Field(
        "sqlite:///data/streamwatch.db", description="sqlite:///file or postgresql://user:password@host/db."
    )
    snapshot_dir: Path = Field(Path("data/snapshots"), description="JPEG snapshots of events.")
    retention_days: int = Field(30, ge=1, le=3650)
    max_disk_gb: float = Field(
        20.0, gt=0, le=1_000_000, description="Snapshots and clips together; past it the oldest clips go first."
    )

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        from sqlalchemy.exc import ArgumentError

        from streamwatch.store.urls import SUPPORTED, engine_url

        try:
            engine_url(value)
        except ArgumentError:
            raise ValueError(f"expected a database URL: {SUPPORTED}") from None
        return value


class EventLogConfig(_Section):
    """The event log output: every event as a line of JSON appended to a file."""

    enabled: bool = Field(False, description="Append every event to `path` as one line of JSON.")
    path: Path = Field(Path("data/events.jsonl"), description="The file (relative to the config file).")


class _Served(_Section):
    """What the web UI and `serve` share as HTTP servers: who the client is, and the memory of images."""

    trusted_proxies: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="Reverse proxies (addresses or networks) whose X-Forwarded-For/-Proto are believed; "
        "empty: none, every client is the address that connected.",
    )
    _proxies = field_validator("trusted_proxies")(proxy_networks)
    image_memory_mb: float = Field(
        512.0,
        ge=64,
        le=65536,
        description="Memory for request images being decoded or waiting for the model; more waits, then 503.",
    )


class WebConfig(_Served):
    enabled: bool = True
    host: str = Field("127.0.0.1", description="Bind address; off-loopback needs authentication.")
    _host = field_validator("host")(host_name)
    port: int = Field(8080, ge=1, le=65535)
    password_hash: str | None = Field(
        None, description="Login password, hashed: create it with `streamwatch hash-password`."
    )
    token_hash: str | None = Field(None, description="API token (Authorization: Bearer), hashed the same way.")
    session_hours: float = Field(12.0, gt=0, le=24 * 90, description="How long a login lasts.")
    public_url: str | None = Field(
        None, description="How operators reach this UI (https://watch.example.com): links in notifications."
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names clients may use to reach the UI besides its address (reverse proxies); on "
        "loopback only localhost names are accepted otherwise (DNS rebinding).",
    )

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return None if value is None else value.rstrip("/")

    @field_validator("password_hash", "token_hash")
    @classmethod
    def _hash(cls, value: str | None) -> str | None:
        from streamwatch.config.passwords import hash_problem

        if value is not None:
            why = hash_problem(value)
            if why is not None:
                raise ValueError(f"{why}; make one with `streamwatch hash-password` (pbkdf2_sha256$...)")
        return value

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def auth_required(self) -> bool:
        return not self.loopback or self.password_hash is not None or self.token_hash is not None


class ServeConfig(_Served):
    """`streamwatch serve`: the batched engine as an OpenAI-compatible chat-completions server."""

    host: str = Field("127.0.0.1", description="Bind address; off-loopback needs api_key.")
    _host = field_validator("host")(host_name)
    port: int = Field(8000, ge=1, le=65535)
    api_key: SecretStr | None = Field(
        None, description="Clients send it as 'Authorization: Bearer KEY'; use ${STREAMWATCH_API_KEY}."
    )
    model_name: str = Field("", description="The model id clients see and send; default: model.id's last part.")
    fetch_image_urls: bool = Field(
        False, description="Fetch http(s) image URLs (data: URIs always work); public addresses only unless allowed."
    )
    fetch_allow_hosts: list[str] = Field(
        default_factory=list, description="Host names (globs like *.example.com) image URLs may name; empty: any."
    )
    fetch_allow_private: bool = Field(
        False, description="Also fetch from loopback, private, link-local and other internal addresses."
    )
    fetch_timeout_s: float = Field(10.0, gt=0, le=120, description="Longest wait for one image URL.")
    max_image_mb: float = Field(20.0, gt=0, le=500, description="Largest image accepted, encoded.")
    max_tokens: int = Field(1024, ge=1, le=8192, description="Most tokens one request may generate.")
    max_images: int = Field(8, ge=1, le=16, description="Most images in one request (frames of a camera).")

    @field_validator("api_key")
    @classmethod
    def _key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            SECRETS.add(value.get_secret_value())
            if len(value.get_secret_value().strip()) < 16:
                raise ValueError("use at least 16 characters (e.g. `openssl rand -hex 24`)")
        return value
