"""`config.toml` -> typed settings. Every problem names the file, line and key, and what is expected."""

from streamwatch.config.fields import identifier, is_loopback
from streamwatch.config.jobs import JobsConfig
from streamwatch.config.labels import LabelsConfig
from streamwatch.config.notify import NotifyConfig
from streamwatch.config.sections import (
    CameraConfig,
    EventLogConfig,
    ModelConfig,
    MqttConfig,
    RemoteConfig,
    ServeConfig,
    StorageConfig,
    WebConfig,
)
from streamwatch.config.settings import Settings, load_settings

__all__ = [
    "CameraConfig",
    "EventLogConfig",
    "JobsConfig",
    "LabelsConfig",
    "ModelConfig",
    "MqttConfig",
    "NotifyConfig",
    "RemoteConfig",
    "ServeConfig",
    "Settings",
    "StorageConfig",
    "WebConfig",
    "identifier",
    "is_loopback",
    "load_settings",
]
