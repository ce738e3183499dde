"""`config.toml` -> typed settings. Every problem names the file, line and key, and what is expected."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, ValidationError, field_validator

from streamwatch.config.fields import LOCAL_PREFIXES, NETWORK_PREFIXES
from streamwatch.config.jobs import JobsConfig
from streamwatch.config.labels import LabelsConfig
from streamwatch.config.notify import NotifyConfig
from streamwatch.config.release import ReleaseConfig
from streamwatch.config.sections import (
    CameraConfig,
    EventLogConfig,
    ModelConfig,
    MqttConfig,
    ServeConfig,
    StorageConfig,
    WebConfig,
    _Section,
)
from streamwatch.config.tomlfile import Loc, problem, read_toml, substitute_env, validation_problems
from streamwatch.errors import DataFileError


class Settings(_Section):
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = Field("text", description="json: one JSON object a line (log shippers).")
    shard: str = Field(
        "1/1", description="I/N: this instance runs the cameras whose id hashes to I of N (`run --shard`)."
    )
    rules_dir: Path = Field(Path("rules"), description="Folder of rule files (*.toml).")
    model: ModelConfig = Field(default_factory=ModelConfig)
    cameras: list[CameraConfig] = Field(default_factory=list)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    event_log: EventLogConfig = Field(default_factory=EventLogConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    labels: LabelsConfig = Field(default_factory=LabelsConfig)
    jobs: JobsConfig = Field(default_factory=JobsConfig)
    release: ReleaseConfig = Field(default_factory=ReleaseConfig)
    notify: list[NotifyConfig] = Field(default_factory=list, max_length=50)
    source: Path = Field(Path("config.toml"), exclude=True)
    _lines: dict[Loc, int] = PrivateAttr(default_factory=dict)  # where each key is written in `source`

    @field_validator("notify")
    @classmethod
    def _notify_names(cls, value: list[NotifyConfig]) -> list[NotifyConfig]:
        names = [target.name for target in value]
        doubled = sorted({name for name in names if names.count(name) > 1})
        if doubled:
            raise ValueError(f"each [[notify]] needs its own name; given more than once: {', '.join(doubled)}")
        return value

    @field_validator("shard")
    @classmethod
    def _shard(cls, value: str) -> str:
        from streamwatch.config.shard import Shard

        return str(Shard.parse(value))

    @property
    def base_dir(self) -> Path:
        return self.source.parent

    def problem(self, loc: Loc, message: str) -> str:
        """`config.toml:LINE: field: message` for a key of this config."""
        return problem(self.source, self._lines, loc, message)

    def path(self, value: Path | str) -> Path:
        """A path from the config, relative to the config file's folder. Symlinks are kept, not resolved
        here: a link swapped to a new target while running (a camera folder, a model or adapter
        directory: `current -> v2`) is followed when the path is next read."""
        return Path(os.path.abspath(self.base_dir / Path(value).expanduser()))

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
        local = self.model_ref() != self.model.id or self.model.id.startswith(LOCAL_PREFIXES)
        return self.model.id.rstrip("/").rsplit("/", 1)[-1] if local else self.model.id

    def adapter_path(self) -> Path | None:
        """model.adapter, relative to the config file's folder; None without one."""
        return None if self.model.adapter is None else self.path(self.model.adapter)

    def model_ref(self) -> str:
        """The model as transformers should load it: a resolved local path, or the hub id."""
        value = self.model.id
        if value.startswith(LOCAL_PREFIXES) or self.path(value).is_dir():
            return str(self.path(value))
        return value


def _missing_dir(settings: Settings, ref: str) -> bool:
    return ref.startswith(LOCAL_PREFIXES) and not settings.path(ref).is_dir()


def load_settings(path: str | Path, *, sections: tuple[str, ...] | None = None) -> Settings:
    """Load and validate a config file; raises `DataFileError` with every problem found.

    `sections`: read only these top-level keys (the rest keeps its defaults): a command that needs only
    `[storage]` does not need the environment variables of other sections' secrets."""
    source = Path(path)
    data, lines = read_toml(source)
    if sections is not None:
        data = {key: value for key, value in data.items() if key in sections}
    data = substitute_env(data, source, lines)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise DataFileError(validation_problems(exc, source, lines)) from None
    settings = settings.model_copy(update={"source": source.resolve()})
    settings._lines = lines
    settings, problems = _with_local_sources(settings)
    problems += _problems(settings) if sections is None else []
    if problems:
        raise DataFileError(problems)
    return settings


def _with_local_sources(settings: Settings) -> tuple[Settings, list[str]]:
    """Camera files and folders and the MQTT CA file are relative to the config file, like every path in
    it; they must exist. (Network cameras are tried when the service runs: they may be down now.)"""
    problems: list[str] = []
    cameras = []
    for index, camera in enumerate(settings.cameras):
        if camera.url.lower().startswith(NETWORK_PREFIXES):
            cameras.append(camera)
            continue
        local = settings.path(camera.url.removeprefix("file://"))
        if not local.exists():
            problems.append(settings.problem(("cameras", index, "url"), f"no such file or folder: {local}"))
        cameras.append(camera.model_copy(update={"url": str(local)}))
    snapshots = settings.path(settings.storage.snapshot_dir)
    if snapshots.exists() and not snapshots.is_dir():
        problems.append(settings.problem(("storage", "snapshot_dir"), f"{snapshots} is a file, not a folder"))
    mqtt = settings.mqtt
    if mqtt.ca_file is not None:
        ca_file = settings.path(mqtt.ca_file)
        if not mqtt.tls:
            problems.append(settings.problem(("mqtt", "ca_file"), "ca_file is used only with tls = true"))
        elif not ca_file.is_file():
            problems.append(settings.problem(("mqtt", "ca_file"), f"no such file: {ca_file}"))
        mqtt = mqtt.model_copy(update={"ca_file": ca_file})
    return settings.model_copy(update={"cameras": cameras, "mqtt": mqtt}), problems


def _problems(settings: Settings) -> list[str]:
    """What no single key shows: duplicate camera ids, an open web UI off loopback, a model that is
    not there."""
    problems: list[str] = []
    seen: set[str] = set()
    for index, camera in enumerate(settings.cameras):
        if camera.id in seen:
            problems.append(settings.problem(("cameras", index, "id"), f"camera id {camera.id!r} is used twice"))
        seen.add(camera.id)
    web = settings.web
    if web.enabled and not web.loopback and web.password_hash is None and web.token_hash is None:
        problems.append(
            settings.problem(
                ("web", "host"),
                f"the web UI would listen on {web.host}, beyond this machine, without a password: set "
                "web.password_hash or web.token_hash (streamwatch hash-password), or bind to 127.0.0.1",
            )
        )
    ref = settings.model.id
    if settings.model.backend == "openai" and not settings.model.remote.base_urls:
        problems.append(
            settings.problem(
                ("model", "remote", "base_urls"),
                'model.backend = "openai" needs at least one server URL, e.g. ["http://gpu1:8000/v1"]',
            )
        )
    elif settings.model.backend == "transformers" and _missing_dir(settings, ref):
        problems.append(
            settings.problem(
                ("model", "id"),
                f"local model directory {ref} does not exist "
                f"(build the offline demo model with: streamwatch model make-tiny {ref})",
            )
        )
    if settings.model.adapter is not None:
        problems.extend(_adapter_problems(settings))
    return problems


def _adapter_problems(settings: Settings) -> list[str]:
    from streamwatch.errors import AdapterError
    from streamwatch.inference.adapter import check_adapter_dir, is_empty_slot

    loc = ("model", "adapter")
    if settings.model.backend != "transformers":
        return [settings.problem(loc, 'an adapter is merged into a local model: it needs backend = "transformers"')]
    path = settings.adapter_path() or Path()
    if is_empty_slot(path):
        return []  # the model runs alone until an adapter is written there
    try:
        check_adapter_dir(path)
    except AdapterError as exc:
        return [settings.problem(loc, str(exc))]
    return []
