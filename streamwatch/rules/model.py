"""A rule: which cameras, what to ask, and when the answer is an alert. Declarative, never eval."""

from __future__ import annotations

import operator
import re
import string
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from streamwatch.config import CameraConfig, identifier
from streamwatch.config.fields import legacy_threshold
from streamwatch.vocabulary import Severity

BUILTIN_VARIABLES = ("camera", "camera_name", "location", "zone")
_COMPARISON = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(-?\d+)\s*$")
_OPERATORS: dict[str, Callable[[int, int], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
MAX_FRAMES = 8  # images in one prompt: each costs as much as a single-frame question
MAX_SPAN_S = 600.0
_HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


def template_fields(template: str) -> list[str]:
    """Variable names used by a question template; raises ValueError for anything but plain `{name}`."""
    names = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"bad template: {exc} (write a literal brace as {{{{ or }}}})") from None
    for _text, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise ValueError(f"template variable {{{name}}} must be a plain name like {{location}}")
        names.append(name)
    return names


def camera_variables(camera: CameraConfig) -> dict[str, str]:
    """The values a question template may use for this camera."""
    return {
        **camera.vars,
        "camera": camera.id,
        "camera_name": camera.display_name,
        "location": camera.location or camera.display_name,
        "zone": camera.zone or "the monitored area",
    }


class Confirm(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    n: int = Field(1, ge=1, le=100, description="Positive answers needed ...")
    m: int = Field(1, ge=1, le=100, description="... among the last m answers.")

    @model_validator(mode="after")
    def _n_le_m(self) -> Confirm:
        if self.n > self.m:
            raise ValueError(f"n ({self.n}) must not exceed m ({self.m})")
        return self


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="Unique id, used in MQTT topics.")
    title: str = Field(min_length=1, max_length=200, description="Shown in events and Home Assistant.")
    severity: Severity = Severity.WARNING
    help: str = Field("", max_length=4000, description="What the rule is for and how to tune it.")
    enabled: bool = True
    cameras: list[str] = Field(default_factory=lambda: ["*"], description="Camera ids, globs or tag:NAME.")
    sample_interval_s: float | None = Field(None, ge=0.1, le=86_400, description="Default: the camera's.")
    question: str = Field(min_length=1, description="Template; variables like {location} come from the camera.")
    answer: Literal["yes_no", "count", "choice", "text"] = "yes_no"
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="yes_no: alert when P(yes) is at least this.")
    alert_when: str | list[str] | None = Field(None, description="count: '>= 3'; choice: options that alert.")
    choices: list[str] = Field(default_factory=list, max_length=100, description="choice: the allowed answers.")
    on: Literal["condition", "rising", "change"] = Field(
        "condition",
        description="condition: alert while the answer meets it; rising: only after it did not (a NO->YES edge); "
        "change (count, choice): alert when the answer changes.",
    )
    for_s: float = Field(0.0, ge=0, le=86_400, description="Alert only once the condition held this long.")
    min_delta: int | None = Field(None, ge=1, le=1_000_000, description="on = 'change', count: the least change.")
    change_area: float | None = Field(None, ge=0, le=100_000_000, description="Default: the camera's (0: never reuse).")
    change_threshold: float | None = Field(
        None, ge=0, le=1, description="Replaced by change_area: 0 still turns it off."
    )
    max_reuse_s: float | None = Field(None, ge=0, le=3600, description="Default: the camera's (0: never reuse).")
    confirm: Confirm = Field(default_factory=Confirm)
    cooldown_s: float = Field(60.0, ge=0, le=86_400, description="Quiet time after an alert resolves.")
    roi: tuple[float, float, float, float] | None = Field(None, description="Crop x0, y0, x1, y1 in 0..1.")
    active_hours: str | None = Field(None, description="Local time window like '22:00-06:00'.")
    schedule: str | None = Field(None, description="Cron expression (5 fields) for when the rule runs.")
    frames: int = Field(1, ge=1, le=MAX_FRAMES, description="Frames the model sees per question (motion).")
    span_s: float | None = Field(None, gt=0, le=MAX_SPAN_S, description="frames > 1: seconds from oldest to newest.")
    describe: str | None = Field(None, description="Follow-up question asked when an alert opens.")
    max_new_tokens: int | None = Field(None, ge=1, le=512)
    mode: Literal["live", "shadow"] = Field(
        "live",
        description="shadow: asked like any rule and its decisions stored, but it never alerts (nothing on "
        "MQTT, no event): a candidate rule tried beside the live one.",
    )
    shadows: str | None = Field(
        None,
        description="mode = 'shadow': the id of the live rule this one is a candidate for. It is asked on the same "
        "frames, each pair of answers is stored, and a frame where they disagree becomes a label request.",
    )

    _id = field_validator("id")(identifier)

    @field_validator("shadows")
    @classmethod
    def _shadows(cls, value: str | None) -> str | None:
        return None if value is None else identifier(value)

    @model_validator(mode="after")
    def _mode(self) -> Rule:
        if self.shadows is not None and self.mode != "shadow":
            raise ValueError('shadows names the live rule of a shadow rule: set mode = "shadow" as well')
        if self.shadows == self.id:
            raise ValueError("a shadow rule cannot shadow itself: name the live rule it is a candidate for")
        return self

    @property
    def live(self) -> bool:
        """Whether the rule alerts (a shadow rule only records what it would have said)."""
        return self.mode == "live"

    @field_validator("title", "question", "describe")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank")
        return value

    @field_validator("question", "describe")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is not None:
            template_fields(value)
        return value

    @field_validator("roi")
    @classmethod
    def _roi(cls, value: tuple[float, float, float, float] | None) -> tuple[float, float, float, float] | None:
        if value is not None:
            x0, y0, x1, y1 = value
            if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
                raise ValueError("expected [x0, y0, x1, y1] with 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1")
        return value

    @field_validator("active_hours")
    @classmethod
    def _hours(cls, value: str | None) -> str | None:
        if value is None:
            return value
        match = _HOURS.match(value)
        if not match:
            raise ValueError("expected HH:MM-HH:MM, e.g. '22:00-06:00'")
        if match.group(1, 2) == match.group(3, 4):
            raise ValueError("the window starts and ends at the same minute; leave active_hours out to run all day")
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        if value is not None:
            from apscheduler.triggers.cron import CronTrigger

            try:
                trigger = CronTrigger.from_crontab(value, timezone="UTC")
            except ValueError as exc:
                raise ValueError(f"not a cron expression (minute hour day month weekday): {exc}") from None
            if not _fires(trigger):
                raise ValueError("this schedule never fires (e.g. February 31st); check the day and month")
        return value

    @model_validator(mode="after")
    def _legacy_threshold(self) -> Rule:
        legacy_threshold(f"rule {self.id}", self.change_threshold)
        return self

    @model_validator(mode="after")
    def _frames(self) -> Rule:
        if self.frames > 1 and self.span_s is None:
            raise ValueError(f"frames = {self.frames} needs span_s: the seconds from the oldest frame to the newest")
        if self.frames == 1 and self.span_s is not None:
            raise ValueError("span_s is used only with frames > 1 (a question over several frames)")
        return self

    @model_validator(mode="after")
    def _condition(self) -> Rule:
        if self.on == "change":
            return self._on_change()
        if self.min_delta is not None:
            raise ValueError('min_delta is used only with on = "change" (a count that changes by at least that)')
        if self.answer == "text":
            if self.on != "condition" or self.for_s:
                raise ValueError("text answers meet no condition: on and for_s need a yes_no, count or choice rule")
        elif self.answer == "count":
            if not isinstance(self.alert_when, str) or not _COMPARISON.match(self.alert_when):
                raise ValueError("count rules need alert_when like '>= 3' (one of >=, <=, ==, !=, >, < and a number)")
        elif self.answer == "choice":
            self._check_choices()
            alert_on = [self.alert_when] if isinstance(self.alert_when, str) else self.alert_when
            unknown = [c for c in alert_on or [] if c not in self.choices]
            if not alert_on or unknown:
                raise ValueError(f"choice rules need alert_when listing some of the choices {self.choices}")
        if self.answer in ("yes_no", "text") and self.alert_when is not None:
            raise ValueError(f"alert_when is not used by {self.answer} rules (yes_no rules use threshold)")
        return self

    def _on_change(self) -> Rule:
        if self.answer not in ("count", "choice"):
            raise ValueError('on = "change" needs a count or choice rule: the answer is what changes')
        if self.alert_when is not None:
            raise ValueError('alert_when is not used with on = "change": every change of the answer alerts')
        if self.for_s:
            raise ValueError('for_s is not used with on = "change": a change is a moment, not a state')
        if self.min_delta is not None and self.answer != "count":
            raise ValueError("min_delta is for count rules (a number that changes by at least that)")
        if self.answer == "choice":
            self._check_choices()
        return self

    def _check_choices(self) -> None:
        if len(self.choices) < 2:
            raise ValueError("choice rules need at least two choices")
        folded = [choice.strip().lower() for choice in self.choices]
        if not all(folded) or len(set(folded)) < len(folded):
            raise ValueError(f"choices must be different words, none blank: {self.choices}")

    # -- behaviour ---------------------------------------------------------------------------
    def applies_to(self, camera: CameraConfig) -> bool:
        for selector in self.cameras:
            if selector.startswith("tag:"):
                if selector[4:] in camera.tags:
                    return True
            elif fnmatchcase(camera.id, selector):
                return True
        return False

    def gate(self, camera: CameraConfig) -> tuple[float, float]:
        """The change gate's least changed area (source pixels) and max_reuse_s on this camera; 0: off."""
        area = camera.gate_area if self.change_area is None else self.change_area
        max_reuse_s = camera.max_reuse_s if self.max_reuse_s is None else self.max_reuse_s
        return 0.0 if self.change_threshold == 0 else area, max_reuse_s

    def render(self, camera: CameraConfig, template: str | None = None) -> str:
        """The question for this camera (or the given template, e.g. `describe`)."""
        return (template or self.question).format_map(camera_variables(camera))

    def prompt(self, camera: CameraConfig) -> str:
        """The question as the model gets it: rendered for the camera, and for a question over several
        frames, preceded by what the images are."""
        question = self.render(camera)
        if self.frames == 1:
            return question
        return (
            f"The {self.frames} images are frames from the same camera, oldest first, {self.span_s:g} seconds "
            f"from the first to the last. {question}"
        )

    @property
    def spacing_s(self) -> float | None:
        """Seconds between two of the frames a question over several frames sees; None for one frame."""
        return None if self.span_s is None or self.frames == 1 else self.span_s / (self.frames - 1)

    def missing_variables(self, camera: CameraConfig) -> list[str]:
        known: Mapping[str, str] = camera_variables(camera)
        used = template_fields(self.question) + template_fields(self.describe or "")
        return sorted({name for name in used if name not in known})

    def value_of(self, text: str) -> str | None:
        """What an `on = "change"` rule compares: a count's number, a choice's option; None if absent."""
        if self.answer == "count":
            number = re.search(r"-?\d+", text)
            return number.group() if number else None
        if self.answer == "choice":
            chosen = text.strip().strip(".").lower()
            return next((option.lower() for option in self.choices if option.lower() == chosen), None)
        return None

    def changed(self, before: str, now: str) -> bool:
        """Whether `now` differs from `before` enough to alert (counts: by at least min_delta, default 1)."""
        if self.answer == "count":
            return abs(int(now) - int(before)) >= (self.min_delta or 1)
        return now != before

    def is_alert(self, text: str, p_yes: float | None) -> bool:
        """Whether one answer meets the alert condition (`on = "change"` rules have none of their own)."""
        if self.on == "change":
            return False
        if self.answer == "yes_no":
            return p_yes is not None and p_yes >= self.threshold
        if self.answer == "count":
            match = _COMPARISON.match(str(self.alert_when))
            number = re.search(r"-?\d+", text)
            return bool(match and number and _OPERATORS[match.group(1)](int(number.group()), int(match.group(2))))
        if self.answer == "choice":
            alert_on = [self.alert_when] if isinstance(self.alert_when, str) else list(self.alert_when or [])
            chosen = text.strip().strip(".").lower()
            return any(chosen == option.lower() for option in alert_on)
        return False


def _fires(trigger: Any) -> bool:
    """Whether a cron trigger fires at all (for impossible dates apscheduler's search ends with None)."""
    start = datetime(2000, 1, 1, tzinfo=UTC)
    return trigger.get_next_fire_time(None, start) is not None


class RuleFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[Rule] = Field(default_factory=list)


def within_hours(window: str | None, minute_of_day: int) -> bool:
    """Whether a local minute of the day (0..1439) falls in 'HH:MM-HH:MM' (may wrap past midnight)."""
    if window is None:
        return True
    match = _HOURS.match(window)
    if not match:
        return True
    h0, m0, h1, m1 = (int(g) for g in match.groups())
    start, end = h0 * 60 + m0, h1 * 60 + m1
    if start <= end:
        return start <= minute_of_day < end
    return minute_of_day >= start or minute_of_day < end
