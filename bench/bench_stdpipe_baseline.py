"""STDPipe 0.4.1 baseline: the reference system's masking → detection → FWHM → measurement
→ astrometric refinement → calibration chain, timed stage by stage on a simulated frame.

Runs in the baseline's own venv (STDPipe is only timed, never part of SkySift)::

    .bench-stdpipe/bin/python bench/bench_stdpipe_baseline.py /tmp/skysift-bench/4096 --repeat 2

The frame folder comes from ``bench_frames.py``. The chain follows what STDWeb runs with
its defaults (bg_size 256, minarea 5, SExtractor at 2σ without a filter and 3-px apertures,
IsolationForest prefilter, FWHM = median 2·FLUX_RADIUS of clean S/N > 20 objects,
``measure_objects`` with a 1·FWHM aperture and a 5–7·FWHM annulus and S/N ≥ 5, SCAMP
refinement of order 3 with a FWHM-wide matching radius from the 20″/0.2° perturbed WCS,
``calibrate_photometry`` with spatial order 2, a g−r colour term, robust fit, noise
scaling, flags 0x02 accepted, intrinsic RMS ≤ 0.01, and the S/N = 5 limit). Masking is
``pipeline.make_mask`` (saturation + astroscrappy cosmics). ``get_objects_sep`` with the
same settings is timed as the alternative detector. Left out because they are STDWeb's
own code, not STDPipe's: the catalogue blend filter and the 10 000-shuffle correlation
test (SkySift's step does both kinds of work, so leaving them out favours the baseline).

Each repetition runs in a fresh process; the parent prints the median of every figure and
writes them as JSON (``--json``, default ``<frame>/stdpipe.json``); the measured objects of
the last run are left in ``<frame>/stdpipe_objects.fits``. Quality figures are
computed by :mod:`bench_truth`, the same code the SkySift benchmark uses.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_truth as bt

BG_SIZE = 256
MINAREA = 5
THRESH = 2.0
INITIAL_APER = 3.0
REL_APER, REL_BG = 1.0, (5.0, 7.0)
SN = 5.0
REFINE_ORDER = 3
SPATIAL_ORDER = 2
# the issue 4 / issue 6 comparisons add these stages up
DETECTION_STAGES = ("masking", "detection", "prefilter", "fwhm", "measurement")
PHOTOMETRY_STAGES = (
    "detection",
    "prefilter",
    "fwhm",
    "measurement",
    "catalogue",
    "astrometry",
    "calibration",
    "limit",
)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Clock:
    """Wall seconds, CPU seconds (all threads, plus the SExtractor and SCAMP child
    processes) and peak RSS after each stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.rss: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        start, cpu = time.perf_counter(), bt.cpu_seconds()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 3)
        self.cpu[name] = round(bt.cpu_seconds() - cpu, 3)
        self.rss[name] = round(rss_mb(), 1)


def warm_imports() -> None:
    """Import what STDPipe imports lazily, as a long-running worker would have it loaded."""
    import photutils.background  # noqa: F401
    import sklearn.ensemble  # noqa: F401
    import statsmodels.api  # noqa: F401
    from stdpipe import artefacts, astrometry, photometry, photometry_measure, pipeline  # noqa: F401


def run_once(folder: Path) -> dict:
    from stdpipe import artefacts, astrometry, photometry, pipeline

    warm_imports()
    truth = bt.load_truth(folder)
    load_before = bt.load_average()
    clock = Clock()
    with clock.stage("read"):
        image = fits.getdata(folder / "image.fits").astype(np.double)
        header, start_wcs = bt.read_perturbed_wcs(folder)
        gain, saturation = float(header["GAIN"]), float(header["SATURATE"])

    with clock.stage("masking"):
        mask = pipeline.make_mask(
            image, header=header, saturation=saturation, mask_cosmics=True, gain=gain, verbose=False
        )

    with clock.stage("detection_sep"):
        objects_sep = photometry.get_objects_sep(
            np.ascontiguousarray(image),
            mask=mask,
            thresh=THRESH,
            aper=INITIAL_APER,
            r0=0.0,
            gain=gain,
            minarea=MINAREA,
            bg_size=BG_SIZE,
            sn=3.0,
            verbose=False,
        )

    with clock.stage("detection"):
        obj, *_ = photometry.get_objects_sextractor(
            image,
            mask=mask,
            aper=INITIAL_APER,
            gain=gain,
            extra={"BACK_SIZE": BG_SIZE, "SATUR_LEVEL": saturation},
            extra_params=["NUMBER", "MAG_AUTO", "ISOAREA_IMAGE", "FLUX_MAX", "FLUX_AUTO"],
            checkimages=["SEGMENTATION", "FILTERED", "BACKGROUND", "BACKGROUND_RMS"],
            minarea=MINAREA,
            r0=0.0,
            verbose=False,
        )
        obj = obj[obj["MAG_AUTO"] < 90]
        obj = obj[obj["fwhm"] > 0]
        obj = obj[obj["ISOAREA_IMAGE"] > MINAREA]
    detected = obj.copy()

    with clock.stage("prefilter"):
        good = artefacts.filter_sextractor_detections(obj, verbose=False)
        obj["flags"][~good] |= 0x800

    with clock.stage("fwhm"):
        clean = (obj["flags"] == 0) & (obj["magerr"] < 1 / 20) & good
        fwhm = float(np.median(2.0 * obj["FLUX_RADIUS"][clean]))

    with clock.stage("measurement"):
        obj = photometry.measure_objects(
            obj,
            image,
            mask=mask,
            fwhm=fwhm,
            aper=REL_APER,
            bkgann=list(REL_BG),
            sn=SN,
            bg_size=BG_SIZE,
            gain=gain,
            verbose=False,
        )

    with clock.stage("catalogue"):
        cat = Table.read(folder / "catalog.fits")

    with clock.stage("astrometry"):
        obj["ra"], obj["dec"] = start_wcs.all_pix2world(obj["x"], obj["y"], 0)
        pixscale = astrometry.get_pixscale(wcs=start_wcs)
        usable = obj[(obj["flags"] & 0x800) == 0]
        wcs = pipeline.refine_astrometry(
            usable,
            cat,
            fwhm * pixscale,
            wcs=start_wcs,
            order=REFINE_ORDER,
            method="scamp",
            cat_col_mag="rmag",
            cat_col_mag_err="e_rmag",
            verbose=False,
        )
        if wcs is None:
            raise SystemExit("SCAMP refinement failed")
        obj["ra"], obj["dec"] = wcs.all_pix2world(obj["x"], obj["y"], 0)

    with clock.stage("calibration"):
        match = pipeline.calibrate_photometry(
            obj,
            cat,
            pixscale=astrometry.get_pixscale(wcs=wcs),
            cat_col_mag="rmag",
            cat_col_mag_err="e_rmag",
            cat_col_mag1="gmag",
            cat_col_mag2="rmag",
            use_color=True,
            order=SPATIAL_ORDER,
            robust=True,
            scale_noise=True,
            accept_flags=0x02,
            max_intrinsic_rms=0.01,
            verbose=False,
        )
        if match is None:
            raise SystemExit("photometric calibration failed")

    with clock.stage("limit"):
        limit = pipeline.get_detection_limit(obj, sn=SN, verbose=False)

    load_after = bt.load_average()
    obj.write(folder / "stdpipe_objects.fits", overwrite=True)  # for a closer look afterwards
    color_term = float(match["color_term"])
    quality = {
        "n_detected": len(detected),
        "n_detected_sep": len(objects_sep),
        "n_measured": len(obj),
        **bt.completeness(truth, obj["x"], obj["y"]),
        "completeness_detection": bt.completeness(truth, detected["x"], detected["y"])[
            "completeness"
        ],
        "completeness_detection_sep": bt.completeness(truth, objects_sep["x"], objects_sep["y"])[
            "completeness"
        ],
        **bt.flux_ratio(truth, obj["x"], obj["y"], obj["flux"], REL_APER * fwhm),
        **bt.fwhm_error(truth, fwhm),
        **bt.wcs_rms(wcs, truth),
        **bt.zero_point_error(truth, lambda x, y: match["zero_fn"](x, y), REL_APER * fwhm),
        "color_term": round(color_term, 5),
        "color_term_error": round(color_term - float(truth.meta["color_term"]), 5),
        **bt.calibrated_mag_error(
            truth,
            obj["x"],
            obj["y"],
            np.asarray(obj["mag"]) + match["zero_fn"](obj["x"], obj["y"]),
            color_term=color_term,
        ),
        "limit_sn5": round(float(limit), 4) if limit is not None else None,
        "limit_sn5_truth": round(float(truth.meta["limit_sn5"]), 4),
    }
    seconds = clock.seconds
    cpu = clock.cpu
    totals = {
        "detection_chain": round(sum(seconds[s] for s in DETECTION_STAGES), 3),
        "photometry_step": round(sum(seconds[s] for s in PHOTOMETRY_STAGES), 3),
        "all": round(sum(seconds.values()), 3),
        "detection_chain_cpu": round(sum(cpu[s] for s in DETECTION_STAGES), 3),
        "photometry_step_cpu": round(sum(cpu[s] for s in PHOTOMETRY_STAGES), 3),
    }
    return {
        "tool": "stdpipe 0.4.1",
        "frame": str(folder),
        "shape": list(truth.shape),
        "seconds": seconds,
        "totals": totals,
        "cpu_seconds": clock.cpu,
        "peak_rss_mb": clock.rss,
        "quality": quality,
        "load_before": load_before,
        "load_after": load_after,
    }


def print_summary(record: dict, runs: int) -> None:
    ny, nx = record["shape"]
    print(f"STDPipe 0.4.1 baseline, {nx}×{ny}, median of {runs} run(s)")
    print(f"{'stage':<16} {'seconds':>8} {'CPU s':>8} {'peak RSS MB':>12}")
    for stage, seconds in record["seconds"].items():
        cpu, rss = record["cpu_seconds"][stage], record["peak_rss_mb"][stage]
        print(f"{stage:<16} {seconds:8.2f} {cpu:8.2f} {rss:12.0f}")
    for name, seconds in record["totals"].items():
        print(f"{'total ' + name:<28} {seconds:8.2f}")
    for key, value in record["quality"].items():
        print(f"  {key:<28} {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("frame", type=Path, help="frame folder written by bench_frames.py")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", type=Path, help="where to write the medians (JSON)")
    parser.add_argument("--once", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    if args.once:
        print(json.dumps(run_once(args.frame)))
        return
    runs = []
    for _ in range(args.repeat):
        child = subprocess.run(
            [sys.executable, __file__, str(args.frame), "--once"],
            capture_output=True,
            text=True,
            check=False,
        )
        if child.returncode != 0:
            raise SystemExit(f"baseline run failed:\n{child.stderr[-3000:]}")
        runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
    record = bt.median_record(runs)
    record["runs"] = runs
    print_summary(record, len(runs))
    out = args.json or args.frame / "stdpipe.json"
    out.write_text(json.dumps(record, indent=1))
    print(f"written {out}")


if __name__ == "__main__":
    main()
