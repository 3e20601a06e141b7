"""Database models: tasks, their per-step config, step runs and progress events."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Text
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class RunState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    CLEARED = "cleared"  # outputs removed because an earlier step was re-run

    @property
    def active(self) -> bool:
        return self in (RunState.QUEUED, RunState.RUNNING)


class Task(SQLModel, table=True):
    """One image and everything done to it; its files live in ``tasks/<id>/``."""

    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(default="", max_length=250)
    original_name: str = Field(default="", max_length=500)
    source: str = Field(default="upload", max_length=50, description="upload, archive or demo")
    source_path: str | None = Field(default=None, max_length=2000)
    source_hdu: int | None = None
    owner_id: int | None = Field(default=None, foreign_key="user.id", index=True)
    created: datetime = Field(default_factory=utcnow, index=True)
    modified: datetime = Field(default_factory=utcnow)
    state: str = Field(default="new", max_length=50, description="latest step and its state")
    # User inputs, per step: {"inspect": {...}, "photometry": {...}}; results live on StepRun.
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class StepRun(SQLModel, table=True):
    """One run of one step of a task: state, timings, summary numbers, warnings, error."""

    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(foreign_key="task.id", index=True)
    step: str = Field(max_length=50, index=True)
    state: RunState = Field(default=RunState.QUEUED, max_length=20)
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    queued_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    heartbeat_at: datetime | None = None
    progress: float = 0.0
    cancel_requested: bool = False
    summary: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    files: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    warnings: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    error: str | None = Field(default=None, sa_column=Column(Text))
    log: str = Field(default="", sa_column=Column(Text, nullable=False))

    @property
    def seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


# ---------------------------------------------------------------------------- accounts


class AccessLevel(StrEnum):
    VIEW = "view"
    EDIT = "edit"


class User(SQLModel, table=True):
    """A person (or a robotic telescope's account) using the portal."""

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=150, unique=True, index=True)
    full_name: str = Field(default="", max_length=250)
    password_hash: str = Field(max_length=500)
    is_admin: bool = False
    is_active: bool = True
    created: datetime = Field(default_factory=utcnow)


class Group(SQLModel, table=True):
    """A set of users that tasks are shared with (a project, a telescope network)."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=150, unique=True, index=True)
    created: datetime = Field(default_factory=utcnow)


class Membership(SQLModel, table=True):
    user_id: int = Field(foreign_key="user.id", primary_key=True)
    group_id: int = Field(foreign_key="group.id", primary_key=True)


class TaskShare(SQLModel, table=True):
    """A task shared with a group, for viewing or also for changing it."""

    task_id: int = Field(foreign_key="task.id", primary_key=True)
    group_id: int = Field(foreign_key="group.id", primary_key=True)
    access: AccessLevel = Field(default=AccessLevel.VIEW, max_length=10)


class ApiToken(SQLModel, table=True):
    """A revocable API token; only its hash is stored."""

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    name: str = Field(default="", max_length=150)
    token_hash: str = Field(max_length=128, unique=True, index=True)
    prefix: str = Field(max_length=12, description="first characters, to recognise a token")
    created: datetime = Field(default_factory=utcnow)
    last_used: datetime | None = None
    revoked: bool = False


class AuditEvent(SQLModel, table=True):
    """Who created, ran, changed, shared or deleted what, and when."""

    id: int | None = Field(default=None, primary_key=True)
    time: datetime = Field(default_factory=utcnow, index=True)
    user_id: int | None = Field(default=None, foreign_key="user.id", index=True)
    username: str = Field(default="", max_length=150)
    action: str = Field(max_length=50, index=True)
    target: str = Field(default="", max_length=100, description="e.g. task:12, user:3")
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class ShareLink(SQLModel, table=True):
    """A revocable read-only link to a task, for dashboards (embed view)."""

    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(foreign_key="task.id", index=True)
    token_hash: str = Field(max_length=128, unique=True, index=True)
    created_by: int | None = Field(default=None, foreign_key="user.id")
    created: datetime = Field(default_factory=utcnow)
    revoked: bool = False


class Preset(SQLModel, table=True):
    """A named configuration (per instrument or project) with optional files."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=150, unique=True, index=True)
    description: str = Field(default="", max_length=500)
    owner_id: int | None = Field(default=None, foreign_key="user.id")
    created: datetime = Field(default_factory=utcnow)
    # Per-step settings, as Task.config: {"inspect": {...}, "photometry": {...}}
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # Files copied into each new task folder, e.g. ["custom_mask.fits"]
    files: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


# ---------------------------------------------------------------------------- candidates


class VoteValue(StrEnum):
    REAL = "real"
    BOGUS = "bogus"
    UNSURE = "unsure"


class Candidate(SQLModel, table=True):
    """A transient candidate of a finished step, indexed for search across tasks."""

    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(foreign_key="task.id", index=True)
    step: str = Field(max_length=50)
    key: str = Field(max_length=100, description="name within the task, e.g. J123456.7+123456")
    row: int = Field(description="row of the step's candidate table")
    ra: float = Field(index=True)
    dec: float = Field(index=True)
    mag: float | None = None
    mag_err: float | None = None
    sn: float | None = None
    mjd: float | None = None
    created: datetime = Field(default_factory=utcnow, index=True)


class Vote(SQLModel, table=True):
    """One member's verdict on a candidate (the latest one counts)."""

    task_id: int = Field(foreign_key="task.id", primary_key=True)
    step: str = Field(max_length=50, primary_key=True)
    key: str = Field(max_length=100, primary_key=True)
    user_id: int = Field(foreign_key="user.id", primary_key=True)
    value: VoteValue = Field(max_length=10)
    time: datetime = Field(default_factory=utcnow)


class Comment(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(foreign_key="task.id", index=True)
    step: str = Field(max_length=50)
    key: str = Field(max_length=100, index=True)
    user_id: int = Field(foreign_key="user.id")
    username: str = Field(max_length=150)
    text: str = Field(sa_column=Column(Text, nullable=False))
    time: datetime = Field(default_factory=utcnow)


class Footprint(SQLModel, table=True):
    """The sky area a task's image covers, stored when its astrometry is known.

    The bounding box (RA range may wrap through 0°) lets a position search use indexes
    instead of opening every task's WCS; the exact test then runs on the few it finds.
    """

    task_id: int = Field(foreign_key="task.id", primary_key=True)
    ra_center: float
    dec_center: float
    radius: float = Field(description="degrees from the centre to the farthest corner")
    dec_min: float = Field(index=True)
    dec_max: float = Field(index=True)
    ra_min: float = Field(description="0–360; greater than ra_max when the box wraps")
    ra_max: float
    # (ra, dec) points around the image edge, in order: the exact outline
    outline: list[list[float]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    mjd: float | None = None
    filter: str | None = Field(default=None, max_length=50)
    updated: datetime = Field(default_factory=utcnow)


class PasswordReset(SQLModel, table=True):
    """A one-time link an administrator hands to a user who forgot the password."""

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    token_hash: str = Field(max_length=128, unique=True, index=True)
    created_by: int | None = Field(default=None, foreign_key="user.id")
    created: datetime = Field(default_factory=utcnow)
    expires: datetime
    used: datetime | None = None
