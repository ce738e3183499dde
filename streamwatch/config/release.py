"""`[release]`: the gate in front of every change of adapter or threshold (streamwatch/learning/release)."""

from __future__ import annotations

from pydantic import Field

from streamwatch.config.sections import _Section


class ReleaseConfig(_Section):
    """A change is replayed on every judged rule's labelled examples, before and after; it is refused
    when a rule gets worse by more than these, or has too few examples of an answer to judge."""

    min_examples: int = Field(
        5, ge=1, le=10_000, description="Truly-yes and truly-no examples a judged rule needs, each."
    )
    max_precision_drop: float = Field(0.02, ge=0, le=1, description="Precision may fall at most this much (0..1).")
    max_recall_drop: float = Field(0.02, ge=0, le=1, description="Recall may fall at most this much (0..1).")
    max_false_alert_rise: float = Field(
        0.005, ge=0, le=1, description="The false-positive rate and the false-alert open share may rise at most this."
    )
    max_false_alerts_per_day_rise: float = Field(
        1.0, ge=0, le=100_000, description="False alerts opened a day may rise at most this many."
    )
    keep: int = Field(20, ge=2, le=1000, description="Versions whose adapter files are kept for a rollback.")
