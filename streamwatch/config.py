"""`config.toml` -> typed settings. Every problem names the file, line and key, and what is expected."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from streamwatch.tomlfile import DataFileError, load_model, problem

CAMERA_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
_URL_SCHEMES = ("rtsp", "rtsps", "http", "https", "file")
_LOCAL_PREFIXES = ("./", "../", "/", "~")  # a model id starting so is a path, never a hub id


def identifier(value: str) -> str:
    """Camera and rule ids end up in MQTT topics and URLs: a safe, short subset of characters."""
    if not CAMERA_ID.match(value):
        raise ValueError("expected lowercase letters, digits, '-' or '_' (at most 64), starting with a letter or digit")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CameraConfig(_Section):
    id: str = Field(description="Short unique id, used in MQTT topics: lowercase letters, digits, - and _.")
    url: str = Field(description="rtsp://, http(s):// stream, a video file or a folder of images.")
    name: str = Field("", description="Display name; defaults to the id.")
    enabled: bool = Field(True, description="Disabled cameras are not opened.")
    sample_interval_s: float = Field(2.0, gt=0, le=3600, description="Seconds between sampled frames.")
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
    tags: list[str] = Field(default_factory=list, description="Rules may select cameras by tag.")
    location: str = Field("", description="Template variable {location} for rule questions.")
    zone: str = Field("", description="Template variable {zone} for rule questions.")
    vars: dict[str, str] = Field(default_factory=dict, description="More template variables.")

    _id = field_validator("id")(identifier)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        scheme = urlsplit(value).scheme.lower()
        if "://" in value and scheme not in _URL_SCHEMES:
            raise ValueError(f"unsupported scheme {scheme!r}; expected one of {', '.join(_URL_SCHEMES)} or a file path")
        if scheme in ("rtsp", "rtsps", "http", "https") and not urlsplit(value).hostname:
            raise ValueError("the URL has no host")
        return value

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
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{url!r}: expected an http(s) URL like http://gpu1:8000/v1")
        return [url.rstrip("/") for url in value]


class ModelConfig(_Section):
    id: str = Field("./models/demo-glm4v", description="Hugging Face hub id or local checkpoint directory.")
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

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not _DEVICE.match(value):
            raise ValueError("expected auto, cpu, mps, cuda or cuda:N")
        return value


class MqttConfig(_Section):
    enabled: bool = Field(True, description="Publish alerts over MQTT.")
    host: str = Field("localhost")
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

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value or any(c in value for c in "#+") or value.startswith("/") or value.endswith("/"):
            raise ValueError("expected a topic like 'streamwatch' or 'site/a': no '#', '+' or leading/trailing '/'")
        return value


class StorageConfig(_Section):
    database_url: str = Field(
        "sqlite:///data/streamwatch.db", description="sqlite:///file or postgresql://user:password@host/db."
    )
    snapshot_dir: Path = Field(Path("data/snapshots"), description="JPEG snapshots of events.")
    retention_days: int = Field(30, ge=1, le=3650)

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


class WebConfig(_Section):
    enabled: bool = True
    host: str = Field("127.0.0.1", description="Bind address; off-loopback needs authentication.")
    port: int = Field(8080, ge=1, le=65535)
    password_hash: str | None = Field(
        None, description="Login password, hashed: create it with `streamwatch hash-password`."
    )
    token_hash: str | None = Field(None, description="API token (Authorization: Bearer), hashed the same way.")
    session_hours: float = Field(12.0, gt=0, le=24 * 90, description="How long a login lasts.")

    @field_validator("password_hash", "token_hash")
    @classmethod
    def _hash(cls, value: str | None) -> str | None:
        from streamwatch.web.auth import is_hash

        if value is not None and not is_hash(value):
            raise ValueError("expected a hash made by `streamwatch hash-password` (pbkdf2_sha256$...), not a password")
        return value

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def auth_required(self) -> bool:
        return not self.loopback or self.password_hash is not None or self.token_hash is not None


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ServeConfig(_Section):
    """`streamwatch serve`: the batched engine as an OpenAI-compatible chat-completions server."""

    host: str = Field("127.0.0.1", description="Bind address; off-loopback needs api_key.")
    port: int = Field(8000, ge=1, le=65535)
    api_key: SecretStr | None = Field(
        None, description="Clients send it as 'Authorization: Bearer KEY'; use ${STREAMWATCH_API_KEY}."
    )
    model_name: str = Field("", description="The model id clients see and send; default: model.id's last part.")
    fetch_image_urls: bool = Field(True, description="Fetch http(s) image URLs (data: URIs always work).")
    fetch_timeout_s: float = Field(10.0, gt=0, le=120, description="Longest wait for one image URL.")
    max_image_mb: float = Field(20.0, gt=0, le=500, description="Largest image accepted, encoded.")
    max_tokens: int = Field(1024, ge=1, le=8192, description="Most tokens one request may generate.")


class Settings(_Section):
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    shard: str = Field(
        "1/1", description="I/N: this instance runs the cameras whose id hashes to I of N (`run --shard`)."
    )
    rules_dir: Path = Field(Path("rules"), description="Folder of rule files (*.toml).")
    model: ModelConfig = Field(default_factory=ModelConfig)
    cameras: list[CameraConfig] = Field(default_factory=list)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    source: Path = Field(Path("config.toml"), exclude=True)

    @field_validator("shard")
    @classmethod
    def _shard(cls, value: str) -> str:
        from streamwatch.shard import Shard

        return str(Shard.parse(value))

    @property
    def base_dir(self) -> Path:
        return self.source.parent

    def path(self, value: Path | str) -> Path:
        """A path from the config, relative to the config file's folder."""
        return (self.base_dir / Path(value).expanduser()).resolve()

    def database_url(self) -> str:
        """storage.database_url with a relative SQLite path made relative to the config file."""
        url = self.storage.database_url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
            return prefix + str(self.path(url[len(prefix) :]))
        return url

    def served_model_name(self) -> str:
        """The model id `streamwatch serve` shows its clients."""
        if self.serve.model_name:
            return self.serve.model_name
        local = self.model_ref() != self.model.id or self.model.id.startswith(_LOCAL_PREFIXES)
        return self.model.id.rstrip("/").rsplit("/", 1)[-1] if local else self.model.id

    def model_ref(self) -> str:
        """The model as transformers should load it: a resolved local path, or the hub id."""
        value = self.model.id
        if value.startswith(_LOCAL_PREFIXES) or self.path(value).is_dir():
            return str(self.path(value))
        return value


def _missing_dir(settings: Settings, ref: str) -> bool:
    return ref.startswith(_LOCAL_PREFIXES) and not settings.path(ref).is_dir()


def load_settings(path: str | Path) -> Settings:
    """Load and validate a config file; raises `DataFileError` with every problem found."""
    source = Path(path)
    settings, lines = load_model(Settings, source)
    settings = settings.model_copy(update={"source": source.resolve()})
    problems: list[str] = []
    seen: set[str] = set()
    for index, camera in enumerate(settings.cameras):
        if camera.id in seen:
            problems.append(problem(source, lines, ("cameras", index, "id"), f"camera id {camera.id!r} is used twice"))
        seen.add(camera.id)
    web = settings.web
    if web.enabled and not web.loopback and web.password_hash is None and web.token_hash is None:
        problems.append(problem(
            source, lines, ("web", "host"),
            f"the web UI would listen on {web.host}, beyond this machine, without a password: set "
            "web.password_hash or web.token_hash (streamwatch hash-password), or bind to 127.0.0.1",
        ))  # fmt: skip
    ref = settings.model.id
    if settings.model.backend == "openai" and not settings.model.remote.base_urls:
        problems.append(problem(source, lines, ("model", "remote", "base_urls"),
                                'model.backend = "openai" needs at least one server URL, e.g. '
                                '["http://gpu1:8000/v1"]'))  # fmt: skip
    elif settings.model.backend == "transformers" and _missing_dir(settings, ref):
        problems.append(problem(
            source, lines, ("model", "id"),
            f"local model directory {ref} does not exist "
            f"(build the offline demo model with: streamwatch model make-tiny {ref})",
        ))  # fmt: skip
    if problems:
        raise DataFileError(problems)
    return settings
