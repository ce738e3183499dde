"""The words events are made of, spelled once: severities, event kinds, review verdicts, labels."""

from __future__ import annotations

from enum import StrEnum


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class EventKind(StrEnum):
    """What happened to an alert: it opened, it holds (an update at most once a minute), it resolved."""

    OPEN = "open"
    UPDATE = "update"
    RESOLVED = "resolved"


class DescriptionState(StrEnum):
    """An open alert's `describe` answer: being generated (the alert went out without it), it came as
    an update, or it did not come (the model was slow, down or stopped)."""

    PENDING = "pending"
    DONE = "done"
    NONE = "none"


class Verdict(StrEnum):
    """An operator's review of an event; an event reviewed without a verdict was just `seen`."""

    CONFIRMED = "confirmed"
    FALSE_POSITIVE = "false_positive"


class ReviewChoice(StrEnum):
    """What an operator can answer when reviewing (web form, `events mark`): a verdict, or just seen."""

    CONFIRMED = "confirmed"
    FALSE_POSITIVE = "false_positive"
    SEEN = "seen"

    @property
    def verdict(self) -> Verdict | None:
        return None if self is ReviewChoice.SEEN else Verdict(self.value)


class Label(StrEnum):
    """An operator's answer to a label request: the truth for the rule's question, or skipped."""

    YES = "yes"
    NO = "no"
    SKIP = "skip"


class LabelReason(StrEnum):
    """Why a frame became a label request."""

    UNCERTAIN = "uncertain"  # P(yes) near the rule's threshold
    SAMPLE = "sample"  # a plain "no", sampled (misses hide there)
    SAMPLE_YES = "sample-yes"  # a confident "yes", sampled (so that positives are labelled too)
    SHADOW = "shadow"  # a shadow rule decided otherwise on the same frame
