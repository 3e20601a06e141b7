"""The SCAMP adapter: same interface and the same accuracy as the built-in method."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from pipeline.astrometry import (
    AstrometryConfig,
    NoMatchError,
    SolverUnavailable,
    refine_with_scamp,
    scamp_available,
    solve_astrometry,
    wcs_grid_difference,
)
from pipeline.astrometry.scamp import write_ldac

GRID_RMS_PX = 0.1  # the acceptance tolerance of the built-in method

needs_scamp = pytest.mark.skipif(
    not scamp_available(), reason="scamp not installed (apt-get install scamp)"
)


def test_ldac_header_block_is_blank_padded(tmp_path):
    """SCAMP crashes on NUL bytes after END, which astropy writes for trailing blanks."""
    header = fits.Header({"SIMPLE": True, "BITPIX": -32, "NAXIS": 2, "NAXIS1": 10, "NAXIS2": 10})
    write_ldac(tmp_path / "t.ldac", header, Table({"XWIN_IMAGE": [1.0]}))
    with fits.open(tmp_path / "t.ldac") as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "LDAC_IMHEAD", "LDAC_OBJECTS"]
        start = hdul[1].fileinfo()["datLoc"]
    raw = (tmp_path / "t.ldac").read_bytes()
    block = raw[start : start + 6 * 80]  # five cards and END
    assert b"\x00" not in block and block[5 * 80 : 5 * 80 + 3] == b"END"


def test_missing_scamp_is_reported(small_field):
    with pytest.raises(SolverUnavailable, match="scamp is not installed"):
        refine_with_scamp(
            small_field.objects,
            small_field.sky.catalog,
            small_field.truth,
            small_field.shape,
            program="no-such-scamp",
        )


@pytest.mark.requires_scamp
@needs_scamp
def test_scamp_refines_perturbed_wcs_to_truth(field, tmp_path):
    approximate = field.approximate(shift_arcsec=20.0, rot_deg=0.2)
    solution = refine_with_scamp(
        field.objects, field.sky.catalog, approximate, field.shape, work_dir=tmp_path
    )
    assert solution.method == "scamp"
    assert solution.wcs.wcs.ctype[0].startswith("RA---T")  # TPV, read by astropy as TAN+poly
    assert wcs_grid_difference(solution.wcs, field.truth, field.shape)[0] <= GRID_RMS_PX
    assert solution.n_matches > 1000 and solution.rms_arcsec < 0.3
    assert not list(tmp_path.iterdir())  # scratch files removed


@pytest.mark.requires_scamp
@needs_scamp
def test_scamp_through_solve_astrometry(small_field):
    header = small_field.header_with(small_field.approximate(20.0, 0.2))
    solution = solve_astrometry(
        small_field.objects,
        small_field.sky.catalog,
        header,
        small_field.shape,
        AstrometryConfig(astrometry_method="scamp"),
    )
    assert solution.method == "scamp"
    assert wcs_grid_difference(solution.wcs, small_field.truth, small_field.shape)[0] <= GRID_RMS_PX


@pytest.mark.requires_scamp
@needs_scamp
def test_scamp_with_catalogue_elsewhere(small_field):
    far = small_field.sky.catalog.copy()
    far["DEJ2000"] = np.asarray(far["DEJ2000"]) - 10.0
    with pytest.raises(NoMatchError, match="0 catalogue stars: is the field outside"):
        refine_with_scamp(small_field.objects, far, small_field.truth, small_field.shape)
