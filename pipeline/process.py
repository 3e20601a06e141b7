"""Run pipeline steps on one image in a folder, without the web: ``skysift process``.

Uses the same step functions and the same folder layout as the workers, so a
result from the command line equals one from the portal.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from pipeline.fitsio import FitsInputError, write_task_image
from pipeline.steps import STEP_NAMES, StepContext, StepError, get_step, run_step
from pipeline.steps.base import IMAGE_FILE
from pipeline.templates.sources import CUSTOM_TEMPLATE_FILE

RESULT_FILE = "result.json"
logger = logging.getLogger("skysift.process")


def default_cache_dir() -> Path:
    """Per-user cache of catalogue answers and index files for the command line."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "skysift"


class ProcessError(Exception):
    """The command cannot go on; the message says why."""


def _coerce(text: str) -> Any:
    """A ``--set`` value as JSON when it parses (numbers, booleans, lists), else a string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _field_owners(key: str, steps: list[str]) -> list[str]:
    return [s for s in steps if key in get_step(s).config_model.model_fields]


def build_configs(
    steps: list[str], assignments: list[str], named: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Per-step config dicts from ``--set`` assignments and the named options."""
    configs: dict[str, dict[str, Any]] = {s: {} for s in steps}
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep:
            raise ProcessError(f"--set {item!r}: expected key=value")
        step, _, field = key.rpartition(".")
        owners = [step] if step else _field_owners(field, steps)
        if step and (step not in configs or field not in get_step(step).config_model.model_fields):
            owners = []
        if not owners:
            raise ProcessError(f"--set {key}: no step among {', '.join(steps)} has that setting")
        for owner in owners:
            configs[owner][field] = _coerce(value)
    for field, value in named.items():
        if value in (None, [], ""):
            continue
        owners = _field_owners(field, steps)
        if not owners:
            raise ProcessError(
                f"--{field.replace('_', '-')} is not used by the steps {', '.join(steps)}"
            )
        for owner in owners:
            configs[owner].setdefault(field, value)
    for step, values in configs.items():
        try:
            get_step(step).config_model.model_validate(values)
        except ValueError as exc:
            raise ProcessError(f"invalid settings for {step}: {exc}") from exc
    return configs


def process_image(
    image: Path,
    out: Path,
    *,
    steps: list[str],
    settings: list[str] | None = None,
    filter_name: str | None = None,
    catalog: str | None = None,
    catalog_name: str | None = None,
    template: str | None = None,
    targets: list[str] | None = None,
) -> dict[str, Any]:
    """Run ``steps`` on ``image`` writing every output in ``out``; returns result.json's content."""
    unknown = [s for s in steps if s not in STEP_NAMES]
    if unknown:
        raise ProcessError(f"unknown steps {unknown}; steps are {', '.join(STEP_NAMES)}")
    unavailable = [s for s in steps if not get_step(s).available]
    if unavailable:
        raise ProcessError(f"steps not available in this version: {', '.join(unavailable)}")
    steps = [s for s in STEP_NAMES if s in steps]  # always in pipeline order
    named = {
        "filter": filter_name,
        "catalog_file": str(Path(catalog).resolve()) if catalog else None,
        "catalog": catalog_name,
        "template": "custom" if template else None,
        "targets": targets,
    }
    configs = build_configs(steps, settings or [], named)
    out.mkdir(parents=True, exist_ok=True)
    for source, name in ((image, IMAGE_FILE), (template, CUSTOM_TEMPLATE_FILE)):
        if source is None:
            continue
        try:
            write_task_image(Path(source), out / name)
        except FitsInputError as exc:
            raise ProcessError(f"{source}: {exc}") from exc
    ctx = StepContext(task_dir=out, log=logger, cache_dir=default_cache_dir())
    results: dict[str, Any] = {}
    try:
        for step in steps:
            logger.info("running %s", step)
            result = run_step(step, ctx, configs[step])
            results[step] = {**result.summary, "warnings": result.warnings}
    except StepError as exc:
        results["error"] = {"step": step, "message": str(exc)}
        raise ProcessError(f"{step}: {exc}") from exc
    finally:
        (out / RESULT_FILE).write_text(json.dumps(results, indent=1, default=str))
    return results
