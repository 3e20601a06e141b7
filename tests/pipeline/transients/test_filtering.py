"""Local filters: flags, coordinates of the cone centre, cone, other images, ordering."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

from pipeline.flags import ObjectFlag
from pipeline.transients.filtering import (
    FilterInputError,
    brightest_first,
    cone_filter,
    flag_filter,
    parse_coordinates,
    read_other_objects,
    rejected_flags,
    resolve_centre,
    seen_in_all,
)
from pipeline.transients.matching import nearest_within


def test_flags_allowed_and_rejected():
    flags = np.array(
        [
            0,
            ObjectFlag.DEBLENDED,
            ObjectFlag.FOOTPRINT_MASKED,
            ObjectFlag.DEBLENDED | ObjectFlag.FOOTPRINT_MASKED,
            ObjectFlag.SHAPE_OUTLIER,
            ObjectFlag.SATURATED,
            ObjectFlag.APERTURE_MASKED,
            ObjectFlag.NEIGHBOURS | ObjectFlag.DEBLENDED,
            ObjectFlag.EDGE_TRUNCATED,
        ]
    )
    assert flag_filter(flags).tolist() == [1, 1, 1, 1, 0, 0, 0, 0, 0]
    assert flag_filter(flags, keep_shape_outliers=True).tolist() == [1, 1, 1, 1, 1, 0, 0, 0, 0]
    # every defined bit but the allowed ones rejects
    assert rejected_flags(False) == 0xFFF & ~0x0C0 & ~0x002 & ~0x100
    assert rejected_flags(True) == rejected_flags(False) & ~0x800


@pytest.mark.parametrize(
    ("text", "ra", "dec"),
    [
        ("150.1 20.2", 150.1, 20.2),
        ("150.1, -20.2", 150.1, -20.2),
        ("10:00:24 +20:12:00", 150.1, 20.2),
        ("10h00m24s +20d12m00s", 150.1, 20.2),
        ("10 00 24.0 -05 30 00", 150.1, -5.5),
    ],
)
def test_parse_coordinates(text, ra, dec):
    assert parse_coordinates(text) == pytest.approx((ra, dec), abs=1e-9)


def test_parse_coordinates_rejects():
    assert parse_coordinates("M31") is None
    assert parse_coordinates("SN 2023ixf") is None
    with pytest.raises(FilterInputError, match="declination"):
        parse_coordinates("150 95")
    with pytest.raises(FilterInputError, match="right ascension"):
        parse_coordinates("400 20")
    with pytest.raises(FilterInputError, match="empty"):
        resolve_centre("  ")
    with pytest.raises(FilterInputError, match="cannot"):
        resolve_centre("certainly not a known object name 123 xyz")


def test_cone_and_matching():
    ra = np.array([150.0, 150.0, 150.0 + 0.02 / np.cos(np.radians(20)), 151.0])
    dec = np.array([20.0, 20.019, 20.0, 20.0])
    inside = cone_filter(ra, dec, (150.0, 20.0), 0.0195)
    assert inside.tolist() == [True, True, False, False]
    index, sep = nearest_within(ra, dec, np.array([150.0]), np.array([20.0]), 70.0)
    assert index.tolist() == [0, 0, -1, -1]
    assert sep[1] == pytest.approx(0.019 * 3600, rel=1e-6)
    assert np.isnan(sep[2])
    # nothing to match against
    index, sep = nearest_within(ra, dec, np.zeros(0), np.zeros(0), 10.0)
    assert (index == -1).all() and np.isnan(sep).all()


def test_seen_in_all_needs_every_other_image(tmp_path):
    ra = np.array([10.0, 10.001, 10.002])
    dec = np.array([-5.0, -5.0, -5.0])
    shift = 0.5 / 3600  # 0.5″ away: a match within 1″
    first = Table({"ra": ra + shift, "dec": dec})
    second = Table({"ra": ra[:2], "dec": dec[:2] + shift})
    assert seen_in_all(ra, dec, [first], 1.0).tolist() == [True, True, True]
    assert seen_in_all(ra, dec, [first, second], 1.0).tolist() == [True, True, False]
    assert seen_in_all(ra, dec, [first], 0.4).tolist() == [False, False, False]


def test_read_other_objects(tmp_path):
    folder = tmp_path / "12"
    folder.mkdir()
    with pytest.raises(FilterInputError, match=r"12/objects\.fits does not exist"):
        read_other_objects(folder / "objects.fits")
    Table({"x": [1.0], "ra": [np.nan], "dec": [np.nan]}).write(folder / "objects.fits")
    with pytest.raises(FilterInputError, match="needs astrometry"):
        read_other_objects(folder / "objects.fits")
    Table({"ra": [1.0, np.nan], "dec": [2.0, 3.0]}).write(folder / "objects.fits", overwrite=True)
    assert len(read_other_objects(folder / "objects.fits")) == 1


def test_brightest_first():
    mag = np.array([18.0, np.nan, 15.5, 20.0, 16.0])
    assert brightest_first(mag, 3).tolist() == [2, 4, 0]
    assert brightest_first(mag, 10).tolist() == [2, 4, 0, 3, 1]
