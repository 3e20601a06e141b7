"""Registry of pipeline steps and the one function that runs a step in a task folder.

The worker actors and ``skysift process`` both call :func:`run_step`, so a step
behaves the same from the web and from the command line.
"""

from __future__ import annotations

import importlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.steps.base import (
    RESULT_SUFFIX,
    ServiceUnavailable,
    StepCancelled,
    StepConfig,
    StepContext,
    StepError,
    StepResult,
)

__all__ = [
    "STEPS",
    "STEP_NAMES",
    "ServiceUnavailable",
    "StepCancelled",
    "StepConfig",
    "StepContext",
    "StepError",
    "StepResult",
    "StepSpec",
    "clear_step_outputs",
    "downstream_of",
    "get_step",
    "run_step",
]


@dataclass(frozen=True)
class StepSpec:
    """A step of the task flow; ``module`` is None while the step is not built yet."""

    name: str
    title: str
    description: str
    module: str | None
    # (table file, folder of per-candidate cutouts) for steps that find candidates
    candidates: tuple[str, str] | None = None

    @property
    def available(self) -> bool:
        return self.module is not None

    def load(self):
        if self.module is None:
            raise StepError(f"the {self.title.lower()} step is not available in this version")
        return importlib.import_module(self.module)

    @property
    def config_model(self) -> type[StepConfig]:
        return self.load().CONFIG_MODEL


STEPS: tuple[StepSpec, ...] = (
    StepSpec(
        "inspect",
        "Inspection",
        "Reads the header, checks gain and saturation against the pixels, builds the mask.",
        "pipeline.steps.inspect",
    ),
    StepSpec(
        "photometry",
        "Photometry",
        "Detects and measures objects, solves astrometry and calibrates magnitudes.",
        "pipeline.steps.photometry",
    ),
    StepSpec(
        "transients_simple",
        "Simple transients",
        "Finds objects not in reference catalogues and not known minor planets.",
        "pipeline.steps.transients_simple",
        ("candidates_simple.fits", "candidates_simple"),
    ),
    StepSpec(
        "subtraction",
        "Image subtraction",
        "Subtracts a template image and finds transients in the difference.",
        "pipeline.steps.subtraction",
        ("candidates.fits", "candidates"),
    ),
)
STEP_NAMES: tuple[str, ...] = tuple(step.name for step in STEPS)


def get_step(name: str) -> StepSpec:
    for step in STEPS:
        if step.name == name:
            return step
    raise KeyError(f"unknown step {name!r}; steps are {', '.join(STEP_NAMES)}")


def downstream_of(name: str) -> list[str]:
    """The step itself and every step after it, in order."""
    return list(STEP_NAMES[STEP_NAMES.index(name) :])


def result_path(task_dir: Path, name: str) -> Path:
    return task_dir / f"{name}{RESULT_SUFFIX}"


def clear_step_outputs(task_dir: Path, name: str) -> list[str]:
    """Delete the outputs of ``name`` and of every later step; return what was removed.

    Each step's result file lists the files it wrote, so nothing else in the task
    folder (the image, the user's masks and uploads) is touched.
    """
    removed: list[str] = []
    for step in downstream_of(name):
        path = result_path(task_dir, step)
        if not path.exists():
            continue
        try:
            files = json.loads(path.read_text()).get("files", [])
        except (OSError, ValueError):
            files = []
        for rel in files:
            target = (task_dir / rel).resolve()
            if target.is_relative_to(task_dir.resolve()) and target.is_file():
                target.unlink()
                removed.append(rel)
        path.unlink()
    return removed


def run_step(
    name: str, ctx: StepContext, config: StepConfig | dict[str, Any] | None = None
) -> StepResult:
    """Run one step in ``ctx.task_dir`` after clearing its old outputs and downstream ones.

    The result (summary, files, warnings, timing) is written beside the outputs as
    ``<step>.result.json`` so later steps and the CLI can read it.
    """
    spec = get_step(name)
    module = spec.load()
    model = module.CONFIG_MODEL
    if config is None:
        config = model()
    elif isinstance(config, dict):
        config = model.model_validate(config)
    clear_step_outputs(ctx.task_dir, name)
    started = time.monotonic()
    result: StepResult = module.run(ctx, config)
    record = result.to_json()
    record["seconds"] = round(time.monotonic() - started, 3)
    result_path(ctx.task_dir, name).write_text(json.dumps(record, indent=1, default=str))
    return result
