"""Per-stage time and peak memory of the photometry chain on simulated skies.

Run: ``uv run python bench/bench_photometry.py [--sizes 2048 4096] [--psf moffat]``.
Prints a table: detection (sep and, if installed, SExtractor), FWHM, aperture
photometry, prefilter, plots; peak memory is the process's peak resident set
size after each stage (``ru_maxrss``, so it only grows: a stage that raises it
is the one that set the peak). tracemalloc is not used: its per-allocation
hooks distort the timings several-fold.
"""

from __future__ import annotations

import argparse
import resource
import time
import typing

import numpy as np

from pipeline.detection import DetectionConfig, detect_objects, windowed_positions
from pipeline.fwhm import FwhmConfig, measure_fwhm
from pipeline.masking import MaskBit
from pipeline.measurement import measure_positions
from pipeline.prefilter import flag_outliers, train_prefilter
from pipeline.sextractor import find_sextractor
from pipeline.simulate import simulate_sky


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Stage:
    """Context manager timing one stage and noting the peak RSS after it."""

    rows: typing.ClassVar[list[tuple]] = []

    def __init__(self, size: int, name: str):
        self.size, self.name = size, name

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        seconds = time.perf_counter() - self.start
        Stage.rows.append((self.size, self.name, seconds, rss_mb()))


def run(size: int, psf: str, plots: bool) -> None:
    sky = simulate_sky(size=size, psf=psf, seed=1)
    truth = sky.truth
    mask = np.zeros(sky.image.shape, np.uint8)
    mask[sky.image >= truth.saturation] |= np.uint8(MaskBit.SATURATED)
    mask[truth.cosmic_mask] |= np.uint8(MaskBit.COSMIC)
    config = DetectionConfig()
    kwargs = dict(saturation=truth.saturation, gain=truth.gain)
    with Stage(size, "detection (sep)"):
        detection = detect_objects(sky.image, mask, config, "sep", **kwargs)
    if find_sextractor():
        with Stage(size, "detection (SExtractor)"):
            detect_objects(sky.image, mask, config, "sextractor", **kwargs)
    objects = detection.objects
    with Stage(size, "FWHM (centroids, fits, map)"):
        bad = mask != 0
        data = np.where(bad, np.float32(0), sky.image - detection.background.level)
        clean = np.asarray(objects["flags"]) == 0
        guess = 2 * float(np.nanmedian(objects["flux_radius"][clean]))
        x, y = windowed_positions(data, objects["x"].data, objects["y"].data, guess, bad)
        objects["x"], objects["y"] = x, y
        sn = np.asarray(objects["flux_auto"] / objects["fluxerr_auto"])
        fwhm = measure_fwhm(
            data,
            x,
            y,
            sn,
            np.asarray(objects["flags"]),
            guess,
            FwhmConfig(),
            bad=bad,
            noise=detection.background.global_rms,
        )
        objects["fwhm"] = fwhm.per_object
    with Stage(size, "aperture photometry"):
        table = measure_positions(
            sky.image,
            objects,
            fwhm=fwhm.fwhm,
            mask=mask,
            background=detection.background.level,
            noise=detection.background.rms,
            gain=truth.gain,
            sn_min=5,
            segmentation=detection.segmentation,
            wcs=truth.wcs,
        )
    with Stage(size, "prefilter"):
        model = train_prefilter(table, fwhm.fwhm_map)
        flag_outliers(table, model)
    if plots:
        import tempfile
        from pathlib import Path

        from pipeline import plots as plotting

        with tempfile.TemporaryDirectory() as tmp, Stage(size, "plots (4 PNG)"):
            plotting.plot_fwhm_map(fwhm, objects["x"], objects["y"], Path(tmp) / "a.png")
            plotting.plot_fwhm_mag(table, fwhm, Path(tmp) / "b.png")
            plotting.plot_prefilter(table, model, Path(tmp) / "c.png")
            plotting.plot_objects(sky.image, table, fwhm.fwhm, Path(tmp) / "d.png")
    print(f"# {size}²: {len(objects)} detected, {len(table)} measured, FWHM {fwhm.fwhm:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096])
    parser.add_argument("--psf", default="moffat", choices=["moffat", "gaussian"])
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args()
    for size in args.sizes:
        run(size, args.psf, not args.no_plots)
    print(f"{'size':>6}  {'stage':<28} {'seconds':>8} {'peak RSS MB':>12}")
    for size, name, seconds, rss in Stage.rows:
        print(f"{size:>6}  {name:<28} {seconds:8.2f} {rss:12.0f}")


if __name__ == "__main__":
    main()
