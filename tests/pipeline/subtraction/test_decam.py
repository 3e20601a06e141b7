"""The real DECam pair (no transient, only dipole residuals): few or no candidates."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from pipeline.subtraction import candidates as cand
from pipeline.subtraction.chunks import subtract_in_chunks
from pipeline.subtraction.prepare import prepare_inputs
from pipeline.subtraction.zogy import zogy_subtract
from pipeline.templates.reprojection import reproject_template
from tests.paths import REAL_DATA

PAIR = REAL_DATA / "sfft_decam"


@pytest.mark.skipif(not PAIR.exists(), reason=f"real data {PAIR} is missing")
def test_decam_pair_has_no_candidates_after_dipole_rejection():
    sci, sci_header = fits.getdata(PAIR / "Stack-DEC-OBS18_sci.fits", header=True)
    ref, ref_header = fits.getdata(PAIR / "Stack-DEC-OBS04_ref.fits", header=True)
    sci = sci.astype(float)
    wcs = WCS(sci_header).celestial
    template, bad_t = reproject_template(ref, ref_header, None, wcs, sci.shape)
    inputs, _ = prepare_inputs(
        sci,
        ~np.isfinite(sci),
        template,
        bad_t,
        image_fwhm=4.0,
        image_gain=4.0,
        template_gain=4.0,
        image_saturation=46000.0,
        template_saturation=46000.0,
    )
    products = subtract_in_chunks(inputs, zogy_subtract)
    table = cand.detect_candidates(products.significance, products.bad, 5.0, 3, 10)
    cand.refine_positions(products.difference, products.bad, table, 4.0)
    cand.dipole_tests(
        inputs.image,
        products,
        table,
        inner=8.0,
        max_shift=1.0,
        max_scale=1.3,
        p_value=0.01,
        chi2_drop=3.0,
    )
    kept = int((~np.asarray(table["dipole_rejected"], bool)).sum()) if len(table) else 0
    # measured: 12 detections at 5σ, 3 survive (the step also applies the shape prefilter)
    assert kept <= 3, f"{kept} of {len(table)} detections survive the dipole test"
