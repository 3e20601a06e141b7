"""Sky footprints of tasks, stored so a position search does not open every task's files.

A footprint is written when the photometry step finishes (it leaves the refined
``image.wcs``) and removed when that step is queued again. The stored bounding box
narrows a search to a handful of tasks with indexed comparisons; the exact test
(:func:`pipeline.lightcurve.covers`) then runs on those only.
"""

from __future__ import annotations

import json

import numpy as np
from astropy.coordinates import SkyCoord
from sqlalchemy import and_, or_
from sqlmodel import Session, col, delete, select

from jobs.models import Footprint, RunState, StepRun, utcnow
from jobs.storage import task_dir
from pipeline.lightcurve import task_wcs

EDGE_SAMPLES = 8  # points per image edge: distorted edges bulge between the corners
FOOTPRINT_STEP = "photometry"  # the step whose image.wcs defines the footprint


def _edge_pixels(nx: int, ny: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(0.0, 1.0, EDGE_SAMPLES, endpoint=False)
    x_max, y_max = nx - 0.5, ny - 0.5
    xs = np.concatenate(
        [-0.5 + t * nx, np.full_like(t, x_max), x_max - t * nx, np.full_like(t, -0.5)]
    )
    ys = np.concatenate(
        [np.full_like(t, -0.5), -0.5 + t * ny, np.full_like(t, y_max), y_max - t * ny]
    )
    return xs, ys


def compute_footprint(task_id: int) -> Footprint | None:
    """The footprint of a task's image from its refined WCS, or None without one."""
    found = task_wcs(task_dir(task_id))
    if found is None:
        return None
    wcs, (ny, nx) = found
    xs, ys = _edge_pixels(nx, ny)
    ra, dec = wcs.all_pix2world(xs, ys, 0)
    if not (np.all(np.isfinite(ra)) and np.all(np.isfinite(dec))):
        return None
    centre = wcs.pixel_to_world((nx - 1) / 2, (ny - 1) / 2)
    edge = SkyCoord(ra, dec, unit="deg")
    radius = float(centre.separation(edge).deg.max())
    ra0, dec0 = float(centre.ra.deg), float(centre.dec.deg)
    if abs(dec0) + radius >= 90.0:  # a pole may be inside: every RA is possible
        ra_min, ra_max = 0.0, 360.0
        dec_min, dec_max = (dec0 - radius, 90.0) if dec0 > 0 else (-90.0, dec0 + radius)
    else:
        offsets = (ra - ra0 + 180.0) % 360.0 - 180.0
        ra_min, ra_max = (ra0 + offsets.min()) % 360.0, (ra0 + offsets.max()) % 360.0
        dec_min, dec_max = float(dec.min()), float(dec.max())
    outline = [[float(a), float(d)] for a, d in zip(ra, dec, strict=True)]
    return Footprint(
        task_id=task_id,
        ra_center=ra0,
        dec_center=dec0,
        radius=radius,
        dec_min=float(dec_min),
        dec_max=float(dec_max),
        ra_min=float(ra_min),
        ra_max=float(ra_max),
        outline=outline,
    )


def store_footprint(
    session: Session, task_id: int, mjd: float | None = None, band: str | None = None
) -> Footprint | None:
    """Compute and save (or drop, without a WCS) the footprint of a task."""
    clear_footprint(session, task_id)
    footprint = compute_footprint(task_id)
    if footprint is not None:
        footprint.mjd, footprint.filter, footprint.updated = mjd, band, utcnow()
        session.add(footprint)
    return footprint


def clear_footprint(session: Session, task_id: int) -> None:
    session.exec(delete(Footprint).where(Footprint.task_id == task_id))


def covering_condition(ra: float, dec: float):
    """SQL condition: the stored bounding box contains (ra, dec)."""
    ra = ra % 360.0
    plain = and_(col(Footprint.ra_min) <= col(Footprint.ra_max), col(Footprint.ra_min) <= ra)
    plain = and_(plain, col(Footprint.ra_max) >= ra)
    wrapped = and_(
        col(Footprint.ra_min) > col(Footprint.ra_max),
        or_(col(Footprint.ra_min) <= ra, col(Footprint.ra_max) >= ra),
    )
    return and_(col(Footprint.dec_min) <= dec, col(Footprint.dec_max) >= dec, or_(plain, wrapped))


def rebuild_footprints(session: Session) -> int:
    """Recompute the footprint of every task whose photometry step finished (after upgrades)."""

    task_ids = session.exec(
        select(StepRun.task_id)
        .where(StepRun.step == FOOTPRINT_STEP, StepRun.state == RunState.DONE)
        .distinct()
    ).all()
    stored = 0
    for task_id in task_ids:
        inspect = task_dir(task_id) / "inspect.result.json"
        summary = json.loads(inspect.read_text()).get("summary", {}) if inspect.exists() else {}
        if store_footprint(session, task_id, summary.get("mjd"), summary.get("filter")):
            stored += 1
    session.commit()
    return stored


def outline_contains(outline: list[list[float]], ra: float, dec: float) -> bool:
    """Whether (ra, dec) lies inside a stored outline (gnomonic projection about the point)."""
    if len(outline) < 3:
        return False
    a0, d0 = np.radians(ra), np.radians(dec)
    a, d = np.radians(np.asarray(outline, float)).T
    cos_c = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * np.cos(a - a0)
    if np.any(cos_c <= 0):  # part of the outline is 90° or more away: not a small field
        return False
    xi = np.cos(d) * np.sin(a - a0) / cos_c
    eta = (np.cos(d0) * np.sin(d) - np.sin(d0) * np.cos(d) * np.cos(a - a0)) / cos_c
    # the point is the origin of the plane: it is inside when the outline winds around it
    angles = np.arctan2(eta, xi)
    turns = np.diff(np.concatenate([angles, angles[:1]]))
    turns = (turns + np.pi) % (2 * np.pi) - np.pi
    return abs(turns.sum()) > np.pi


def covering_task_ids(session: Session, ra: float, dec: float, among=None) -> list[int]:
    """Ids of tasks whose stored outline contains (ra, dec), newest first.

    ``among``: an optional SELECT of task ids to restrict to (the visible ones).
    """
    query = select(Footprint.task_id, Footprint.outline).where(covering_condition(ra, dec))
    if among is not None:
        query = query.where(col(Footprint.task_id).in_(among))
    rows = session.exec(query.order_by(col(Footprint.task_id).desc())).all()
    return [task_id for task_id, outline in rows if outline_contains(outline, ra, dec)]
