"""Astrometry figures on simulated skies: refinement of a perturbed WCS (20″, 0.2°, no SIP)
on 2048² and 4096² frames (built-in method, the fit alone against astropy's
``fit_wcs_from_points``, and SCAMP when installed), and blind solving with
``solve-field`` from indexes built from the simulated catalogue, with and without hints.

Run: ``uv run python bench/bench_astrometry.py [--sizes 2048 4096] [--repeat 3]``.
Prints a table; accuracy is the RMS over a 41×41 grid of pixel positions predicted by the
solution and by the true WCS.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.wcs.utils import fit_wcs_from_points

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.astrometry import (  # noqa: E402
    AstrometryConfig,
    RefineSettings,
    fit_tan_sip,
    refine_wcs,
    refine_with_scamp,
    scamp_available,
    solve_astrometry,
    solve_field_available,
    wcs_grid_difference,
)
from pipeline.astrometry.indexes import build_catalog_indexes, catalog_extent_arcmin, index_scales  # noqa: E402
from pipeline.astrometry.sources import reference_stars  # noqa: E402
from pipeline.detection import DetectionConfig, detect_objects, windowed_positions  # noqa: E402
from pipeline.simulate import simulate_sky  # noqa: E402
from pipeline.simulate.wcs import perturb_wcs  # noqa: E402


def make_field(size: int, seed: int):
    sky = simulate_sky(size=size, seed=seed, template=False)
    result = detect_objects(
        sky.image, None, DetectionConfig(), saturation=sky.truth.saturation, gain=sky.truth.gain
    )
    objects = result.objects
    x, y = windowed_positions(
        sky.image - result.background.level,
        objects["x"].data,
        objects["y"].data,
        sky.truth.fwhm_median,
    )
    objects["x"], objects["y"], objects["flux"] = x, y, objects["flux_auto"]
    approximate = perturb_wcs(sky.truth.wcs, 20.0, 0.2, 30.0)
    approximate.sip = None
    approximate.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    approximate.wcs.set()
    return sky, objects, approximate


def timed(function, repeat: int):
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def row(rows, what, size, seconds, accuracy="", note=""):
    rows.append((what, f"{size}²", f"{seconds:8.3f}", accuracy, note))


def bench_refinement(size: int, repeat: int, rows: list) -> None:
    sky, objects, approximate = make_field(size, seed=1)
    shape = sky.image.shape
    truth = sky.truth.wcs
    seconds, solution = timed(
        lambda: refine_wcs(objects, sky.catalog, approximate, shape, RefineSettings()), repeat
    )
    rms, _ = wcs_grid_difference(solution.wcs, truth, shape)
    row(
        rows,
        "refine: built-in (match + TAN-SIP 3)",
        size,
        seconds,
        f"{rms:.4f} px",
        f"{solution.n_matches} matches, {solution.rms_arcsec:.3f}″",
    )
    matches = solution.matches
    x, y = np.asarray(matches["x"]), np.asarray(matches["y"])
    ra, dec = np.asarray(matches["ra"]), np.asarray(matches["dec"])
    seconds, ours = timed(lambda: fit_tan_sip(x, y, ra, dec, sip_order=3, shape=shape), repeat)
    row(
        rows,
        "  fit only: ours (linear)",
        size,
        seconds,
        f"{wcs_grid_difference(ours, truth, shape)[0]:.4f} px",
        f"{len(x)} stars",
    )
    coords = SkyCoord(ra, dec, unit="deg")
    seconds, theirs = timed(
        lambda: fit_wcs_from_points((x, y), coords, projection="TAN", sip_degree=3), 1
    )
    row(
        rows,
        "  fit only: astropy fit_wcs_from_points",
        size,
        seconds,
        f"{wcs_grid_difference(theirs, truth, shape)[0]:.4f} px",
        "sip_degree=3",
    )
    if scamp_available():
        with tempfile.TemporaryDirectory() as tmp:
            seconds, scamp = timed(
                lambda: refine_with_scamp(
                    objects, sky.catalog, approximate, shape, work_dir=Path(tmp)
                ),
                1,
            )
        row(
            rows,
            "refine: SCAMP (TPV 3)",
            size,
            seconds,
            f"{wcs_grid_difference(scamp.wcs, truth, shape)[0]:.4f} px",
            f"{scamp.n_matches} matches",
        )


def bench_blind(size: int, rows: list) -> None:
    if not solve_field_available():
        rows.append(("blind: solve-field not installed", f"{size}²", "-", "", ""))
        return
    sky, objects, _ = make_field(size, seed=2)
    shape = sky.image.shape
    with tempfile.TemporaryDirectory() as cache:
        refs = reference_stars(sky.catalog)
        extent = catalog_extent_arcmin(refs)
        presets = index_scales(extent / 4, extent)
        start = time.perf_counter()
        build_catalog_indexes(refs, presets, cache)
        row(
            rows,
            "blind: build indexes from catalogue",
            size,
            time.perf_counter() - start,
            "",
            f"{len(refs)} stars, presets {presets[0]}..{presets[-1]}",
        )
        config = AstrometryConfig(index_cache_dir=cache, use_system_indexes=False)
        for label, header in (
            ("with RA/Dec hints", sky.variant("no_wcs")),
            ("without hints", _without_hints(sky.variant("no_wcs"))),
        ):
            start = time.perf_counter()
            solution = solve_astrometry(objects, sky.catalog, header, shape, config)
            total = time.perf_counter() - start
            rms, _ = wcs_grid_difference(solution.wcs, sky.truth.wcs, shape)
            row(
                rows,
                f"blind: solve-field {label} + refine",
                size,
                total,
                f"{rms:.4f} px",
                f"solve-field {solution.details['blind_seconds']:.2f} s",
            )


def _without_hints(header):
    for key in ("RA", "DEC"):
        header.remove(key, ignore_missing=True)
    return header


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-blind", action="store_true")
    args = parser.parse_args()
    rows: list[tuple[str, ...]] = []
    for size in args.sizes:
        bench_refinement(size, args.repeat, rows)
    if not args.no_blind:
        for size in args.sizes:
            bench_blind(size, rows)
    header = ("what", "frame", "seconds", "vs truth", "note")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for line in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)))


if __name__ == "__main__":
    main()
