"""`[jobs]`: `streamwatch eval` and `streamwatch model finetune` started from the web UI / REST API."""

from __future__ import annotations

from pydantic import Field, field_validator

from streamwatch.config.fields import device_name
from streamwatch.config.sections import _Section


class JobsConfig(_Section):
    """Jobs run one at a time, each as a child process of the same `streamwatch` command line on this
    config; their reports and logs are kept in `dir` (the newest `keep`)."""

    enabled: bool = Field(True, description="Allow eval and fine-tune jobs from the web UI and REST API.")
    dir: str = Field("data/jobs", description="Folder of the jobs' reports, logs and adapters.")
    keep: int = Field(20, ge=1, le=1000, description="Finished jobs kept; the oldest go first (an applied one stays).")
    timeout_s: float = Field(21_600, ge=60, le=604_800, description="A job running longer is stopped.")
    clips_dir: str = Field(
        "labelled-clips", description="Folder of labelled clip manifests (*.toml) a job may be given by name."
    )
    device: str = Field("auto", description="Where fine-tuning runs: auto (CUDA where there is one), cpu, cuda:N.")

    _device = field_validator("device")(device_name)
