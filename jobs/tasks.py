"""Creating, duplicating and deleting tasks: the task folder and its row stay consistent."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from sqlmodel import Session, select

from jobs.models import Task, utcnow
from jobs.settings import get_settings
from jobs.storage import task_dir
from pipeline.fitsio import FitsInputError, write_task_image
from pipeline.steps.base import IMAGE_FILE

__all__ = ["FitsInputError", "create_task", "staging_file"]


def staging_file(suffix: str = ".fits") -> Path:
    """A fresh temporary file under the data folder for an upload in progress."""
    staging = get_settings().data_dir / "staging"
    staging.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(suffix=suffix, dir=staging)
    os.close(handle)
    return Path(name)


def create_task(
    session: Session,
    source_file: Path,
    *,
    original_name: str,
    title: str = "",
    source: str = "upload",
    source_path: str | None = None,
    hdu: int | None = None,
    config: dict | None = None,
    owner_id: int | None = None,
    extra_files: dict[str, Path] | None = None,
) -> Task:
    """Validate ``source_file`` and make a task of it.

    The image is written into the new task folder completely before the row is
    committed; on any failure neither the row nor the folder remains. Raises
    :class:`FitsInputError` with a message for the user when the file is unusable.
    ``extra_files`` (name in the task folder → source) are copied alongside, e.g. the
    catalogue and template of a simulated demo sky.
    """
    task = Task(
        title=title or Path(original_name).name,
        original_name=Path(original_name).name,
        source=source,
        source_path=source_path,
        source_hdu=hdu,
        config=config or {},
        owner_id=owner_id,
        state="new",
        created=utcnow(),
    )
    session.add(task)
    session.flush()  # assigns the id, nothing visible to others yet
    folder = task_dir(task.id)
    try:
        if folder.exists():  # a leftover of a crashed creation with the same id
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        write_task_image(source_file, folder / IMAGE_FILE, hdu=hdu)
        for name, source in (extra_files or {}).items():
            shutil.copyfile(source, folder / name)
        session.commit()
    except BaseException:
        session.rollback()
        shutil.rmtree(folder, ignore_errors=True)
        raise
    session.refresh(task)
    return task


# Inputs a duplicate keeps (outputs are made again by running the steps).
DUPLICATED_FILES = (
    "custom_mask.fits",
    "custom_mask.json",
    "custom_template.fits",
    "custom_template_mask.fits",
)


def delete_task(session: Session, task: Task) -> None:
    """Delete a task's rows (children first) and its folder."""
    from jobs.models import Candidate, Comment, Footprint, ShareLink, StepRun, TaskShare, Vote

    for model in (StepRun, TaskShare, ShareLink, Candidate, Vote, Comment, Footprint):
        for row in session.exec(select(model).where(model.task_id == task.id)).all():
            session.delete(row)
    session.flush()  # there are no ORM relationships to order the deletes
    session.delete(task)
    session.flush()
    shutil.rmtree(task_dir(task.id), ignore_errors=True)


def duplicate_task(session: Session, task: Task, owner_id: int | None) -> Task:
    """A new task with the same image, settings and input files, owned by ``owner_id``."""
    source = task_dir(task.id)
    extra = {name: source / name for name in DUPLICATED_FILES if (source / name).is_file()}
    extra.update({p.name: p for p in source.glob("catalog*") if p.is_file()})
    return create_task(
        session,
        source / IMAGE_FILE,
        original_name=task.original_name,
        title=f"{task.title} (copy)"[:250],
        source="duplicate",
        source_path=f"task:{task.id}",
        config=dict(task.config),
        owner_id=owner_id,
        extra_files=extra,
    )
