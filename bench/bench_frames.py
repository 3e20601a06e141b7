"""Simulated frames for the pipeline-versus-baseline benchmarks, written once and read by
both ``bench_pipeline.py`` (our venv) and ``bench_stdpipe_baseline.py`` (the STDPipe venv).

Each ``<out>/<size>/`` folder holds what ``write_simulation`` writes (image.fits with the
true WCS, catalog.fits in the PS1 VizieR layout, truth.json, truth.fits), plus

* ``perturbed_wcs.fits``: the image header with its WCS moved by 20″ and turned by 0.2°
  (``sky.variant("perturbed_wcs", shift_arcsec=20, rot_deg=0.2)``), where both pipelines
  start their astrometry;
* ``image_perturbed.fits``: the same pixels under that header (our task image);
* ``bench_truth.fits``: the truth as :mod:`bench_truth` reads it — true stars with their
  expected S/N, isolation and saturation; the fraction of a star's flux inside apertures
  of radius 2–5 px on a grid over the frame (rendered with the simulator's own PSF at nine
  sub-pixel phases and measured with exact-overlap apertures); the true ZP on that grid;
  the true WCS.

Run: ``uv run python bench/bench_frames.py [--sizes 2048 4096] [--out /tmp/skysift-bench]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from photutils.aperture import CircularAperture, aperture_photometry
from scipy.interpolate import RegularGridInterpolator
from scipy.ndimage import binary_dilation
from scipy.spatial import cKDTree

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_truth import PERTURBED_FILE, TRUTH_FILE  # noqa: E402

from pipeline.simulate import simulate_sky, write_simulation  # noqa: E402
from pipeline.simulate.detector import pixel_variance  # noqa: E402
from pipeline.simulate.psf import render_point_sources  # noqa: E402

SEED = 1
SHIFT_ARCSEC, ROTATION_DEG = 20.0, 0.2
GRID_STEP = 128
RADII = (2.0, 5.0, 0.05)  # first, last, step (px)
NODE_FLUX = 1.0e5
ISOLATION = ((10.0, 0.01), (25.0, 0.1))  # (radius px, neighbour flux ratio above which it spoils)
EDGE_PX = 30
DEFECT_GROW_PX = 8


def fraction_cube(sky, radii: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PSF fraction inside each radius at grid nodes, averaged over nine sub-pixel phases."""
    ny, nx = sky.image.shape
    gx1 = np.arange(GRID_STEP // 2, nx, GRID_STEP, dtype=float)  # pixel centres
    gy1 = np.arange(GRID_STEP // 2, ny, GRID_STEP, dtype=float)
    gx, gy = np.meshgrid(gx1, gy1)
    total = np.zeros((len(radii), gx.size))
    phases = (-1 / 3, 0.0, 1 / 3)
    for dx in phases:
        for dy in phases:
            x, y = gx.ravel() + dx, gy.ravel() + dy
            canvas = np.zeros(sky.image.shape)
            flux = np.full(x.size, NODE_FLUX)
            render_point_sources(canvas, x, y, flux, sky.truth.psf_field, 1e-2)
            apertures = [CircularAperture(np.column_stack([x, y]), r=r) for r in radii]
            table = aperture_photometry(canvas, apertures, method="exact")
            for i in range(len(radii)):
                total[i] += np.asarray(table[f"aperture_sum_{i}"], float) / NODE_FLUX
    cube = (total / len(phases) ** 2).reshape(len(radii), *gx.shape)
    return gx1, gy1, cube


def catalog_color(catalog: Table) -> np.ndarray:
    """g − r of each catalogue row (row-aligned with the true stars), NaN where missing."""
    g = np.ma.filled(np.ma.asarray(catalog["gmag"], float), np.nan)
    r = np.ma.filled(np.ma.asarray(catalog["rmag"], float), np.nan)
    return g - r


def star_truth(sky, radii, gx, gy, cube) -> Table:
    """True stars with expected S/N in a 1·FWHM aperture and an isolation flag."""
    truth = sky.truth
    stars = truth.stars
    ny, nx = sky.image.shape
    x, y = np.asarray(stars["x"]), np.asarray(stars["y"])
    flux = np.asarray(stars["flux"])
    radius = truth.fwhm_median
    interpolate = RegularGridInterpolator(
        (radii, gy, gx), cube, bounds_error=False, fill_value=None
    )
    points = np.column_stack(
        [np.full(x.size, radius), np.clip(y, gy[0], gy[-1]), np.clip(x, gx[0], gx[-1])]
    )
    inside = flux * interpolate(points)
    sky_level = truth.sky(x, y)
    variance = pixel_variance(sky_level, truth.gain, truth.read_noise)
    snr = inside / np.sqrt(inside / truth.gain + np.pi * radius**2 * variance)

    isolated = (x >= EDGE_PX) & (y >= EDGE_PX) & (x <= nx - 1 - EDGE_PX) & (y <= ny - 1 - EDGE_PX)
    tree = cKDTree(np.column_stack([x, y]))
    for distance, ratio in ISOLATION:
        for i, neighbours in enumerate(tree.query_ball_point(np.column_stack([x, y]), distance)):
            if isolated[i] and any(j != i and flux[j] > ratio * flux[i] for j in neighbours):
                isolated[i] = False
    others = [truth.galaxies, truth.transients]
    for table in others:
        if len(table):
            near = cKDTree(np.column_stack([table["x"], table["y"]]))
            hits = near.query_ball_point(np.column_stack([x, y]), 25.0)
            isolated &= np.array([len(h) == 0 for h in hits])
    defects = binary_dilation(truth.cosmic_mask | truth.bad_column_mask, iterations=DEFECT_GROW_PX)
    ix = np.clip(np.rint(x).astype(int), 0, nx - 1)
    iy = np.clip(np.rint(y).astype(int), 0, ny - 1)
    isolated &= ~defects[iy, ix]
    return Table(
        {
            "x": x,
            "y": y,
            "mag": np.asarray(stars["mag"]),
            "g_r": np.asarray(stars["g_r"]),
            "g_r_cat": catalog_color(sky.catalog),
            "flux": flux,
            "fwhm": np.asarray(stars["fwhm"]),
            "snr": snr,
            "saturated": np.asarray(stars["saturated"]),
            "in_image": np.asarray(stars["in_image"]),
            "isolated": isolated & np.asarray(stars["in_image"]),
        }
    )


def write_truth(sky, folder: Path) -> dict:
    truth = sky.truth
    radii = np.arange(RADII[0], RADII[1] + RADII[2] / 2, RADII[2])
    gx, gy, cube = fraction_cube(sky, radii)
    stars = star_truth(sky, radii, gx, gy, cube)
    ny, nx = sky.image.shape
    primary = fits.PrimaryHDU()
    scalars = {
        "T_NX": nx,
        "T_NY": ny,
        "T_FWHM_MEDIAN": truth.fwhm_median,
        "T_ZP_MEDIAN": truth.zp_median,
        "T_COLOR_TERM": truth.color_term,
        "T_LIMIT_SN5": truth.limit_sn5,
        "T_GAIN": truth.gain,
        "T_READ_NOISE": truth.read_noise,
        "T_SATURATION": truth.saturation,
        "T_PIXEL_SCALE": truth.pixel_scale,
        "T_SEED": SEED,
    }
    for key, value in scalars.items():
        primary.header[f"HIERARCH {key}"] = value
    grid = fits.ImageHDU(cube.astype(np.float64), name="FRACTION")
    grid.header["R0"], grid.header["DR"] = float(radii[0]), float(RADII[2])
    grid.header["X0"], grid.header["Y0"] = float(gx[0]), float(gy[0])
    grid.header["STEP"] = GRID_STEP
    gxx, gyy = np.meshgrid(gx, gy)
    zero_point = fits.ImageHDU(truth.zero_point_map(gxx, gyy).astype(np.float64), name="ZPGRID")
    stars_hdu = fits.table_to_hdu(stars)
    stars_hdu.name = "STARS"
    wcs_hdu = fits.ImageHDU(name="TRUEWCS")
    wcs_hdu.header.update(sky.header)
    fits.HDUList([primary, stars_hdu, grid, zero_point, wcs_hdu]).writeto(
        folder / TRUTH_FILE, overwrite=True
    )
    return {
        "stars_in_image": int(stars["in_image"].sum()),
        "stars_sn10": int((stars["in_image"] & (stars["snr"] > 10)).sum()),
        "isolated_sn20": int((stars["isolated"] & ~stars["saturated"] & (stars["snr"] > 20)).sum()),
    }


def make_frame(size: int, out: Path) -> None:
    folder = out / str(size)
    started = time.perf_counter()
    sky = simulate_sky(size=size, seed=SEED)
    write_simulation(sky, folder)
    perturbed = sky.variant("perturbed_wcs", shift_arcsec=SHIFT_ARCSEC, rot_deg=ROTATION_DEG)
    fits.PrimaryHDU(header=perturbed).writeto(folder / PERTURBED_FILE, overwrite=True)
    fits.PrimaryHDU(sky.image, perturbed).writeto(folder / "image_perturbed.fits", overwrite=True)
    counts = write_truth(sky, folder)
    print(
        f"{folder}: {size}², {len(sky.catalog)} catalogue stars, {counts}, FWHM "
        f"{sky.truth.fwhm_median:.3f}, limit {sky.truth.limit_sn5:.2f} "
        f"({time.perf_counter() - started:.0f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096])
    parser.add_argument("--out", type=Path, default=Path("/tmp/skysift-bench"))
    args = parser.parse_args()
    for size in args.sizes:
        make_frame(size, args.out)


if __name__ == "__main__":
    main()
