"""A simulated field processed by the real inspection and photometry steps, and local
services (XMatch, SkyBoT, VizieR for VSX, hips2fits) answering from its truth.

Task folders live side by side as the portal keeps them (``<root>/<id>/``): task 1 is
the simulated exposure; task 2 a second exposure of the same field (new noise) in which
one isolated transient has faded away, for the multi-image mode.

The catalogues the services answer with are built from the simulation, never from the
objects we detect: Pan-STARRS DR1 = the simulator's catalogue plus its galaxies (the
real PS1 lists galaxies too), Gaia eDR3 = the stars brighter than G = 21, with G, BP, RP
chosen so that the published relations the pipeline uses (Riello et al. 2021 and Tonry
et al. 2012, :mod:`pipeline.catalogs.relations`) give back the stars' PS1 r and g − r.
The injected transients are in no catalogue.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table, vstack

from pipeline.calibration import calibrate_photometry
from pipeline.catalogs.definitions import mag_column
from pipeline.catalogs.transform import derive_bands
from pipeline.simulate import simulate_sky
from pipeline.simulate.catalog import build_ps1_table, star_magnitudes
from pipeline.simulate.detector import add_noise
from pipeline.simulate.psf import render_point_sources
from pipeline.steps import StepContext, run_step
from pipeline.steps.photometry import PhotometryConfig
from tests.fixture_servers.hips2fits import Hips2fitsFixture
from tests.fixture_servers.skybot import SkybotFixture
from tests.fixture_servers.vizier import VizierFixture
from tests.fixture_servers.xmatch import XMatchFixture

SEED = 5  # a 1024² sky whose four isolated transients are all detected unflagged
GAIA_DEPTH = 21.0
FADED = 0  # index (among the isolated transients) of the one missing from task 2
MAIN_TASK, OTHER_TASK = 1, 2
ATLAS_R = "CDS/P/PanSTARRS/DR1/r"  # the atlas of an r image north of Dec -30


def _photometry_config() -> dict:
    """Calibrate against the simulator's catalogue file, keeping the header WCS."""
    fields = PhotometryConfig.model_fields
    config = {}
    if "catalog_file" in fields:
        config.update(catalog_file="catalog.fits", catalog="ps1")
    if "astrometry_method" in fields:
        config["astrometry_method"] = "none"
    return config


def _calibrate_here(task: Path, sky) -> None:
    """Fallback while the photometry step does not calibrate: the library call."""
    path = task / "objects.fits"
    with fits.open(path) as hdul:
        header = hdul[1].header.copy()
    objects = Table.read(path, hdu=1)
    result = calibrate_photometry(
        objects,
        sky.catalog,
        "r",
        shape=sky.image.shape,
        fwhm=float(header["FWHM"]),
        wcs=sky.truth.wcs,
        catalog_title="Pan-STARRS DR1",
    )
    result.apply(objects, color=result.object_colors)
    hdu = fits.table_to_hdu(objects)
    for key in ("FWHM", "APERTUR", "ANNULIN", "ANNULOUT", "ENGINE"):
        if key in header:
            hdu.header[key] = header[key]
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)


def process_task(folder: Path, image: np.ndarray, sky) -> StepContext:
    """Write the image and run the real inspection and photometry steps in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(np.asarray(image, np.float32), sky.header).writeto(folder / "image.fits")
    sky.catalog.write(folder / "catalog.fits")
    ctx = StepContext(task_dir=folder, log=logging.getLogger("test.transients"))
    run_step("inspect", ctx)
    run_step("photometry", ctx, _photometry_config())
    if "mag_calib" not in Table.read(folder / "objects.fits", hdu=1).colnames:
        _calibrate_here(folder, sky)
    return ctx


def isolated_transients(sky) -> Table:
    transients = sky.truth.transients
    return transients[~np.asarray(transients["on_galaxy"], bool)]


def second_exposure(sky, faded: int) -> np.ndarray:
    """The same field with new noise and one isolated transient gone."""
    truth = sky.truth
    gone = isolated_transients(sky)[faded]
    model = np.array(sky.model, dtype=float)
    vanish = np.zeros_like(model)
    render_point_sources(
        vanish,
        np.array([gone["x"]]),
        np.array([gone["y"]]),
        np.array([gone["flux"]]),
        truth.psf_field,
        1e-3,
    )
    image = add_noise(model - vanish, truth.gain, truth.read_noise, np.random.default_rng(99))
    return np.minimum(image, truth.saturation)


def ps1_catalog(sky) -> Table:
    """The simulator's PS1 catalogue plus its galaxies (PS1 lists galaxies as well)."""
    galaxies = sky.truth.galaxies
    rng = np.random.default_rng(7)
    mags = star_magnitudes(np.asarray(galaxies["mag"], float), np.asarray(galaxies["g_r"]), rng)
    extra = build_ps1_table(
        np.asarray(galaxies["ra"], float), np.asarray(galaxies["dec"], float), mags, rng
    )
    return vstack([sky.catalog, extra], metadata_conflicts="silent")


def _gaia_colour_grid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BP−RP grid and the PS1 g−r and r−G that the pipeline's relations give for it."""
    colour = np.linspace(-0.5, 4.0, 901)
    grid = Table({"Gmag": np.zeros_like(colour), "BPmag": 0.5 * colour, "RPmag": -0.5 * colour})
    grid["e_Gmag"] = grid["e_BPmag"] = grid["e_RPmag"] = np.full(colour.size, 0.001)
    normal = Table({mag_column(b): grid[f"{b}mag"] for b in ("G", "BP", "RP")})
    derive_bands(normal, ["g", "r"])
    g, r = np.asarray(normal["gmag"], float), np.asarray(normal["rmag"], float)
    good = np.isfinite(g) & np.isfinite(r)
    return colour[good], (g - r)[good], r[good]


def gaia_catalog(sky) -> Table:
    """Gaia eDR3 (VizieR I/350/gaiaedr3 layout) for the simulated stars with G < 21."""
    stars = sky.truth.stars
    colour, g_r, r_minus_g = _gaia_colour_grid()
    order = np.argsort(g_r)
    star_gr = np.asarray(stars["g_r"], float)
    inside = (star_gr >= g_r.min()) & (star_gr <= g_r.max())
    bp_rp = np.interp(star_gr, g_r[order], colour[order])
    offset = np.interp(star_gr, g_r[order], r_minus_g[order])
    g_mag = np.asarray(stars["mag"], float) - np.where(inside, offset, 0.0)
    keep = g_mag < GAIA_DEPTH
    table = Table()
    table["RA_ICRS"] = np.asarray(stars["ra"], float)[keep]
    table["DE_ICRS"] = np.asarray(stars["dec"], float)[keep]
    table["Source"] = np.arange(keep.sum(), dtype=np.int64) + 3_000_000_000
    table["Gmag"] = g_mag[keep]
    table["e_Gmag"] = np.full(keep.sum(), 0.003)
    # only BP − RP enters the transformations; the split between BP and RP is nominal
    colour_kept = np.where(inside, bp_rp, np.nan)[keep]
    table["BPmag"] = np.ma.masked_invalid(g_mag[keep] + 0.4 * colour_kept)
    table["RPmag"] = np.ma.masked_invalid(table["BPmag"] - colour_kept)
    table["e_BPmag"] = table["e_RPmag"] = np.full(keep.sum(), 0.01)
    return table


def vsx_row(name: str, kind: str, ra: float, dec: float, bright: float, faint: float) -> dict:
    return {
        "Name": name,
        "Type": kind,
        "max": bright,
        "n_max": "V",
        "min": faint,
        "n_min": "V",
        "Period": np.nan,
        "RAJ2000": ra,
        "DEJ2000": dec,
    }


@pytest.fixture(scope="package")
def sky():
    return simulate_sky(size=1024, seed=SEED)


@pytest.fixture(scope="package")
def tasks(sky, tmp_path_factory) -> Path:
    """Root holding task 1 (the exposure) and task 2 (second exposure, one transient gone)."""
    root = tmp_path_factory.mktemp("tasks")
    process_task(root / str(MAIN_TASK), sky.image, sky)
    process_task(root / str(OTHER_TASK), second_exposure(sky, FADED), sky)
    return root


@pytest.fixture(scope="package")
def services(sky):
    """Running XMatch, SkyBoT, VizieR (VSX) and hips2fits fixtures for the simulated sky."""
    xmatch = XMatchFixture({"II/349/ps1": ps1_catalog(sky), "I/350/gaiaedr3": gaia_catalog(sky)})
    skybot = SkybotFixture()
    vizier = VizierFixture()
    template = sky.template
    hips = Hips2fitsFixture({ATLAS_R: (template.image, template.wcs)})
    for server in (xmatch, skybot, vizier, hips):
        server.start()
    yield {"xmatch": xmatch, "skybot": skybot, "vizier": vizier, "hips": hips}
    for server in (xmatch, skybot, vizier, hips):
        server.stop()


@pytest.fixture
def service_config(services) -> dict:
    """Step settings pointing every client at the local services (reset to 'ok')."""
    for server in services.values():
        server.reset()
    services["skybot"].bodies.clear()
    services["skybot"].requested_epochs.clear()
    services["xmatch"].forms.clear()
    services["xmatch"].uploads.clear()
    # no variable star in the field unless a test adds one
    services["vizier"].catalogs["B/vsx/vsx"] = Table(rows=[vsx_row("-", "-", 0, 0, 0, 0)])[:0]
    return {
        "xmatch_url": services["xmatch"].sync_url,
        "xmatch_timeout": 10.0,
        "skybot_url": services["skybot"].conesearch_url,
        "skybot_timeout": 10.0,
        "vizier_url": services["vizier"].url,
        "vizier_timeout": 10.0,
        "hips2fits_url": services["hips"].url,
        "hips2fits_timeout": 10.0,
    }


def main_context(tasks: Path) -> StepContext:
    return StepContext(task_dir=tasks / str(MAIN_TASK), log=logging.getLogger("test.transients"))
