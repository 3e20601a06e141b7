"""Cone validation, snapping to the cache grid, and cache keys."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.catalogs import CatalogError
from pipeline.catalogs.cache import cache_key
from pipeline.catalogs.cone import Cone, angular_distance, check_cone, snap_cone, snap_radius


def test_snapped_cone_always_contains_the_requested_cone():
    rng = np.random.default_rng(42)
    n = 20000
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    polar = rng.random(n) < 0.2  # many near the poles, where the RA grid degenerates
    dec[polar] = np.sign(dec[polar]) * rng.uniform(85, 90, polar.sum())
    radius = 10 ** rng.uniform(-3, np.log10(5), n)
    for a, d, r in zip(ra, dec, radius, strict=True):
        cone = check_cone(a, d, r)
        snapped = snap_cone(cone)
        shift = angular_distance(cone.ra, cone.dec, snapped.ra, snapped.dec)
        assert shift + cone.radius <= snapped.radius, (a, d, r)
        assert snapped.radius <= 1.6 * max(r, 1 / 60)  # and not needlessly large


def test_nearby_requests_share_a_grid_cone():
    base = snap_cone(check_cone(150.0, 20.0, 0.1))
    for dra, ddec, factor in [(0.0003, 0.0, 1.0), (0.0, -0.0002, 1.0), (0.0, 0.0, 0.97)]:
        assert snap_cone(check_cone(150.0 + dra, 20.0 + ddec, 0.1 * factor)) == base
    assert snap_cone(check_cone(150.2, 20.0, 0.1)) != base


def test_radius_ladder():
    assert snap_radius(1 / 60) == pytest.approx(1 / 60)
    assert snap_radius(0.0001) == pytest.approx(1 / 60)
    assert snap_radius(1 / 60 * 2**0.25 * 1.0001) == pytest.approx(1 / 60 * 2**0.5)
    assert snap_radius(1.0) >= 1.0


@pytest.mark.parametrize(
    ("ra", "dec", "radius", "message"),
    [
        (10.0, 95.0, 0.1, "outside \\[-90°, 90°\\]"),
        (10.0, 10.0, 0.0, "search radius 0°"),
        (10.0, 10.0, 12.0, "must be in \\(0, 5\\]°"),
        (np.nan, 10.0, 0.1, "must be finite"),
        ("abc", 10.0, 0.1, "must be numbers"),
    ],
)
def test_bad_cones_are_clear_errors(ra, dec, radius, message):
    with pytest.raises(CatalogError, match=message):
        check_cone(ra, dec, radius)


def test_ra_is_wrapped():
    assert check_cone(-10.0, 0.0, 0.1).ra == pytest.approx(350.0)
    assert check_cone(370.0, 0.0, 0.1).ra == pytest.approx(10.0)


def test_cache_key_covers_every_query_parameter():
    cone = Cone(150.0, 20.0, 0.12)
    base = cache_key("ps1", cone, 20.0, None, 1000)
    assert base == cache_key("ps1", cone, 20.0, {}, 1000)
    others = {
        cache_key("atlas", cone, 20.0, None, 1000),
        cache_key("ps1", Cone(150.01, 20.0, 0.12), 20.0, None, 1000),
        cache_key("ps1", Cone(150.0, 20.0, 0.13), 20.0, None, 1000),
        cache_key("ps1", cone, 19.0, None, 1000),
        cache_key("ps1", cone, None, None, 1000),
        cache_key("ps1", cone, 20.0, {"Qual": "<64"}, 1000),
        cache_key("ps1", cone, 20.0, None, 2000),
    }
    assert base not in others and len(others) == 7
