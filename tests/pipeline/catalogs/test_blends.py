"""Blended catalogue stars: merged into one flux-weighted entry, or dropped."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

from pipeline.catalogs import BLEND_COLUMN, CatalogError, remove_blends

DEG = 1 / 3600.0  # one arcsec in degrees


def _catalog():
    """At Dec 20 (RA steps shrink by cos δ = 0.94 on the sky): a pair 2.8″ apart, an
    isolated star, and a chain of three stars 2.35″ apart."""
    ra = [10.0, 10.0 + 3 * DEG, 10.1, 10.2, 10.2 + 2.5 * DEG, 10.2 + 5 * DEG]
    dec = [20.0] * 6
    table = Table({"ra": ra, "dec": dec})
    table["rmag"] = [15.0, 16.0, 14.0, 17.0, 17.0, 18.0]
    table["e_rmag"] = [0.01, 0.02, 0.01, 0.03, 0.03, 0.05]
    table["gmag"] = [15.5, 16.9, 14.6, 17.6, 17.7, np.nan]
    table["e_gmag"] = [0.01, 0.02, 0.01, 0.03, 0.03, np.nan]
    return table


def test_merge_sums_fluxes_and_weights_positions():
    table = _catalog()
    # separation 2·FWHM = 4″: the pair (3″ in RA·cos δ ≈ 2.8″) and the chain merge
    merged = remove_blends(table, fwhm_arcsec=2.0)
    assert len(merged) == 3
    assert merged.meta["blends"] == {
        "separation_arcsec": 4.0,
        "mode": "merge",
        "groups": 2,
        "stars_in_groups": 5,
    }
    pair = merged[merged[BLEND_COLUMN] == 2][0]
    flux = 10 ** (-0.4 * 15.0) + 10 ** (-0.4 * 16.0)
    assert pair["rmag"] == pytest.approx(-2.5 * np.log10(flux), abs=1e-12)
    g_flux = 10 ** (-0.4 * 15.5) + 10 ** (-0.4 * 16.9)
    assert pair["gmag"] == pytest.approx(-2.5 * np.log10(g_flux), abs=1e-12)
    # error of the summed flux
    f1, f2 = 10 ** (-0.4 * 15.0), 10 ** (-0.4 * 16.0)
    flux_err = np.hypot(f1 * 0.01, f2 * 0.02) / (2.5 / np.log(10))
    assert pair["e_rmag"] == pytest.approx(2.5 / np.log(10) * flux_err / flux, rel=1e-9)
    # flux-weighted RA (weights from the band measured for most stars: r)
    assert pair["ra"] == pytest.approx((10.0 * f1 + (10.0 + 3 * DEG) * f2) / (f1 + f2), abs=1e-9)
    isolated = merged[merged[BLEND_COLUMN] == 1][0]
    assert isolated["rmag"] == 14.0 and isolated["ra"] == 10.1
    chain = merged[merged[BLEND_COLUMN] == 3][0]
    assert np.isnan(chain["gmag"])  # one member has no g: the sum would be too faint
    chain_flux = sum(10 ** (-0.4 * m) for m in (17.0, 17.0, 18.0))
    assert chain["rmag"] == pytest.approx(-2.5 * np.log10(chain_flux), abs=1e-12)


def test_drop_removes_every_member():
    dropped = remove_blends(_catalog(), fwhm_arcsec=2.0, mode="drop")
    assert list(dropped["rmag"]) == [14.0]
    assert BLEND_COLUMN not in dropped.colnames


def test_fwhm_in_pixels_with_a_pixel_scale():
    # 2 px × 0.5″/px = 1″ FWHM → 2″ separation: only the chain links (2.5″·cos δ ≈ 2.35″ > 2″)
    result = remove_blends(_catalog(), fwhm_pixels=2.0, pixel_scale_arcsec=0.5)
    assert result.meta["blends"]["separation_arcsec"] == pytest.approx(2.0)
    assert len(result) == 6
    wider = remove_blends(_catalog(), fwhm_pixels=2.0, pixel_scale_arcsec=0.5, factor=2.6)
    assert len(wider) == 4  # 2.6″: the chain merges, the 2.8″ pair does not


def test_bad_arguments_are_clear_errors():
    with pytest.raises(CatalogError, match="give the FWHM in arcsec"):
        remove_blends(_catalog())
    with pytest.raises(CatalogError, match="must be a positive number"):
        remove_blends(_catalog(), fwhm_arcsec=-1.0)
    with pytest.raises(CatalogError, match="blend mode 'both'"):
        remove_blends(_catalog(), fwhm_arcsec=2.0, mode="both")


def test_real_catalogue_merge_keeps_total_flux(ps1_table):
    from pipeline.catalogs import get_definition
    from pipeline.catalogs.normalize import normalize

    table = normalize(ps1_table, get_definition("ps1"))
    merged = remove_blends(table, fwhm_arcsec=4.0)
    assert merged.meta["blends"]["groups"] > 0
    r = np.asarray(table["rmag"])
    total = np.nansum(10 ** (-0.4 * r[np.isfinite(r)]))
    r_merged = np.asarray(merged["rmag"])
    total_merged = np.nansum(10 ** (-0.4 * r_merged[np.isfinite(r_merged)]))
    # every star is either kept or summed into its group (groups with a missing r drop out)
    assert total_merged <= total * (1 + 1e-12)
    assert total_merged > 0.99 * total
    assert (
        len(merged)
        == len(table) - merged.meta["blends"]["stars_in_groups"] + merged.meta["blends"]["groups"]
    )
