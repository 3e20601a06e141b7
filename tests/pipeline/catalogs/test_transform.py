"""Photometric transformations: the coefficient table, the engine, and real stars.

Real-data acceptance: ATLAS-REFCAT2 (Pan-STARRS griz) transformed to Johnson B and V
agrees with APASS on the same stars to 0.06 mag in the median. A second, independent
check: Gaia G/BP/RP (Riello et al. 2021) and PS1 griz (Tonry et al. 2012) of the same
real stars must give the same V, R, I, g, r, i to 0.05 mag in the median.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

from pipeline.catalogs import CATALOGS, derivable_bands, derive_bands, get_definition, mag_column
from pipeline.catalogs.definitions import SDSS, SKYMAPPER, err_column
from pipeline.catalogs.normalize import normalize
from pipeline.catalogs.relations import RELATIONS, RELATIONS_BY_KEY
from pipeline.catalogs.transform import CALIBRATION_BANDS, plan_derivations
from tests.conftest import REAL_DATA
from tests.pipeline.catalogs.helpers import match_positions

# --- the coefficient table --------------------------------------------------------------


def test_every_relation_has_provenance_and_sane_coefficients():
    known = set(CALIBRATION_BANDS)
    keys = set()
    for relation in RELATIONS:
        assert relation.key not in keys
        keys.add(relation.key)
        assert relation.reference and relation.source, relation.key
        assert relation.derives in ("lhs", "rhs", "both")
        assert relation.scatter is None or 0 < relation.scatter < 0.2
        for band in (relation.lhs, relation.rhs, *relation.colour_bands):
            system = band.rpartition(":")[0]
            assert band in known or system in (SDSS, SKYMAPPER), band
        for term in relation.terms:
            assert 1 <= len(term.coefficients) <= 5
            assert all(np.isfinite(term.coefficients))
            if term.valid is not None:
                assert term.valid[0] < term.valid[1]


def test_tonry_b_and_v_at_a_solar_colour():
    """B − g and V − r at (g−r)_P1 = 0.5 from Tonry et al. 2012, Table 6, by hand."""
    table = Table({"gmag": [15.0], "rmag": [14.5], "imag": [14.35]})
    derive_bands(table)
    assert table["Bmag"][0] == pytest.approx(15.0 + 0.212 + 0.556 * 0.5 + 0.034 * 0.25, abs=1e-12)
    assert table["Vmag"][0] == pytest.approx(14.5 + 0.005 + 0.462 * 0.5 + 0.013 * 0.25, abs=1e-12)
    assert table["Imag"][0] == pytest.approx(14.35 - 0.366 - 0.136 * 0.5 - 0.018 * 0.25)
    assert table.meta["derived"]["B"] == "tonry2012:B"


def test_errors_combine_base_colour_and_published_scatter():
    table = Table({"gmag": [15.0], "e_gmag": [0.02], "rmag": [14.5], "e_rmag": [0.03]})
    derive_bands(table, ["B"])
    slope = 0.556 + 2 * 0.034 * 0.5  # dP/dx at x = 0.5
    expected = np.sqrt(0.02**2 + slope**2 * (0.02**2 + 0.03**2) + 0.032**2)
    assert table["e_Bmag"][0] == pytest.approx(expected, rel=1e-12)
    assert "Vmag" not in table.colnames  # only what was asked for


def test_preferred_source_replaces_the_default():
    table = Table({"gmag": [15.0], "rmag": [14.5], "imag": [14.3]})
    derive_bands(table, ["B"], prefer=("kostov2018",))
    assert table["Bmag"][0] == pytest.approx(15.0 + 0.199 + 0.540 * 0.5 + 0.016 * 0.25)
    assert table.meta["derived"]["B"] == "kostov2018:B"


def test_colour_outside_the_stated_range_gives_nan_not_an_extrapolation():
    # Riello et al. 2021 Table C.1: G − I_C valid for −0.5 < BP−RP < 4.5
    table = Table({"Gmag": [15.0, 15.0], "BPmag": [15.5, 21.0], "RPmag": [14.5, 15.0]})
    derive_bands(table, ["I"])
    assert np.isfinite(table["Imag"][0])
    assert np.isnan(table["Imag"][1])  # BP−RP = 6


def test_sdss_to_ps1_inverts_tonry_by_iteration(ps1_table):
    """PS1 → SDSS with Tonry's forward relations, then back with the engine: same PS1."""
    ps1 = Table()
    for band in "griz":
        ps1[band] = np.ma.filled(np.ma.asarray(ps1_table[f"{band}mag"]).astype(float), np.nan)
    x = ps1["g"] - ps1["r"]
    sdss = Table()
    forward = {
        "g": (0.013, 0.145, 0.019),
        "r": (-0.001, 0.004, 0.007),
        "i": (-0.005, 0.011, 0.010),
        "z": (0.013, -0.039, -0.012),
    }
    for band, (c0, c1, c2) in forward.items():
        sdss[mag_column(f"{SDSS}:{band}")] = ps1[band] + c0 + c1 * x + c2 * x**2
    derive_bands(sdss, list("griz"))
    ok = np.isfinite(ps1["g"]) & np.isfinite(ps1["r"]) & np.isfinite(ps1["z"])
    assert ok.sum() > 1000
    for band in "griz":
        assert np.nanmax(np.abs(sdss[f"{band}mag"][ok] - ps1[band][ok])) < 1e-6


def test_gaia_chain_is_self_consistent():
    """Gaia → SDSS (Riello) → PS1 (Tonry, iterated): Tonry forward gives the SDSS back."""
    bp_rp = np.linspace(0.5, 2.0, 16)
    table = Table(
        {"Gmag": np.full(16, 15.0), "BPmag": 15.0 + 0.6 * bp_rp, "RPmag": 15.0 - 0.4 * bp_rp}
    )
    derive_bands(table)
    assert table.meta["derived"]["g"] == "riello2021:sdss:g > tonry2012:sdss:g"
    x = table["gmag"] - table["rmag"]
    riello_g = 15.0 - np.polynomial.polynomial.polyval(bp_rp, (0.2199, -0.6365, -0.1548, 0.0064))
    assert np.allclose(table["gmag"] + 0.013 + 0.145 * x + 0.019 * x**2, riello_g, atol=1e-8)


def test_plan_prefers_one_step_relations():
    steps = plan_derivations({f"{SDSS}:{b}" for b in "ugriz"})
    by_band = {step.band: step for step in steps}
    assert by_band["B"].relation.key == "lupton2005:B"  # not via PS1 g
    assert by_band["U"].relation.key == "jordi2006:U"  # two colours: (u−g) and (g−r)
    assert {by_band[b].group for b in "griz"} == {1}  # PS1 griz solved together
    assert "y" not in by_band


# --- what each catalogue can serve ----------------------------------------------------

SERVES = {
    "ps1": "BVRIgrizy",
    "atlas": "BVRIgriz J H Ks",
    "skymapper": "BVRIgrizy",
    "gaiadr3syn": "UBVRIugrizy",
    "sdss": "UBVRIugriz",
    "gaiaedr3": "BVRgri G BP RP I",
    "2mass": "J H Ks",
}


def _bands(text: str) -> set[str]:
    bands = set()
    for word in text.split():
        bands |= {word} if word in CALIBRATION_BANDS else set(word)
    return bands


@pytest.mark.parametrize("catalog", sorted(CATALOGS))
def test_each_catalogue_serves_the_documented_bands(catalog):
    assert set(derivable_bands(catalog)) == _bands(SERVES[catalog])
    native = set(get_definition(catalog).native_bands)
    for band, how in derivable_bands(catalog).items():
        assert (how == "native") == (band in native)
        for key in how.split(" > ") if how != "native" else []:
            assert key in RELATIONS_BY_KEY


# --- real stars ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_pair():
    folder = REAL_DATA / "catalogs"
    if not folder.exists():
        pytest.skip(f"real catalogue extracts missing in {folder}")
    refcat = Table.read(folder / "all_refcat2_ey_uma.ecsv")
    apass = Table.read(folder / "all_apass_ey_uma.ecsv")
    return refcat, apass


def test_refcat2_to_johnson_agrees_with_apass(real_pair):
    refcat, apass = real_pair
    table = normalize(refcat, get_definition("atlas"))
    derive_bands(table)
    i_apass, i_ref = match_positions(
        apass["RAJ2000"], apass["DEJ2000"], table["ra"], table["dec"], 2.0
    )
    assert len(i_apass) >= 45  # 53 of the 54 APASS stars have a REFCAT2 match within 2″
    for band in "BV":
        listed = np.ma.filled(np.ma.asarray(apass[f"{band}mag"]).astype(float), np.nan)
        diff = np.asarray(table[mag_column(band)])[i_ref] - listed[i_apass]
        diff = diff[np.isfinite(diff)]
        assert len(diff) >= 45
        assert abs(np.median(diff)) < 0.06, band
        assert np.median(np.abs(diff)) < 0.06, band
        # the propagated errors include Tonry's published scatter (0.032 for B, 0.012 for V)
        errors = np.asarray(table[err_column(band)])[i_ref]
        floor = {"B": 0.032, "V": 0.012}[band]
        assert np.all(errors[np.isfinite(errors)] >= floor)


def test_gaia_and_ps1_routes_agree_on_real_stars(real_pair):
    refcat, _ = real_pair
    via_ps1 = normalize(refcat, get_definition("atlas"))
    via_gaia = normalize(refcat, get_definition("gaiaedr3"))  # REFCAT2 carries Gaia G/BP/RP
    derive_bands(via_ps1)
    derive_bands(via_gaia)
    for band in ("V", "R", "I", "B", "g", "r", "i"):
        diff = np.asarray(via_gaia[mag_column(band)]) - np.asarray(via_ps1[mag_column(band)])
        diff = diff[np.isfinite(diff)]
        assert len(diff) > 100, band
        assert abs(np.median(diff)) < 0.05, band
