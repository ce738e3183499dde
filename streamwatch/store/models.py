"""Database tables: alert events (the history), each alert's current state, and the MQTT outbox."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Boolean, DateTime, Float, Index, Integer, LargeBinary, String, Text, TypeDecorator
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every database (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime; use datetime.now(UTC)")
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Event(Base):
    """One alert event: an alert opened, was updated while it held, or resolved."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uid: Mapped[str] = mapped_column(String(32), unique=True, index=True)  # public event id
    alert_id: Mapped[str] = mapped_column(String(32), index=True)  # the uid of the alert's `open` event
    kind: Mapped[str] = mapped_column(String(16))  # open | update | resolved
    camera: Mapped[str] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(200))
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)  # P(yes) for yes/no rules
    latency_s: Mapped[float] = mapped_column(Float)
    model: Mapped[str] = mapped_column(String(300))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)  # the rule's `describe` answer
    # open events of rules with `describe`: pending (being generated), done, none (the model did not answer)
    description_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    held_s: Mapped[float | None] = mapped_column(Float, nullable=True)  # for_s rules: how long it had held
    previous_answer: Mapped[str | None] = mapped_column(Text, nullable=True)  # on = "change": the answer before
    snapshot: Mapped[str | None] = mapped_column(String(300), nullable=True)  # path under snapshot_dir
    clip: Mapped[str | None] = mapped_column(String(300), nullable=True)  # MP4 under snapshot_dir (open events)
    clip_s: Mapped[float | None] = mapped_column(Float, nullable=True)  # its length once written; None: recording
    window_frames: Mapped[int | None] = mapped_column(Integer, nullable=True)  # asked over several: store/windows
    frame_at: Mapped[datetime] = mapped_column(UtcDateTime)  # when the camera frame was captured
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    # review by an operator: "confirmed" or "false_positive" (training data later), with an optional note
    verdict: Mapped[str | None] = mapped_column(String(16), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    reviewed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True, index=True)

    __table_args__ = (Index("ix_events_camera_rule", "camera", "rule"),)


class OutboxMessage(Base):
    """A message for one output (`sink`), committed with its event, deleted once that output delivered it."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)  # delivery order
    address: Mapped[str] = mapped_column(String(300))  # an MQTT topic, a file, ...
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    options: Mapped[str] = mapped_column(Text, default="{}", server_default="{}")  # JSON: the output's own
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    owner: Mapped[str] = mapped_column(String(64), default="", server_default="")  # the instance that relays it
    sink: Mapped[str] = mapped_column(String(32), default="mqtt", server_default="mqtt")  # the output it is for

    __table_args__ = (Index("ix_outbox_owner_sink_id", "owner", "sink", "id"),)


class AlertRecord(Base):
    """Where each camera x rule alert stands, written in the transaction of the event that changed it:
    open or not (and since when, under which alert id), when its last event was, and how long it cools
    down. Read back at start, so a restart continues open alerts and honours cooldowns."""

    __tablename__ = "alert_state"

    camera: Mapped[str] = mapped_column(String(64), primary_key=True)
    rule: Mapped[str] = mapped_column(String(64), primary_key=True)
    open: Mapped[bool] = mapped_column(Boolean)
    alert_id: Mapped[str | None] = mapped_column(String(32), nullable=True)  # the open event's uid while open
    opened_at: Mapped[float] = mapped_column(Float)  # frame times, seconds since the epoch
    last_event_at: Mapped[float] = mapped_column(Float)
    cooldown_until: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class LabelRequest(Base):
    """A frame the service asked a yes/no rule about and was unsure of (or a sampled plain "no"), kept
    for an operator to label: the truth for `streamwatch eval`. Never an alert, never published."""

    __tablename__ = "label_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uid: Mapped[str] = mapped_column(String(32), unique=True, index=True)
    camera: Mapped[str] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(String(64))
    question: Mapped[str] = mapped_column(Text)  # as the model was asked it
    model: Mapped[str] = mapped_column(String(300))
    answer: Mapped[str] = mapped_column(Text)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)  # P(yes)
    threshold: Mapped[float] = mapped_column(Float)  # the rule's, when it was asked
    reason: Mapped[str] = mapped_column(String(16))  # uncertain | sample
    frame: Mapped[str] = mapped_column(String(300))  # the full frame (before any ROI crop), under snapshot_dir
    window_frames: Mapped[int | None] = mapped_column(Integer, nullable=True)  # asked over several: store/windows
    frame_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    label: Mapped[str | None] = mapped_column(String(8), nullable=True)  # yes | no | skip; None: not yet
    labelled_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True, index=True)


class RuleMeasure(Base):
    """How a rule did on a camera in the latest `streamwatch eval` (of the deployed rules and model):
    shown on the rules page and in the API next to the rule."""

    __tablename__ = "rule_measures"

    rule: Mapped[str] = mapped_column(String(64), primary_key=True)
    camera: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(300))
    examples: Mapped[int] = mapped_column(Integer)
    positives: Mapped[int] = mapped_column(Integer)
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)  # None: a count or choice rule
    precision: Mapped[float | None] = mapped_column(Float, nullable=True)
    recall: Mapped[float | None] = mapped_column(Float, nullable=True)
    f1: Mapped[float | None] = mapped_column(Float, nullable=True)
    suggested_threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    false_alerts_per_day: Mapped[float | None] = mapped_column(Float, nullable=True)  # false alerts opened a day
    false_alert_open_share: Mapped[float | None] = mapped_column(Float, nullable=True)  # of the time, 0..1
    measured_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class ShadowDecision(Base):
    """One answer of a shadow rule (mode = "shadow"): what it would have decided, and the live rule's
    answer on the same frame where it shadows one that was asked. Never an alert; for `streamwatch eval`."""

    __tablename__ = "shadow_decisions"
    __table_args__ = (Index("ix_shadow_rule_at", "rule", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)  # the frame's time
    camera: Mapped[str] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(String(64))
    shadows: Mapped[str | None] = mapped_column(String(64), nullable=True)
    answer: Mapped[str] = mapped_column(String(200))
    p_yes: Mapped[float | None] = mapped_column(Float, nullable=True)
    alert: Mapped[bool] = mapped_column(Boolean)  # the shadow rule's condition met
    live_answer: Mapped[str | None] = mapped_column(String(200), nullable=True)  # None: no live answer beside
    live_p_yes: Mapped[float | None] = mapped_column(Float, nullable=True)
    live_alert: Mapped[bool | None] = mapped_column(Boolean, nullable=True)


class DiscoveryTopic(Base):
    """A Home Assistant discovery config an instance (`owner`: its shard, "" alone) published: the next
    announcement clears those that are no longer published (a camera or rule that went away)."""

    __tablename__ = "discovery_topics"

    topic: Mapped[str] = mapped_column(String(400), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)


class Release(Base):
    """One version of what decides the alerts beyond the rules' questions: the adapter and every yes/no
    rule's threshold, as a change made it (release/). A refused change is kept too, never live."""

    __tablename__ = "releases"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    by: Mapped[str] = mapped_column(String(200))  # who made it: a user, `web <address>`, a job
    action: Mapped[str] = mapped_column(String(20))  # baseline | apply | rollback
    outcome: Mapped[str] = mapped_column(String(20))  # passed | overridden | refused | not gated
    job_id: Mapped[str | None] = mapped_column(String(40), nullable=True)  # the fine-tune job it came from
    adapter: Mapped[str | None] = mapped_column(String(500), nullable=True)  # its kept copy; None: no adapter
    adapter_from: Mapped[str | None] = mapped_column(String(500), nullable=True)  # where it was taken from
    thresholds: Mapped[str] = mapped_column(Text)  # JSON: rule id -> threshold, every yes/no rule's
    changes: Mapped[str] = mapped_column(Text)  # JSON: what changed, a line each
    gate: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON: the gate's report
    override_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    rolled_back_to: Mapped[int | None] = mapped_column(Integer, nullable=True)


class ShadowRun(Base):
    """A candidate (an adapter, thresholds) run in shadow beside the live model on live frames: it never
    alerts; its would-be alerts are kept (release/shadow.py). At most one runs; it resumes after a restart."""

    __tablename__ = "shadow_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    by: Mapped[str] = mapped_column(String(200))
    job_id: Mapped[str | None] = mapped_column(String(40), nullable=True)  # the fine-tune job of the adapter
    adapter: Mapped[str | None] = mapped_column(String(500), nullable=True)  # None: the base model alone
    thresholds: Mapped[str] = mapped_column(Text)  # JSON: rule id -> the candidate's threshold
    stopped_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    stop_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    counts: Mapped[str] = mapped_column(Text, default="{}")  # JSON: per camera x rule, saved as it runs


class ShadowAlert(Base):
    """An alert the shadow candidate would have opened, with the frame and what the live model said."""

    __tablename__ = "shadow_alerts"
    __table_args__ = (Index("ix_shadow_alerts_run", "run_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    camera: Mapped[str] = mapped_column(String(100))
    rule: Mapped[str] = mapped_column(String(100))
    p_yes: Mapped[float] = mapped_column(Float)
    live_p_yes: Mapped[float | None] = mapped_column(Float, nullable=True)
    live_open: Mapped[bool] = mapped_column(Boolean)  # whether the live model's alert was open then
    snapshot: Mapped[str | None] = mapped_column(String(300), nullable=True)  # under the snapshot folder
