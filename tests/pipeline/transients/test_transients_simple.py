"""The transients_simple step on a simulated 1024² field processed by the real inspection
and photometry steps, against local XMatch / SkyBoT / VizieR / hips2fits services built
from the simulation's truth (see conftest.py).

Truth: the sky (seed 5) has 8 injected transients, 4 isolated and 4 on galaxies, at
1–2 mag above the S/N = 5 limit (20.16). None is in any catalogue.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table

from pipeline.cutouts import blink_frames, read_cutout
from pipeline.steps import ServiceUnavailable, StepError, run_step
from pipeline.steps.transients_simple import TransientsSimpleConfig
from tests.fixture_servers.skybot import Body
from tests.pipeline.transients.conftest import (
    FADED,
    OTHER_TASK,
    isolated_transients,
    main_context,
    vsx_row,
)

MATCH_ARCSEC = 1.0  # a candidate "is" a transient when within 1″ (1.25 px) of it
MAX_FALSE = 3  # allowed candidates that are no injected transient, on 1024²
BRIGHT_MARGIN = 0.5  # transients brighter than limit - 0.5 must all be found
SUMMARY_KEYS = {
    "n_objects_in",
    "n_after_flags",
    "n_after_xmatch",
    "n_minor_planets",
    "n_known_variables",
    "n_candidates",
    "catalogs_used",
    "skybot_checked",
    "vsx_checked",
}


def run(tasks, config: dict):
    ctx = main_context(tasks)
    result = run_step("transients_simple", ctx, config)
    table = Table.read(ctx.task_dir / "candidates_simple.fits")
    return result, table


def nearest(table: Table, ra: float, dec: float) -> tuple[int, float]:
    """Row of the candidate nearest (ra, dec) and its distance in arcsec."""
    if len(table) == 0:
        return -1, np.inf
    sep = SkyCoord(table["ra"], table["dec"], unit="deg").separation(SkyCoord(ra, dec, unit="deg"))
    k = int(np.argmin(sep.arcsec))
    return k, float(sep.arcsec[k])


def transient_rows(table: Table, transients: Table) -> list[int]:
    """Candidate rows that are injected transients (within MATCH_ARCSEC)."""
    rows = []
    for t in transients:
        k, sep = nearest(table, t["ra"], t["dec"])
        if sep <= MATCH_ARCSEC:
            rows.append(k)
    return rows


def test_finds_every_isolated_transient_and_few_false_ones(sky, tasks, service_config):
    result, table = run(tasks, service_config)
    assert set(result.summary) >= SUMMARY_KEYS
    json.dumps(result.summary)
    wanted = isolated_transients(sky)
    wanted = wanted[wanted["mag"] < sky.truth.limit_sn5 - BRIGHT_MARGIN]
    assert len(wanted) == 4
    for t in wanted:
        _, sep = nearest(table, t["ra"], t["dec"])
        assert sep <= MATCH_ARCSEC, f"transient at x={t['x']:.0f} y={t['y']:.0f} missed"
    found = transient_rows(table, sky.truth.transients)
    false = len(table) - len(found)
    assert false <= MAX_FALSE, f"{false} non-transient candidates"
    # measured here: 4 candidates, all transients; the magnitudes agree with the truth
    for t in wanted:
        k, _ = nearest(table, t["ra"], t["dec"])
        assert table["mag_calib"][k] == pytest.approx(t["mag"], abs=0.2)
    summary = result.summary
    assert summary["n_candidates"] == len(table)
    assert summary["catalogs_used"] == ["gaiaedr3", "ps1"]  # Dec +20: no SkyMapper
    assert summary["skybot_checked"] is True and summary["vsx_checked"] is True
    assert summary["n_objects_in"] >= summary["n_after_flags"] >= summary["n_after_xmatch"]
    assert summary["xmatch_radius_arcsec"] == pytest.approx(2 * summary["fwhm_arcsec"], rel=1e-3)
    # brightest first, and every object column kept under its own name
    assert np.all(np.diff(np.asarray(table["mag_calib"])) >= 0)
    objects = Table.read(tasks / "1" / "objects.fits", hdu=1)
    assert set(objects.colnames) <= set(table.colnames)
    assert not result.warnings, result.warnings


def test_uploads_reach_xmatch_with_fwhm_radius(tasks, services, service_config):
    result, _ = run(tasks, service_config)
    forms = services["xmatch"].forms
    assert [f["cat2"] for f in forms] == ["vizier:I/350/gaiaedr3", "vizier:II/349/ps1"]
    assert float(forms[0]["distMaxArcsec"]) == pytest.approx(
        result.summary["xmatch_radius_arcsec"], rel=1e-3
    )
    first, second = services["xmatch"].uploads
    assert len(first) == result.summary["n_after_flags"]
    # only what Gaia did not explain goes on to Pan-STARRS
    assert len(second) == len(first) - result.summary["xmatch"]["gaiaedr3"]["n_rejected"]


def test_output_files(tasks, service_config):
    result, table = run(tasks, service_config)
    folder = tasks / "1"
    csv = Table.read(folder / "candidates_simple.csv", format="ascii.csv")
    vot = Table.read(folder / "candidates_simple.vot", format="votable")
    for other in (csv, vot):
        assert len(other) == len(table)
        assert np.allclose(other["ra"], table["ra"]) and np.allclose(other["dec"], table["dec"])
    regions = (folder / "candidates_simple.reg").read_text().splitlines()
    circles = [line for line in regions if line.startswith("circle(")]
    assert len(circles) == len(table)
    assert regions[:3][2] == "fk5"
    pngs = [name for name in result.files if name.endswith(".png") and ".blink" not in name]
    assert len(pngs) == len(table)
    blinks = [name for name in result.files if name.endswith(".blink.png")]
    assert len(blinks) == len(table)
    assert blink_frames(folder / blinks[0]) == ["image", "Pan-STARRS DR1 r"]
    cutout_files = [name for name in result.files if name.endswith(".cutout")]
    assert len(cutout_files) == len(table)
    first = read_cutout(folder / cutout_files[0])
    assert [p.name for p in first.panels] == ["image", "atlas", "footprint", "mask"]
    assert first.panel("atlas").data is not None and first.panel("footprint").data.any()
    for name in result.files:
        assert (folder / name).is_file(), name
    assert list(table["cutout"]) == pngs
    record = json.loads((folder / "transients_simple.result.json").read_text())
    assert set(record["files"]) == set(result.files)


def test_minor_planet_on_a_transient_is_removed(sky, tasks, services, service_config):
    target = isolated_transients(sky)[1]
    # 3″ off: inside the 10″ SkyBoT radius
    services["skybot"].bodies.append(
        Body(
            "2015 AB123",
            target["ra"] + 3 / 3600 / np.cos(np.radians(target["dec"])),
            target["dec"],
            number="612345",
        )
    )
    result, table = run(tasks, service_config)
    _, sep = nearest(table, target["ra"], target["dec"])
    assert sep > MATCH_ARCSEC
    assert result.summary["n_minor_planets"] == 1
    assert result.summary["minor_planets"][0]["name"] == "2015 AB123"
    assert result.summary["minor_planets"][0]["sep_arcsec"] == pytest.approx(3.0, abs=0.3)
    assert result.summary["skybot_checked"] is True
    # the query was for mid-exposure of this image (start + exposure / 2)
    inspect = json.loads((tasks / "1" / "inspect.result.json").read_text())["summary"]
    expected = inspect["mjd"] + 2400000.5 + inspect["exposure"] / 2 / 86400
    assert services["skybot"].requested_epochs[-1] == pytest.approx(expected, abs=1 / 86400)
    # annotate-only mode keeps it and says which body it is
    _, kept = run(tasks, {**service_config, "skybot_reject": False})
    k, sep = nearest(kept, target["ra"], target["dec"])
    assert sep <= MATCH_ARCSEC and kept["minor_planet"][k] == "2015 AB123"


def test_known_variable_is_annotated_not_rejected(sky, tasks, services, service_config):
    target = isolated_transients(sky)[2]
    services["vizier"].catalogs["B/vsx/vsx"] = Table(
        rows=[
            vsx_row("SIM UGSS 1", "UGSS", target["ra"], target["dec"] + 1.0 / 3600, 14.1, 19.8),
            vsx_row("SIM EW 2", "EW", target["ra"] + 0.05, target["dec"], 15.0, 15.4),
        ]
    )
    result, table = run(tasks, service_config)
    k, sep = nearest(table, target["ra"], target["dec"])
    assert sep <= MATCH_ARCSEC
    assert bool(table["known_variable"][k]) and table["vsx_name"][k] == "SIM UGSS 1"
    assert table["vsx_type"][k] == "UGSS" and table["vsx_sep"][k] == pytest.approx(1.0, abs=0.2)
    assert int(np.count_nonzero(table["known_variable"])) == 1
    assert result.summary["n_known_variables"] == 1


def test_xmatch_down_is_a_clear_retryable_failure(tasks, services, service_config):
    services["xmatch"].mode = "down"
    with pytest.raises(ServiceUnavailable, match="XMatch"):
        run_step("transients_simple", main_context(tasks), service_config)
    services["xmatch"].mode = "error"
    with pytest.raises(ServiceUnavailable, match="HTTP 500"):
        run_step("transients_simple", main_context(tasks), service_config)


def test_skybot_down_warns_and_continues(sky, tasks, services, service_config):
    services["skybot"].mode = "down"
    result, table = run(tasks, service_config)
    assert result.summary["skybot_checked"] is False
    assert any("minor planets were not checked" in w for w in result.warnings)
    assert len(transient_rows(table, isolated_transients(sky))) == 4


def test_vsx_and_atlas_down_only_warn(tasks, services, service_config):
    services["vizier"].mode = "down"
    services["hips"].mode = "error"
    result, table = run(tasks, service_config)
    assert result.summary["vsx_checked"] is False
    assert any("variable stars were not checked" in w for w in result.warnings)
    assert sum("no atlas image" in w for w in result.warnings) == 1  # said once, not per cutout
    assert len(table) == result.summary["n_candidates"] > 0


def test_other_image_keeps_only_objects_seen_in_both(sky, tasks, service_config):
    result, table = run(tasks, {**service_config, "other_tasks": [OTHER_TASK]})
    isolated = isolated_transients(sky)
    for index, t in enumerate(isolated):
        _, sep = nearest(table, t["ra"], t["dec"])
        if index == FADED:
            assert sep > MATCH_ARCSEC, "the transient missing from the other image was kept"
        else:
            assert sep <= MATCH_ARCSEC
    assert result.summary["n_after_others"] < result.summary["n_after_flags"]
    with pytest.raises(StepError, match="run photometry in that task first"):
        run_step("transients_simple", main_context(tasks), {**service_config, "other_tasks": [77]})


def test_cone_restriction(sky, tasks, service_config):
    target = isolated_transients(sky)[3]
    centre = f"{target['ra']:.6f} {target['dec']:+.6f}"
    result, table = run(tasks, {**service_config, "center": centre, "radius_deg": 20 / 3600})
    assert len(table) == 1
    assert nearest(table, target["ra"], target["dec"])[1] <= MATCH_ARCSEC
    assert result.summary["n_after_cone"] < 10
    with pytest.raises(StepError, match="center"):
        run_step(
            "transients_simple",
            main_context(tasks),
            {**service_config, "center": "not a place", "radius_deg": 0.1},
        )


def test_cap_keeps_the_brightest(tasks, service_config):
    result, table = run(tasks, {**service_config, "max_candidates": 2, "make_cutouts": False})
    _, full = run(tasks, {**service_config, "make_cutouts": False})
    assert len(table) == 2
    assert list(table["jname"]) == list(full["jname"][:2])
    assert any("only the 2 brightest" in w for w in result.warnings)


def test_zero_mag_diff_rejects_every_match(sky, tasks, services, service_config):
    result, table = run(tasks, {**service_config, "mag_diff": 0.0, "make_cutouts": False})
    upload = services["xmatch"].uploads[0]
    gaia = services["xmatch"].catalogs["I/350/gaiaedr3"]
    ours = SkyCoord(upload["cand_ra"], upload["cand_dec"], unit="deg")
    stars = SkyCoord(gaia["RA_ICRS"], gaia["DE_ICRS"], unit="deg")
    _, sep, _ = ours.match_to_catalog_sky(stars)
    within = int(np.count_nonzero(sep.arcsec <= result.summary["xmatch_radius_arcsec"]))
    assert result.summary["xmatch"]["gaiaedr3"]["n_rejected"] == within
    assert len(transient_rows(table, isolated_transients(sky))) == 4


def test_needs_calibrated_magnitudes(tasks, tmp_path, service_config):
    folder = tmp_path / "9"
    folder.mkdir()
    source = tasks / "1"
    for name in ("image.fits", "mask.fits", "image.wcs", "inspect.result.json"):
        if (source / name).exists():
            (folder / name).write_bytes((source / name).read_bytes())
    objects = Table.read(source / "objects.fits", hdu=1)
    objects.remove_columns([c for c in objects.colnames if c.startswith("mag_calib")])
    objects.meta.pop("MAGBAND", None)
    fits.HDUList([fits.PrimaryHDU(), fits.table_to_hdu(objects)]).writeto(folder / "objects.fits")
    ctx = main_context(tasks)
    ctx.task_dir = folder
    with pytest.raises(StepError, match="run photometry with calibration first"):
        run_step("transients_simple", ctx, service_config)
    # with mag_diff = 0 no magnitude is needed: every catalogue match is rejected
    result = run_step("transients_simple", ctx, {**service_config, "mag_diff": 0.0})
    assert result.summary["n_candidates"] >= 4
    assert any("no calibrated magnitudes" in w for w in result.warnings)


def test_missing_objects_and_config_errors(tmp_path, service_config):
    ctx = main_context(tmp_path)
    ctx.task_dir = tmp_path
    with pytest.raises(StepError, match="run the photometry step first"):
        run_step("transients_simple", ctx, service_config)
    with pytest.raises(ValueError, match="center and radius_deg"):
        TransientsSimpleConfig(center="150 20")
    with pytest.raises(ValueError):
        TransientsSimpleConfig(catalogs=["usnob1"])
