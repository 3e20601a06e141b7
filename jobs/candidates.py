"""Candidates of finished steps, indexed in the database for vetting and search."""

from __future__ import annotations

import functools
import logging
import math

import numpy as np
from astropy.table import Table
from sqlmodel import Session, delete

from jobs.models import Candidate
from jobs.storage import task_dir
from pipeline.steps import get_step

logger = logging.getLogger("skysift.jobs")


def _number(row, name: str) -> float | None:
    if name not in row.colnames:
        return None
    value = row[name]
    if np.ma.is_masked(value):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def candidate_key(row, index: int) -> str:
    """The candidate's name in its task: its J-name, else a row label."""
    if "jname" in row.colnames and str(row["jname"]).strip():
        return str(row["jname"]).strip()
    from pipeline.subtraction.cutouts import candidate_name

    return candidate_name(float(row["ra"]), float(row["dec"]), index)


def read_candidates(task_id: int, step: str) -> Table | None:
    """The candidate table a step wrote (cached until the file changes; do not modify it)."""
    spec = get_step(step)
    if spec.candidates is None:
        return None
    path = task_dir(task_id) / spec.candidates[0]
    try:
        stat = path.stat()
    except OSError:
        return None
    return _read_table(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _read_table(path: str, mtime_ns: int, size: int) -> Table:
    # the vetting pages read the same table on every request: parsing it was 10 ms of 27
    return Table.read(path)


def cutout_name(task_id: int, step: str, key: str, suffix: str = ".png") -> str | None:
    """Relative path of the candidate's PNG cutout (or other ``suffix``), if the step drew one."""
    folder = get_step(step).candidates[1]
    name = f"{folder}/{key}{suffix}"
    return name if (task_dir(task_id) / name).is_file() else None


def blink_strip(task_id: int, step: str, key: str) -> dict | None:
    """The candidate's blink strip: its relative path and frame labels, if the step drew one."""
    from pipeline.cutouts import BLINK_SUFFIX, blink_frames

    name = cutout_name(task_id, step, key, BLINK_SUFFIX)
    if name is None:
        return None
    frames = blink_frames(task_dir(task_id) / name)
    return {"path": name, "frames": frames} if frames else None


def index_candidates(session: Session, task_id: int, step: str, mjd: float | None) -> int:
    """Replace the indexed candidates of ``step`` of a task by those of its table."""
    session.exec(delete(Candidate).where(Candidate.task_id == task_id, Candidate.step == step))
    table = read_candidates(task_id, step)
    if table is None:
        return 0
    sn_flux = "flux" in table.colnames and "fluxerr" in table.colnames
    for index, row in enumerate(table):
        sn = None
        if sn_flux and _number(row, "fluxerr"):
            sn = (_number(row, "flux") or 0.0) / _number(row, "fluxerr")
        session.add(
            Candidate(
                task_id=task_id,
                step=step,
                key=candidate_key(row, index),
                row=index,
                ra=float(row["ra"]),
                dec=float(row["dec"]),
                mag=_number(row, "mag_calib"),
                mag_err=_number(row, "mag_calib_err"),
                sn=sn,
                mjd=mjd,
            )
        )
    return len(table)


def clear_candidates(session: Session, task_id: int, steps: list[str]) -> None:
    for step in steps:
        session.exec(delete(Candidate).where(Candidate.task_id == task_id, Candidate.step == step))
