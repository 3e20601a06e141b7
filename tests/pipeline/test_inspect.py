"""The inspection step end to end in a task folder: outputs, summary, errors, custom masks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from pipeline.fitsio import write_task_image
from pipeline.masking import MaskBit
from pipeline.simulate import simulate_sky
from pipeline.steps import StepContext, StepError, run_step
from pipeline.steps.inspect import InspectConfig

SUMMARY_KEYS = {
    "gain", "saturation", "filter", "filter_raw", "exposure", "time", "mjd", "telescope",
    "instrument", "binning", "shape", "ra_hint", "dec_hint", "has_wcs", "pixel_scale_arcsec",
    "data_section", "sky_subtracted", "mask_fraction", "n_cosmic_pixels",
}  # fmt: skip


def _task(tmp_path, source):
    write_task_image(source, tmp_path / "image.fits")
    return StepContext(task_dir=tmp_path)


def _task_from_array(tmp_path, data, **cards):
    header = fits.Header()
    for key, value in cards.items():
        header[key] = value
    fits.PrimaryHDU(np.asarray(data, np.float32), header).writeto(tmp_path / "image.fits")
    return StepContext(task_dir=tmp_path)


def _mask(tmp_path):
    return fits.getdata(tmp_path / "mask.fits")


def _sky_image(seed=0, shape=(200, 240)):
    rng = np.random.default_rng(seed)
    return rng.normal(500.0, 10.0, shape).astype(np.float32)


# ------------------------------------------------------------------ real frames


def test_saao_raw_frame(real_data, tmp_path):
    ctx = _task(tmp_path, real_data / "saao1m_raw_a8280271.fits")
    result = run_step("inspect", ctx)
    summary = result.summary
    assert set(summary) >= SUMMARY_KEYS
    json.dumps(summary)  # plain JSON types only
    assert summary["gain"] == 1.9 and summary["raw_like"]
    assert summary["data_section"] == "[17:528,1:520]"
    assert summary["ra_hint"] == pytest.approx(331.0334, abs=2e-4)
    assert any("looks raw" in w for w in result.warnings)
    mask = _mask(tmp_path)
    assert mask.dtype == np.uint8 and mask.shape == (520, 536)
    outside = (mask & MaskBit.OUTSIDE_DATA) > 0
    assert outside[:, :16].all() and outside[:, 528:].all()
    assert not outside[:, 16:528].any()
    assert result.files == ["mask.fits"]  # no usable WCS: no image.wcs
    record = json.loads((tmp_path / "inspect.result.json").read_text())
    assert record["summary"]["gain"] == 1.9


def test_sdss_frame_writes_a_usable_wcs(real_data, tmp_path):
    ctx = _task(tmp_path, real_data / "sdss_g_run1737_c5_f47_full.fits.bz2")
    result = run_step("inspect", ctx, {"mask_cosmics": False})
    summary = result.summary
    assert summary["has_wcs"] and summary["pixel_scale_arcsec"] == pytest.approx(0.396, abs=1e-3)
    assert summary["sky_subtracted"] and summary["gain"] == 1.0
    assert summary["n_cosmic_pixels"] == 0
    assert "image.wcs" in result.files
    header = fits.getheader(tmp_path / "image.wcs")
    wcs = WCS(header)
    ra, dec = wcs.all_pix2world(1023.5, 744, 0)
    assert (float(ra), float(dec)) == (
        pytest.approx(313.170, abs=2e-3),
        pytest.approx(-5.693, abs=2e-3),
    )
    assert header["IMAGEW"] == 2048 and header["IMAGEH"] == 1489
    with fits.open(tmp_path / "image.fits") as hdul:  # the image itself is left untouched
        assert "RADECSYS" in hdul[0].header


def test_decam_stack(real_data, tmp_path):
    ctx = _task(tmp_path, real_data / "sfft_decam" / "Stack-DEC-OBS04_ref.fits")
    summary = run_step("inspect", ctx).summary
    assert summary["has_wcs"] and summary["filter"] == "i"
    assert summary["gain"] == pytest.approx(3.98, abs=0.01)
    assert summary["saturation"] == pytest.approx(46536.1, abs=0.1)
    assert summary["n_cosmic_pixels"] <= 5


def test_rerun_clears_and_rewrites(real_data, tmp_path):
    ctx = _task(tmp_path, real_data / "sep_eso_emmi_image.fits")
    run_step("inspect", ctx)
    first = _mask(tmp_path)
    result = run_step("inspect", ctx, {"mask_cosmics": False})
    assert result.summary["n_cosmic_pixels"] == 0
    assert not (_mask(tmp_path) & MaskBit.COSMIC).any() and first.shape == (256, 256)
    assert not result.summary["has_wcs"] and "image.wcs" not in result.files


# ------------------------------------------------------------------ simulated sky


def test_simulated_sky_saturation_and_cosmics(tmp_path):
    sky = simulate_sky(size=512, seed=8, template=False, n_cosmic_hits=60, n_cosmic_tracks=6)
    fits.PrimaryHDU(sky.image, sky.header).writeto(tmp_path / "image.fits")
    result = run_step("inspect", StepContext(task_dir=tmp_path))
    summary = result.summary
    assert summary["gain"] == sky.truth.gain and summary["saturation"] == sky.truth.saturation
    assert summary["has_wcs"]
    assert summary["pixel_scale_arcsec"] == pytest.approx(sky.config.pixel_scale, rel=0.01)
    assert summary["time"].startswith(sky.config.date_obs[:19])
    # image.wcs keeps the SIP distortion: corners agree with the true WCS to 1 mas
    solved = WCS(fits.getheader(tmp_path / "image.wcs"))
    corners = np.array([[0, 0], [511, 0], [0, 511], [511, 511]], float)
    got = solved.all_pix2world(corners, 0)
    want = sky.truth.wcs.all_pix2world(corners, 0)
    assert np.abs(got - want).max() * 3600 < 1e-3
    mask = _mask(tmp_path)
    saturated = sky.image >= sky.truth.saturation
    assert saturated.any() and ((mask & MaskBit.SATURATED) > 0)[saturated].all()
    hits = sky.truth.cosmic_events[sky.truth.cosmic_events["kind"] == "hit"]
    hx, hy = np.asarray(hits["x"], int), np.asarray(hits["y"], int)
    cosmic = (mask & MaskBit.COSMIC) > 0
    fine = (mask[hy, hx] & (MaskBit.SATURATED | MaskBit.OUTSIDE_DATA)) == 0
    assert cosmic[hy, hx][fine].mean() >= 0.9


# ------------------------------------------------------------------ custom masks


def test_custom_regions_are_rasterised(tmp_path):
    ctx = _task_from_array(tmp_path, _sky_image(), GAIN=1.0, SATURATE=60000.0)
    regions = [{"shape": "box", "x": 50, "y": 40, "width": 20, "height": 10}]
    (tmp_path / "custom_mask.json").write_text(json.dumps(regions))
    result = run_step("inspect", ctx, {"mask_cosmics": False})
    assert result.files == ["mask.fits", "custom_mask.fits"]
    custom = fits.getdata(tmp_path / "custom_mask.fits")
    assert custom.dtype == np.uint8 and custom.sum() == 200
    mask = _mask(tmp_path)
    assert (mask[35:45, 40:60] & MaskBit.CUSTOM).all()
    assert result.summary["mask_counts"]["custom"] == 200
    # the drawn mask is an output: clearing the step removes it, the regions stay
    (tmp_path / "custom_mask.json").unlink()
    result = run_step("inspect", ctx, {"mask_cosmics": False})
    assert not (tmp_path / "custom_mask.fits").exists()
    assert result.summary["mask_counts"]["custom"] == 0


def test_uploaded_custom_mask_is_used_but_not_owned(tmp_path):
    ctx = _task_from_array(tmp_path, _sky_image(), GAIN=1.0, SATURATE=60000.0)
    upload = np.zeros((200, 240), np.uint8)
    upload[:10] = 1
    fits.PrimaryHDU(upload).writeto(tmp_path / "custom_mask.fits")
    result = run_step("inspect", ctx, {"mask_cosmics": False})
    assert result.files == ["mask.fits"]
    assert result.summary["mask_counts"]["custom"] == 2400
    run_step("inspect", ctx, {"mask_cosmics": False})
    assert (tmp_path / "custom_mask.fits").exists()


def test_bad_custom_masks(tmp_path):
    ctx = _task_from_array(tmp_path, _sky_image(), GAIN=1.0)
    (tmp_path / "custom_mask.json").write_text(json.dumps([{"shape": "star"}]))
    with pytest.raises(StepError, match="custom mask: region 0: unknown shape"):
        run_step("inspect", ctx)
    (tmp_path / "custom_mask.json").unlink()
    fits.PrimaryHDU(np.zeros((10, 10), np.uint8)).writeto(tmp_path / "custom_mask.fits")
    with pytest.raises(StepError, match=r"custom mask: .*10×10"):
        run_step("inspect", ctx)


def test_mostly_masked_image_is_refused(tmp_path):
    ctx = _task_from_array(tmp_path, _sky_image(), GAIN=1.0)
    keep = {
        "regions": [{"shape": "box", "x": 5, "y": 5, "width": 10, "height": 10}],
        "invert": True,
    }
    (tmp_path / "custom_mask.json").write_text(json.dumps(keep))
    with pytest.raises(StepError, match=r"99\.8% of the image is masked \(mostly as custom\)"):
        run_step("inspect", ctx, {"mask_cosmics": False})
    assert not (tmp_path / "mask.fits").exists()


# ------------------------------------------------------------------ bad input


def test_all_nan_image(tmp_path):
    ctx = _task_from_array(tmp_path, np.full((64, 64), np.nan))
    with pytest.raises(StepError, match="no finite pixel values"):
        run_step("inspect", ctx)


def test_constant_image(tmp_path):
    ctx = _task_from_array(tmp_path, np.full((64, 64), 100.0))
    with pytest.raises(StepError, match="same value"):
        run_step("inspect", ctx)


def test_tiny_image(tmp_path):
    ctx = _task_from_array(tmp_path, np.ones((10, 10)))
    with pytest.raises(StepError, match="only 10×10 pixels"):
        run_step("inspect", ctx)


def test_missing_or_broken_image(tmp_path):
    with pytest.raises(StepError, match=r"image\.fits is missing"):
        run_step("inspect", StepContext(task_dir=tmp_path))
    (tmp_path / "image.fits").write_text("SIMPLE? no")
    with pytest.raises(StepError, match="not a FITS file"):
        run_step("inspect", StepContext(task_dir=tmp_path))


# ------------------------------------------------------------------ config


def test_overrides_and_switches(tmp_path):
    image = _sky_image()
    image[100, 100] = 5000.0
    ctx = _task_from_array(tmp_path, image, FILTER="Halpha", EXPTIME=10.0)
    config = {
        "gain": 2.5,
        "saturation": 4000.0,
        "filter": "V",
        "time": "2023-03-15T03:12:45",
        "mask_saturated": True,
        "mask_cosmics": False,
    }
    summary = run_step("inspect", ctx, config).summary
    assert (summary["gain"], summary["saturation"], summary["filter"]) == (2.5, 4000.0, "V")
    assert summary["filter_raw"] == "Halpha"
    assert summary["time"] == "2023-03-15T03:12:45.000"
    assert summary["mask_counts"]["saturated"] == 9  # one pixel grown by one
    summary = run_step("inspect", ctx, {**config, "mask_saturated": False}).summary
    assert summary["mask_counts"]["saturated"] == 0


def test_config_model():
    schema = InspectConfig.model_json_schema()
    for name, field in InspectConfig.model_fields.items():
        assert field.description, name
    assert "V" in json.dumps(schema["properties"]["filter"])
    with pytest.raises(ValueError):
        InspectConfig(filter="Halpha")
    with pytest.raises(ValueError):
        InspectConfig(gain=-1)
    with pytest.raises(ValueError):
        InspectConfig(unknown_field=1)
