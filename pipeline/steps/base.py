"""The contract between the pipeline steps and whoever runs them (worker or CLI).

A step is a function ``run(ctx, config) -> StepResult``. It reads the task
folder through ``ctx``, reports log lines and progress through ``ctx``, and
returns its summary numbers, output files and warnings. It raises
:class:`StepError` with a message meant for the user when the input is at fault.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

# Fixed file names inside a task folder; steps find each other's outputs by them.
IMAGE_FILE = "image.fits"
MASK_FILE = "mask.fits"
CUSTOM_MASK_FILE = "custom_mask.fits"
CUSTOM_MASK_REGIONS_FILE = "custom_mask.json"
WCS_FILE = "image.wcs"
OBJECTS_FILE = "objects.fits"
RESULT_SUFFIX = ".result.json"


class StepError(Exception):
    """A step cannot run on this input; the message tells the user what to fix."""


class ServiceUnavailable(StepError):
    """A remote service did not answer in time; the same run may succeed later."""


class StepCancelled(Exception):
    """The user cancelled the step while it was running."""


@dataclass
class StepResult:
    """What a step returns: summary numbers, files it wrote, warnings for the user."""

    summary: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"summary": self.summary, "files": self.files, "warnings": self.warnings}


def _noop_progress(fraction: float, message: str = "") -> None:
    return None


def _never_cancelled() -> bool:
    return False


@dataclass
class StepContext:
    """Everything a step may touch: its task folder, a logger and a progress callback."""

    task_dir: Path
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("skysift.step"))
    progress_callback: Callable[[float, str], None] = _noop_progress
    is_cancelled: Callable[[], bool] = _never_cancelled
    # Shared across tasks (catalogue answers, astrometry index files); None: no caching.
    cache_dir: Path | None = None

    def cache(self, kind: str) -> Path | None:
        """A cache sub-folder for ``kind`` (created), or None when caching is off."""
        if self.cache_dir is None:
            return None
        folder = self.cache_dir / kind
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def path(self, name: str) -> Path:
        """Path of a file in the task folder (``name`` is one of our fixed names)."""
        return self.task_dir / name

    def progress(self, fraction: float, message: str = "") -> None:
        """Report progress in [0, 1]; also the point where cancellation is honoured."""
        if self.is_cancelled():
            raise StepCancelled("cancelled by the user")
        self.progress_callback(min(max(fraction, 0.0), 1.0), message)

    def read_result(self, step: str) -> dict[str, Any] | None:
        """Summary of an earlier step in this task folder, or None if it has not run."""
        path = self.task_dir / f"{step}{RESULT_SUFFIX}"
        if not path.exists():
            return None
        return json.loads(path.read_text())["summary"]


class StepConfig(BaseModel):
    """Base for the typed per-step config models; every field has a default and help text."""

    model_config = {"extra": "forbid", "validate_assignment": True}
