"""Task folders: where each task's files live, and safe resolution of user-given paths."""

from __future__ import annotations

import shutil
from pathlib import Path

from jobs.settings import get_settings


class UnsafePathError(ValueError):
    """A user-given path points outside the folder it must stay in."""


def task_dir(task_id: int) -> Path:
    return get_settings().tasks_dir / str(task_id)


def safe_join(root: Path, relative: str) -> Path:
    """``root / relative``, refusing ``..``, absolute paths and symlinks that leave root."""
    root = root.resolve()
    if "\x00" in relative:
        raise UnsafePathError("invalid path")
    candidate = (root / relative.lstrip("/")).resolve()
    if candidate != root and not candidate.is_relative_to(root):
        raise UnsafePathError(f"path {relative!r} leaves its folder")
    return candidate


def list_task_files(task_id: int) -> list[dict]:
    """Every regular file in the task folder, with its size, sorted by name."""
    root = task_dir(task_id)
    if not root.exists():
        return []
    files = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            files.append(
                {
                    "name": str(path.relative_to(root)),
                    "size": path.stat().st_size,
                    "is_fits": is_fits_name(path.name),
                    "is_image": path.suffix.lower() == ".png",
                }
            )
    return files


def is_fits_name(name: str) -> bool:
    lower = name.lower()
    return lower.endswith((".fits", ".fit", ".fts", ".fits.gz", ".fits.fz", ".fit.gz"))


def remove_task_dir(task_id: int) -> None:
    shutil.rmtree(task_dir(task_id), ignore_errors=True)
