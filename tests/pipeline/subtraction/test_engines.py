"""The subtraction engines (ZOGY, SFFT, HOTPANTS) on a simulated pair and the real DECam pair.

HOTPANTS is not installable here: its tests run ``fake_hotpants.py`` (HOTPANTS's command line
and output files, with an honestly fitted kernel) as ``hotpants`` on PATH; one test runs the
real program when it is installed.

SFFT compiles its numba functions once per geometry and process (about 20 s on two busy
cores): every SFFT call here uses the same geometry (384² padded sub-images, kernel
half-width 7, orders 0), so the module pays for one compilation.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from pipeline.measurement import measure_positions
from pipeline.simulate import simulate_sky
from pipeline.steps import StepContext, run_step
from pipeline.subtraction import hotpants as hp
from pipeline.subtraction.candidates import detect_candidates
from pipeline.subtraction.chunks import subtract_in_chunks
from pipeline.subtraction.engines import EngineFailed, EngineUnavailable, get_engine
from pipeline.subtraction.prepare import prepare_inputs, prepare_simulated_pair
from pipeline.subtraction.sfft_engine import SfftConfig, sfft_subtract
from tests.paths import REAL_DATA

FAKE = Path(__file__).with_name("fake_hotpants.py")
DECAM = REAL_DATA / "sfft_decam"
SIZE, SEED = 512, 3
CHUNK = 300  # 2 × 2 overlapping sub-images, subtracted in parallel threads
SFFT_OPTIONS = {"kernel_half_width": 7}  # as derived for this pair: one compiled geometry
MATCH_RADIUS = 1.5  # px between a detection and an injected transient


@pytest.fixture(scope="module")
def small_sky():
    return simulate_sky(size=SIZE, seed=SEED)


@pytest.fixture(scope="module")
def pair(small_sky):
    """The prepared inputs, as the step makes them (masks: saturation and cosmic rays)."""
    return prepare_simulated_pair(small_sky)[0]


@pytest.fixture
def fake_hotpants(tmp_path, monkeypatch):
    """``hotpants`` on PATH running fake_hotpants.py with this interpreter."""
    folder = tmp_path / "bin"
    folder.mkdir()
    program = folder / "hotpants"
    program.write_text(
        f"#!{sys.executable}\nimport runpy, sys\nsys.argv[0] = 'hotpants'\n"
        f"runpy.run_path({str(FAKE)!r}, run_name='__main__')\n"
    )
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")
    return str(program)


def _aperture_flux(image, positions, fwhm, bad, noise):
    table = measure_positions(
        image, np.asarray(positions), fwhm=fwhm, mask=bad, noise=noise, rel_aper=1.0
    )
    return np.asarray(table["flux"], float), np.asarray(table["fluxerr"], float)


def _aperture_corrections(sky, inputs, positions) -> np.ndarray:
    """Aperture flux / true flux of the 10 bright isolated stars nearest each position."""
    stars = sky.truth.stars
    good = stars["in_image"] & ~stars["saturated"] & (stars["flux_in_image"] > 3e4)
    x, y = np.asarray(stars["x"], float), np.asarray(stars["y"], float)
    d2 = (x[:, None] - x[None, :]) ** 2 + (y[:, None] - y[None, :]) ** 2
    np.fill_diagonal(d2, np.inf)
    good &= d2.min(axis=1) > (5 * sky.truth.fwhm_median) ** 2
    edge = 20
    good &= (x > edge) & (x < SIZE - edge) & (y > edge) & (y < SIZE - edge)
    xs, ys = x[good], y[good]
    flux, _ = _aperture_flux(
        inputs.image, np.column_stack([xs, ys]), inputs.image_fwhm, inputs.image_bad, None
    )
    ratio = flux / np.asarray(stars["flux_in_image"][good], float)
    out = []
    for px, py in positions:
        nearest = np.argsort(np.hypot(xs - px, ys - py))[:10]
        out.append(np.median(ratio[nearest]))
    return np.array(out)


def _check_engine(products, inputs, sky, label):
    """Isolated transients detected with the right flux; unit-variance noise in quiet sky."""
    truth = sky.truth.transients
    iso = truth[~truth["on_galaxy"]]
    assert len(iso) >= 3
    table = detect_candidates(products.significance, products.bad, 5.0, 3, 10)
    positions = np.column_stack([iso["x"], iso["y"]])
    flux, err = _aperture_flux(
        products.difference, positions, inputs.image_fwhm, products.bad, products.noise
    )
    true_flux = np.asarray(iso["flux_in_image"], float) * _aperture_corrections(
        sky, inputs, positions
    )
    for (x, y), f, e, t in zip(positions, flux, err, true_flux, strict=True):
        d = np.hypot(table["x"] - x, table["y"] - y)
        assert len(d) and d.min() < MATCH_RADIUS, f"{label}: transient at ({x:.0f}, {y:.0f}) missed"
        dmag = -2.5 * np.log10(f / t)
        sigma = 1.0857 * e / f
        # within 3σ of the truth (σ from the noise map; 0.05 mag when 3σ is less); measured
        # for all three engines: |Δmag| ≤ 0.062 with σ = 0.053-0.086
        assert abs(dmag) < max(3 * sigma, 0.05), (label, x, y, dmag, sigma)
    # sky far from any source: difference / noise is unit-variance noise (±10 %; measured
    # 0.983-0.989)
    quiet = (np.abs(products.convolved) < inputs.template_noise) & ~products.bad
    ratio = (products.difference / np.where(products.noise > 0, products.noise, 1.0))[quiet]
    spread = np.std(ratio[np.abs(ratio) < 10])
    assert 0.9 < spread < 1.1, (label, spread)


def test_zogy_engine(pair, small_sky):
    products = subtract_in_chunks(pair, get_engine("zogy"), CHUNK, 50)
    _check_engine(products, pair, small_sky, "zogy")


def test_sfft_engine(pair, small_sky):
    products = subtract_in_chunks(pair, get_engine("sfft", **SFFT_OPTIONS), CHUNK, 50)
    _check_engine(products, pair, small_sky, "sfft")
    chunk = products.info["chunks"][0]
    # the kernel sum is the science/template flux ratio (to 3 %)
    assert chunk["sfft_kernel_sum"] == pytest.approx(1 / pair.flux_ratio, rel=0.03)
    assert chunk["sfft_stars"] >= 5


def test_hotpants_engine_with_the_fake_program(pair, small_sky, fake_hotpants):
    products = subtract_in_chunks(pair, get_engine("hotpants"), CHUNK, 50)
    _check_engine(products, pair, small_sky, "hotpants")
    chunk = products.info["chunks"][0]
    assert chunk["hotpants_ksum00"] == pytest.approx(1 / pair.flux_ratio, rel=0.03)
    command = chunk["hotpants_command"].split()
    # the template is convolved and the result normalised to the image
    assert command[command.index("-c") + 1] == "t"
    assert command[command.index("-n") + 1] == "i"
    assert float(command[command.index("-iu") + 1]) == small_sky.truth.saturation
    assert float(command[command.index("-il") + 1]) == pytest.approx(
        -10 * pair.image_noise, rel=1e-4
    )
    assert int(command[command.index("-r") + 1]) == int(np.ceil(2.5 * pair.image_fwhm))


def test_hotpants_photometric_system_is_undone(pair, fake_hotpants):
    """-n t makes HOTPANTS divide by the kernel sum; the adapter multiplies it back."""
    sub = pair.crop(slice(0, 300), slice(0, 300))
    as_image = hp.hotpants_subtract(sub, hp.HotpantsConfig(normalize="i"))
    as_template = hp.hotpants_subtract(sub, hp.HotpantsConfig(normalize="t"))
    good = ~as_image.bad
    scale = np.std(as_image.difference[good])
    # KSUM00 is written with 4 decimals (ΔΣK/ΣK ≤ 1.4e-4 here, ΣK ≈ 0.37), the files in
    # float32; measured: 3e-6 of the scatter at most
    a, b = as_image.difference[good], as_template.difference[good]
    assert np.allclose(b, a, rtol=3e-4, atol=1e-3 * scale)
    assert np.allclose(as_template.noise[good], as_image.noise[good], rtol=3e-4)


def test_hotpants_failure_reports_its_messages(pair, fake_hotpants):
    sub = pair.crop(slice(0, 300), slice(0, 300))
    with pytest.raises(EngineFailed, match="good stamps"):
        hp.hotpants_subtract(sub, hp.HotpantsConfig(fit_threshold=1e6, use_stars=False))


def test_hotpants_user_options_override_and_are_checked(pair, fake_hotpants):
    sub = pair.crop(slice(0, 300), slice(0, 300))
    engine = get_engine("hotpants", kernel_half_width=9, extra="-r 8 -ks 3 -okn")
    products = engine(sub)
    command = products.info["hotpants_command"].split()
    assert command[-5:] == ["-r", "8", "-ks", "3", "-okn"]  # last: HOTPANTS keeps it
    assert "-r 9" in products.info["hotpants_command"]  # the typed value comes first
    assert products.info["hotpants_r"] == 8  # and the extra option overrides it
    for bad in ("-oni /tmp/x.fits", "-r eight", "-c z", "-ng 2 6 1.0", "whatever"):
        with pytest.raises(ValueError):
            hp.parse_extra_arguments(bad)
    with pytest.raises(EngineUnavailable, match="invalid hotpants options"):
        get_engine("hotpants", extra="-outim /etc/passwd")
    assert hp.parse_extra_arguments("-ng 2 4 1.0 2 2.5 -okn") == [
        "-ng", "2", "4", "1.0", "2", "2.5", "-okn",
    ]  # fmt: skip


def test_engine_availability(tmp_path, monkeypatch):
    with pytest.raises(EngineUnavailable, match="unknown subtraction engine"):
        get_engine("psfmatch")
    with pytest.raises(EngineUnavailable, match="takes no options"):
        get_engine("zogy", kernel_poly_order=2)
    with pytest.raises(EngineUnavailable, match="invalid sfft options"):
        get_engine("sfft", kernel_poly_order=7)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EngineUnavailable, match="not installed here"):
        get_engine("hotpants")


@pytest.mark.skipif(
    shutil.which("hotpants") is None, reason="the hotpants program is not installed"
)
def test_real_hotpants(pair, small_sky):
    products = subtract_in_chunks(pair, get_engine("hotpants"), CHUNK, 50)
    _check_engine(products, pair, small_sky, "real hotpants")


@pytest.mark.skipif(not DECAM.exists(), reason=f"real data {DECAM} is missing")
def test_sfft_on_the_decam_pair_matches_sfft_published_difference():
    """SFFT's own difference of this pair (FinalDifference.fits) against ours.

    That difference is R − K ⊗ N: the sharper science image convolved to the template
    (FWHM 3.9 → 5.2 px). We run the same direction, ``convolve="science"``, whose
    difference is −(R − K ⊗ N)/ΣK in science units; their kernels were solved from other
    stars and masks, so they differ on the bright stars' residuals and agree on the rest.
    """
    sci = fits.getdata(DECAM / "Stack-DEC-OBS18_sci.fits").astype(float)
    ref = fits.getdata(DECAM / "Stack-DEC-OBS04_ref.fits").astype(float)  # same pixel grid
    published = fits.getdata(DECAM / "FinalDifference.fits").astype(float)
    none = np.zeros(sci.shape, bool)
    inputs, _ = prepare_inputs(
        sci, none, ref, none.copy(), image_fwhm=3.85, image_gain=4.15, template_gain=3.98,
        image_saturation=35000.0, template_saturation=42000.0, template_fwhm=5.23,
    )  # fmt: skip
    products = sfft_subtract(inputs, SfftConfig(convolve="science", **SFFT_OPTIONS))
    ours = -products.difference * products.info["sfft_kernel_sum"]
    good = ~products.bad
    a = ours[good] - np.median(ours[good])
    b = published[good] - np.median(published[good])

    def mad(v):
        return 1.4826 * np.median(np.abs(v - np.median(v)))

    # the sky noise is the same noise, convolved alike: residual ≤ 30 % of its scatter
    # (measured 17 %)
    assert mad(b - a) < 0.3 * mad(b), (mad(b - a), mad(b))
    # and the images correlate, bright-star residuals included (measured 0.71)
    assert np.corrcoef(a, b)[0, 1] > 0.6
    # the noise map describes our difference (robust scatter of D / noise, measured 1.02)
    assert 0.85 < mad(products.difference[good] / products.noise[good]) < 1.15


@pytest.mark.parametrize(
    "engine, options",
    [
        ("sfft", {"sfft_kernel_half_width": 7, "chunk_size": CHUNK}),  # the compiled geometry
        ("hotpants", {"hotpants_extra": "-ks 3", "chunk_size": 2048}),  # one run of the program
    ],
)
def test_the_step_runs_the_chosen_engine(engine, options, task, sky, tmp_path, fake_hotpants):
    """The step's ``<engine>_*`` settings reach the engine; the transients come out."""
    folder = tmp_path / "task"
    shutil.copytree(task.task_dir, folder)
    ctx = StepContext(task_dir=folder, log=logging.getLogger("test.engines"))
    settings = {"template": "custom", "template_gain": 4.0, "engine": engine}
    result = run_step("subtraction", ctx, {**settings, **options})
    assert result.summary["engine"] == engine
    candidates = Table.read(folder / "candidates.fits")
    truth = sky.truth.transients
    isolated = truth[~truth["on_galaxy"]]
    for row in isolated:
        d = np.hypot(candidates["x"] - row["x"], candidates["y"] - row["y"])
        assert len(d) and d.min() < MATCH_RADIUS, (engine, row["x"], row["y"])
        index = int(np.argmin(d))
        error = max(3 * candidates["mag_calib_err"][index], 0.1)
        assert abs(candidates["mag_calib"][index] - row["mag"]) < error
