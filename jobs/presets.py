"""Presets: named configs (per instrument or project) with optional files.

A preset is made from a task whose settings worked (its per-step config and its
custom mask), and applied when new tasks are created: the config becomes the task's
config and the files are copied into the task folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlmodel import Session, select

from jobs.models import Preset, Task
from jobs.settings import get_settings
from jobs.storage import task_dir
from pipeline.steps.base import CUSTOM_MASK_FILE, CUSTOM_MASK_REGIONS_FILE

PRESET_FILES = (CUSTOM_MASK_FILE, CUSTOM_MASK_REGIONS_FILE)


class PresetError(ValueError):
    """The preset cannot be made or used; the message says why."""


def preset_dir(preset_id: int) -> Path:
    return get_settings().presets_dir / str(preset_id)


def preset_from_task(
    session: Session, task: Task, name: str, description: str, owner_id: int | None
) -> Preset:
    name = name.strip()
    if not name or len(name) > 150:
        raise PresetError("a preset name is 1–150 characters")
    if session.exec(select(Preset).where(Preset.name == name)).first():
        raise PresetError(f"a preset named {name!r} exists already")
    source = task_dir(task.id)
    files = [f for f in PRESET_FILES if (source / f).is_file()]
    preset = Preset(
        name=name,
        description=description.strip()[:500],
        owner_id=owner_id,
        config=dict(task.config),
        files=files,
    )
    session.add(preset)
    session.flush()
    folder = preset_dir(preset.id)
    folder.mkdir(parents=True, exist_ok=True)
    for file in files:
        shutil.copyfile(source / file, folder / file)
    return preset


def preset_inputs(session: Session, preset_id: int | None) -> tuple[dict, dict[str, Path]]:
    """Config and files (name → path) of a preset for :func:`jobs.tasks.create_task`."""
    if preset_id is None:
        return {}, {}
    preset = session.get(Preset, preset_id)
    if preset is None:
        raise PresetError(f"there is no preset {preset_id}")
    folder = preset_dir(preset.id)
    return dict(preset.config), {f: folder / f for f in preset.files if (folder / f).is_file()}


def delete_preset(session: Session, preset: Preset) -> None:
    shutil.rmtree(preset_dir(preset.id), ignore_errors=True)
    session.delete(preset)
