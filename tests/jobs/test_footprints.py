"""Stored task footprints: the bounding box holds the image, wraps through RA 0, opens at poles."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from sqlmodel import select

from jobs.db import session_scope, upgrade_database
from jobs.footprints import (
    clear_footprint,
    covering_condition,
    covering_task_ids,
    store_footprint,
)
from jobs.models import Footprint, Task

SIZE = 1000  # pixels
SCALE = 1.0 / 3600  # 1″ pixels: a 0.28° field


def _task_with_wcs(settings, ra: float, dec: float, rotation: float = 0.0) -> int:
    """A task whose folder holds an image header and a refined WCS centred on (ra, dec)."""
    with session_scope() as session:
        task = Task(title=f"field {ra} {dec}")
        session.add(task)
        session.flush()
        task_id = task.id
    folder = settings.tasks_dir / str(task_id)
    folder.mkdir(parents=True)
    fits.PrimaryHDU(np.zeros((SIZE, SIZE), np.float32)).writeto(folder / "image.fits")
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [SIZE / 2, SIZE / 2]
    angle = np.radians(rotation)
    wcs.wcs.cd = SCALE * np.array([[-np.cos(angle), np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    fits.PrimaryHDU(header=wcs.to_header()).writeto(folder / "image.wcs")
    with session_scope() as session:
        store_footprint(session, task_id, mjd=60000.5, band="r")
    return task_id


def _found(ra: float, dec: float) -> list[int]:
    with session_scope() as session:
        return list(session.exec(select(Footprint.task_id).where(covering_condition(ra, dec))))


@pytest.fixture
def database(settings):
    upgrade_database()
    return settings


def test_box_holds_the_field_and_nothing_far(database):
    task_id = _task_with_wcs(database, 150.0, 20.0, rotation=30)
    with session_scope() as session:
        stored = session.get(Footprint, task_id)
        # the rotated 0.28° square: the centre-to-corner radius is half its diagonal
        assert stored.radius == pytest.approx(SIZE * SCALE / np.sqrt(2), rel=0.01)
        assert (stored.mjd, stored.filter, len(stored.outline)) == (60000.5, "r", 32)
    assert _found(150.0, 20.0) == [task_id]
    assert _found(150.18, 20.0) == [task_id]  # inside the box, near a rotated corner
    assert _found(150.3, 20.0) == []
    assert _found(150.0, 19.7) == []
    with session_scope() as session:
        # the exact outline: a corner of the box that the rotated square does not reach
        half = SIZE * SCALE / 2
        assert _found(150.0 + half / np.cos(np.radians(20)), 20.0 + 0.99 * half) == [task_id]
        assert (
            covering_task_ids(session, 150.0 + half / np.cos(np.radians(20)), 20.0 + 0.99 * half)
            == []
        )
        assert covering_task_ids(session, 150.05, 20.05) == [task_id]


def test_box_wraps_through_ra_zero(database):
    task_id = _task_with_wcs(database, 359.95, 0.0)
    with session_scope() as session:
        stored = session.get(Footprint, task_id)
        assert stored.ra_min > stored.ra_max  # the wrapped form
    assert _found(0.05, 0.0) == [task_id]
    assert _found(359.85, 0.0) == [task_id]
    with session_scope() as session:
        assert covering_task_ids(session, 0.05, 0.0) == [task_id]
    assert _found(180.0, 0.0) == []
    assert _found(0.3, 0.0) == []


def test_polar_field_takes_every_ra(database):
    task_id = _task_with_wcs(database, 10.0, 89.95)
    assert _found(200.0, 89.98) == [task_id]  # across the pole from the centre
    with session_scope() as session:
        assert covering_task_ids(session, 200.0, 89.98) == [task_id]
        assert covering_task_ids(session, 10.0, 89.80) == []  # in the box, outside the field
    assert _found(200.0, 89.5) == []


def test_cleared_and_replaced(database):
    task_id = _task_with_wcs(database, 30.0, -40.0)
    with session_scope() as session:
        clear_footprint(session, task_id)
    assert _found(30.0, -40.0) == []
    (database.tasks_dir / str(task_id) / "image.wcs").unlink()
    with session_scope() as session:
        assert store_footprint(session, task_id) is None  # no WCS: nothing stored
