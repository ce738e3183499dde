"""What a job is asked to do (the REST API's body, the web UI's forms) and the command line it runs:
`streamwatch eval` or `streamwatch model finetune --from-reviews`, on the service's own config."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from streamwatch.config.fields import CAMERA_ID
from streamwatch.learning.finetune.settings import LoraSettings

JOB_ID = r"^\d{8}-\d{6}-[0-9a-f]{4}$"
ADAPTER = r"^(config|none|\d{8}-\d{6}-[0-9a-f]{4})$"
ADAPTER_HELP = "'config' (model.adapter as configured), 'none' (the model alone) or the id of a finished fine-tune job"
ADAPTER_DIR = "adapter"  # a fine-tune job's adapter (and its report) within the job's folder
PATH = r"^[^\x00-\x1f-][^\x00-\x1f]{0,499}$"  # a folder or hub id as written: no control characters, no option


MANIFEST = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\.toml$"
Clips = Annotated[
    list[Annotated[str, Field(pattern=MANIFEST)]],
    Field(max_length=100, description="labelled clip manifests in jobs.clips_dir, by file name"),
]


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    clips: Clips = []


class EvalOptions(_Options):
    """`streamwatch eval`: the labelled examples replayed through the rules and the model; the figures
    go to the rules page."""

    kind: Literal["eval"] = "eval"
    adapter: Annotated[str, Field(pattern=ADAPTER, description=ADAPTER_HELP)] = "config"
    compare_adapter: Annotated[
        str | None, Field(pattern=ADAPTER, description="also evaluate with this adapter, side by side: " + ADAPTER_HELP)
    ] = None
    target_precision: Annotated[
        float | None, Field(gt=0, le=1, description="suggest the lowest threshold reaching this precision")
    ] = None
    compare_rules: Annotated[
        str | None,
        Field(pattern=PATH, description="also evaluate this rules folder (relative to the config's), side by side"),
    ] = None
    compare_model: Annotated[
        str | None, Field(pattern=PATH, description="also evaluate this model (a hub id or a local folder)")
    ] = None

    @field_validator("compare_rules")
    @classmethod
    def _inside_config_folder(cls, value: str | None) -> str | None:
        """A folder relative to the config's, and within it: not absolute, no `..`."""
        if value is not None:
            path = PurePosixPath(value.replace("\\", "/"))
            if path.is_absolute() or PureWindowsPath(value).drive or ".." in path.parts:
                raise ValueError("a rules folder relative to the config's folder, within it (no leading / and no ..)")
        return value


LORA = LoraSettings()  # the command line's defaults


class FinetuneOptions(_Options):
    """`streamwatch model finetune --from-reviews`: a LoRA adapter trained on the labelled examples."""

    kind: Literal["finetune"] = "finetune"
    steps: Annotated[int, Field(ge=1, le=100_000, description="training steps")] = LORA.steps
    holdout: Annotated[float, Field(gt=0, lt=1, description="share of the examples held out to measure")] = 0.25
    batch: Annotated[int, Field(ge=1, le=1024, description="examples per step")] = LORA.batch
    lr: Annotated[float, Field(gt=0, le=1, description="learning rate")] = LORA.lr
    rank: Annotated[int, Field(ge=1, le=256, description="LoRA rank")] = LORA.rank
    seed: Annotated[int, Field(ge=0, le=2**31 - 1, description="seed of the split and the training")] = LORA.seed
    augment: bool = Field(LORA.augment, description="jitter each draw of a picture (shift, scale, mirror, light)")


Thresholds = Annotated[
    dict[Annotated[str, Field(pattern=CAMERA_ID.pattern)], Annotated[float, Field(ge=0, le=1)]],
    Field(max_length=1000, description="rule id -> its new threshold"),
]
Override = Annotated[
    str | None,
    Field(
        min_length=3,
        max_length=500,
        pattern=r"\S",
        description="apply even where the gate refuses: the reason, recorded with the version",
    ),
]


class ReleaseOptions(BaseModel):
    """`streamwatch release apply`: an adapter and/or thresholds through the release gate (replayed on
    every judged rule's labelled examples, before and after), live when it passes or is overridden."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: Literal["release"] = "release"
    adapter: Annotated[
        str | None,
        Field(
            pattern=r"^(none|\d{8}-\d{6}-[0-9a-f]{4})$",
            description="the id of a finished fine-tune job, 'none' (the model alone), or null: keep the adapter",
        ),
    ] = None
    thresholds: Thresholds = {}
    override: Override = None

    @model_validator(mode="after")
    def _something(self) -> ReleaseOptions:
        if self.adapter is None and not self.thresholds:
            raise ValueError("nothing to apply: give an adapter (a fine-tune job's id, or 'none') and/or thresholds")
        return self


JobOptions = Annotated[EvalOptions | FinetuneOptions | ReleaseOptions, Field(discriminator="kind")]


def command(
    options: EvalOptions | FinetuneOptions | ReleaseOptions,
    config: Path,
    folder: Path,
    device: str,
    adapter_of: Callable[[str], str],
    clips: Sequence[Path] = (),
    by: str = "a job",
) -> list[str]:
    """The `streamwatch` arguments the job runs (without the interpreter); `adapter_of` turns an
    adapter choice (a job id, `none`) into the command line's value; `clips`: the manifests' paths;
    `by`: who asked (a release records it)."""
    if isinstance(options, ReleaseOptions):
        args = ["release", "apply", "-c", str(config), "--out", str(folder), "--by", by, "--log-level", "INFO"]
        args.append("--service-loads")  # the service hands the adapter to its model when the job ends
        if options.adapter is not None:
            args.append(f"--adapter={adapter_of(options.adapter)}")
            if options.adapter != "none":
                args.append(f"--job={options.adapter}")
        for rule, value in sorted(options.thresholds.items()):
            args.append(f"--threshold={rule}={value!r}")
        if options.override is not None:
            args.append(f"--override={options.override}")
        return args
    given = ["--clips", *map(str, clips)] if clips else []
    if isinstance(options, FinetuneOptions):
        args = ["model", "finetune", str(folder / ADAPTER_DIR), "-c", str(config), "--from-reviews", *given]
        for name in ("steps", "holdout", "batch", "lr", "rank", "seed"):
            args += [f"--{name}", str(getattr(options, name))]
        args.append("--augment" if options.augment else "--no-augment")
        return [*args, "--device", device, "--log-level", "INFO"]
    args = ["eval", "-c", str(config), "--out", str(folder), "--name", "eval", "--log-level", "INFO", *given]
    if options.adapter != "config":
        args += ["--adapter", adapter_of(options.adapter)]
    if options.compare_adapter is not None:
        args += ["--compare-adapter", adapter_of(options.compare_adapter)]
    if options.target_precision is not None:
        args += ["--target-precision", str(options.target_precision)]
    if options.compare_rules is not None:
        args.append(f"--compare-rules={config.parent / options.compare_rules}")
    if options.compare_model is not None:
        args.append(f"--compare-model={options.compare_model}")
    return args
