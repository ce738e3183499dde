"""`[labels]`: which of the service's own answers become label requests for an operator."""

from __future__ import annotations

from pydantic import Field

from streamwatch.config.sections import _Section


class LabelsConfig(_Section):
    """Label requests: frames whose answer was uncertain (P(yes) near the rule's threshold), a few plain
    "no"s and confident "yes"es, spread over the score range and over time, never the same picture twice
    for a camera x rule, kept for an operator to label (web UI /labels, REST API, `streamwatch labels`); never
    alerts, never on MQTT. Labelled, they join reviewed events as examples for `streamwatch eval`."""

    enabled: bool = Field(True, description="Keep label requests (yes/no rules only).")
    band: float = Field(
        0.15,
        ge=0,
        le=0.5,
        description="Uncertain: P(yes) within this of a threshold of 0.5, the same distance in log-odds elsewhere "
        "(0.15 at threshold 0.0004: 0.00022 to 0.00074; 0.5: every answer).",
    )
    sample_no: float = Field(0.01, ge=0, le=1, description="Share of other (confident) 'no' answers kept as well.")
    sample_yes: float = Field(0.05, ge=0, le=1, description="Share of confident 'yes' answers kept as well.")
    every_s: float = Field(
        600.0,
        ge=0,
        le=86_400,
        description="At most one request per camera x rule x score range this often (the band is four ranges).",
    )
    max_pending: int = Field(500, ge=1, le=100_000, description="Unlabelled requests kept; the oldest go first.")
    max_labelled: int = Field(20_000, ge=1, le=1_000_000, description="Labelled ones kept; the oldest go first.")
