"""Photometric calibration time on 1 000 and 20 000 matched stars.

Objects and a PS1-layout catalogue are drawn directly (no image): stars over a
4096² frame with a TAN WCS, the simulator's colours and catalogue errors, instrumental
magnitudes from a known ZP(x, y) and colour term with noise. Timed: the whole
``calibrate_photometry`` (match, star selection, correlation test, robust fit), the
same with colour-term diagnostics forced (five refits), the detection limit, and
the calibration plots.

Run: ``uv run python bench/bench_calibration.py [--repeat 3]``. Prints a table.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS

from pipeline.calibration import CalibrationConfig, calibrate_photometry
from pipeline.calibration_plots import plot_calibration_maps, plot_calibration_residuals
from pipeline.limits import detection_limits
from pipeline.simulate.catalog import build_ps1_table, draw_g_r, star_magnitudes

SIZE = 4096
ZP_TRUE, COLOR_TERM = 27.5, 0.1
FORCED_DIAGNOSTICS = CalibrationConfig(calib_diagnose_color=True)


def make_wcs() -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 20.0]
    wcs.wcs.crpix = [SIZE / 2 + 0.5, SIZE / 2 + 0.5]
    wcs.wcs.cdelt = [-0.6 / 3600, 0.6 / 3600]
    return wcs


def make_field(n_stars: int, seed: int = 0) -> tuple[Table, Table, WCS]:
    """Objects (all matched) and a catalogue with 20 % extra, unmatched, faint stars."""
    rng = np.random.default_rng(seed)
    wcs = make_wcs()
    n_cat = int(n_stars * 1.2)
    x, y = rng.uniform(0, SIZE - 1, n_cat), rng.uniform(0, SIZE - 1, n_cat)
    ra, dec = wcs.all_pix2world(x, y, 0)
    r = np.concatenate([rng.uniform(13, 20, n_stars), rng.uniform(21, 23, n_cat - n_stars)])
    g_r = draw_g_r(n_cat, rng)
    catalog = build_ps1_table(ra, dec, star_magnitudes(r, g_r, rng), rng)
    u, v = (x[:n_stars] - SIZE / 2) / (SIZE / 2), (y[:n_stars] - SIZE / 2) / (SIZE / 2)
    zp = ZP_TRUE + 0.03 * u - 0.02 * v - 0.04 * u * u - 0.03 * v * v
    flux = 10 ** (-0.4 * (r[:n_stars] - zp - COLOR_TERM * g_r[:n_stars]))
    fluxerr = np.sqrt(flux / 2.0 + 400.0)
    measured = flux + rng.normal(0, 1, n_stars) * fluxerr
    good = measured > 0
    objects = Table(
        {
            "x": x[:n_stars][good] + rng.normal(0, 0.1, good.sum()),
            "y": y[:n_stars][good] + rng.normal(0, 0.1, good.sum()),
            "flux": measured[good],
            "fluxerr": fluxerr[good],
            "mag": -2.5 * np.log10(measured[good]),
            "magerr": 1.0857 * fluxerr[good] / measured[good],
            "bg_fluxerr": np.full(good.sum(), 20.0),
            "flags": np.zeros(good.sum(), np.int32),
        }
    )
    return objects, catalog, wcs


def timed(function, repeat: int) -> tuple[float, object]:
    times, value = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        value = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for n_stars in (1_000, 20_000):
        objects, catalog, wcs = make_field(n_stars)
        common = dict(shape=(SIZE, SIZE), fwhm=3.0, wcs=wcs)
        t_cal, result = timed(
            lambda o=objects, c=catalog, k=common: calibrate_photometry(o, c, "r", **k),
            args.repeat,
        )
        t_diag, _ = timed(
            lambda o=objects, c=catalog, k=common: calibrate_photometry(
                o, c, "r", config=FORCED_DIAGNOSTICS, **k
            ),
            args.repeat,
        )
        t_lim, _ = timed(lambda o=objects, r=result: detection_limits(o, r), args.repeat)
        with tempfile.TemporaryDirectory() as folder:
            t_plot, _ = timed(
                lambda r=result, f=folder: (
                    plot_calibration_residuals(r, Path(f) / "residuals.png"),
                    plot_calibration_maps(r, Path(f) / "maps.png"),
                ),
                1,
            )
        rows.append(
            (
                n_stars,
                result.stats["n_matched"],
                result.stats["n_used"],
                t_cal,
                t_diag,
                t_lim,
                t_plot,
                result.color_term - COLOR_TERM,
                result.stats["zp_center"] - ZP_TRUE,
            )
        )
    header = (
        "| stars | matched | used | calibrate (s) | + diagnostics (s) | limit (s) | plots (s) "
        "| C − truth | ZP − truth |"
    )
    print(header)
    print("|" + "---|" * 9)
    for row in rows:
        n, matched, used, t_cal, t_diag, t_lim, t_plot, dc, dzp = row
        print(
            f"| {n} | {matched} | {used} | {t_cal:.3f} | {t_diag:.3f} | {t_lim:.3f} | "
            f"{t_plot:.2f} | {dc:+.4f} | {dzp:+.4f} |"
        )


if __name__ == "__main__":
    main()
