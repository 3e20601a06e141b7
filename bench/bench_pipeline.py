"""SkySift's inspect + photometry steps on a simulated frame: per-stage seconds, peak memory
and quality against the truth, for the comparison with the STDPipe baseline.

Run: ``uv run python bench/bench_pipeline.py /tmp/skysift-bench/4096 --repeat 2 [--workers]``
on a frame folder written by ``bench_frames.py``. Each repetition runs in a fresh process:
the task folder gets ``image_perturbed.fits`` as ``image.fits`` (pixels with the WCS moved
by 20″ and turned by 0.2°, so astrometry does real work) and ``catalog.fits``; then
``run_step("inspect")`` with defaults and ``run_step("photometry")`` with
``{"catalog": "ps1", "catalog_file": "catalog.fits"}`` (plots on, as users get them).

Timing: the whole of each step (``run_step`` wall clock) and its stages. The photometry
summary's ``seconds`` gives read/detection/fwhm/measurement/prefilter/calibration/write/
plots; the "calibration" lap (the whole reference stage) is split by wrapping the
functions the step calls (catalogue, astrometry, calibration fit, limits, plots). The
inspect step is split the same way (read, header + pixel checks, cosmic rays). CPU seconds
(all threads, ``time.process_time``) of the wrapped stages are recorded beside the wall
clock, since other jobs share the machine. Modules are
imported before the clock starts, as in a running worker. ``--workers`` also times the
inspect step with ``cosmics_workers`` 1 (OpenMP free, and OpenMP limited to one thread)
and 2. Quality figures come from :mod:`bench_truth`, shared with the baseline script.
The parent prints medians and writes them as JSON (``--json``, default
``<frame>/skysift.json``); the objects table of the last run is left in
``<frame>/skysift_objects.fits``.
"""

from __future__ import annotations

import argparse
import functools
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_truth as bt  # noqa: E402

from pipeline import masking  # noqa: E402
from pipeline.calibration import CalibrationResult  # noqa: E402
from pipeline.steps import StepContext, get_step, run_step  # noqa: E402
from pipeline.steps import inspect as inspect_step  # noqa: E402
from pipeline.steps import photometry as photometry_step  # noqa: E402
from pipeline.steps import photometry_reference as reference_step  # noqa: E402

PHOTOMETRY_CONFIG = {"catalog": "ps1", "catalog_file": "catalog.fits"}
# stages that do the work the baseline's chain does (no file reading/writing, no plots)
DETECTION_STAGES = ("detection", "fwhm", "measurement", "prefilter")
PHOTOMETRY_STAGES = (
    *DETECTION_STAGES,
    "catalogue",
    "astrometry",
    "calibration_fit",
    "limit",
    "reference_other",
)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Stages:
    """Wraps module-level functions so that each call adds to a named stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.rss: dict[str, float] = {}
        self.captured: dict[str, object] = {}

    def wrap(self, module, name: str, stage: str, capture: bool = False) -> None:
        original = getattr(module, name)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            start, cpu = time.perf_counter(), bt.cpu_seconds()
            result = original(*args, **kwargs)
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start
            self.cpu[stage] = self.cpu.get(stage, 0.0) + bt.cpu_seconds() - cpu
            self.rss[stage] = round(rss_mb(), 1)
            if capture:
                self.captured[stage] = result
            return result

        setattr(module, name, timed)

    def reset(self) -> None:
        self.seconds.clear()
        self.cpu.clear()
        self.rss.clear()
        self.captured.clear()


def instrument() -> Stages:
    stages = Stages()
    stages.wrap(inspect_step, "load_image", "inspect_read")
    stages.wrap(inspect_step, "inspect_image", "inspect_header_pixels")
    stages.wrap(masking, "cosmic_ray_mask", "inspect_cosmics")
    stages.wrap(photometry_step, "detect_objects", "detection", capture=True)
    stages.wrap(photometry_step, "windowed_positions", "fwhm")
    stages.wrap(photometry_step, "measure_fwhm", "fwhm")
    stages.wrap(photometry_step, "measure_positions", "measurement")
    stages.wrap(photometry_step, "train_prefilter", "prefilter")
    stages.wrap(photometry_step, "flag_outliers", "prefilter")
    stages.wrap(reference_step, "reference_catalog", "catalogue")
    stages.wrap(reference_step, "solve_astrometry", "astrometry")
    stages.wrap(reference_step, "calibrate_photometry", "calibration_fit")
    stages.wrap(reference_step, "detection_limits", "limit")
    stages.wrap(reference_step, "add_local_limits", "limit")
    stages.wrap(reference_step, "_draw", "plots_reference")
    return stages


def warm_imports() -> None:
    """Load every module the steps use, as a long-running worker has them loaded."""
    for name in ("inspect", "photometry"):
        get_step(name).load()
    import matplotlib.pyplot  # noqa: F401
    import sklearn.ensemble  # noqa: F401


def new_task(frame: Path) -> Path:
    task = Path(tempfile.mkdtemp(prefix="skysift-bench-"))
    shutil.copyfile(frame / "image_perturbed.fits", task / "image.fits")
    shutil.copyfile(frame / "catalog.fits", task / "catalog.fits")
    return task


def timed_step(name: str, ctx: StepContext, config: dict) -> tuple[float, float, dict]:
    """Wall and CPU seconds of one ``run_step``, and the step summary."""
    start, cpu = time.perf_counter(), bt.cpu_seconds()
    result = run_step(name, ctx, config)
    return time.perf_counter() - start, bt.cpu_seconds() - cpu, result.summary


def inspect_workers(frame: Path, stages: Stages) -> dict:
    """Inspect step time with 1 and 2 cosmic-ray threads."""
    from threadpoolctl import threadpool_limits

    out = {}
    variants = (
        ("workers_1", 1, None),
        ("workers_1_openmp_1", 1, 1),
        ("workers_2", 2, None),
    )
    for label, workers, openmp in variants:
        task = new_task(frame)
        try:
            stages.reset()
            if openmp:
                with threadpool_limits(limits=openmp, user_api="openmp"):
                    seconds, _, _ = timed_step(
                        "inspect", StepContext(task_dir=task), {"cosmics_workers": workers}
                    )
            else:
                seconds, _, _ = timed_step(
                    "inspect", StepContext(task_dir=task), {"cosmics_workers": workers}
                )
            out[label] = {
                "inspect": round(seconds, 3),
                "cosmics": round(stages.seconds.get("inspect_cosmics", 0.0), 3),
                "cosmics_cpu": round(stages.cpu.get("inspect_cosmics", 0.0), 3),
            }
        finally:
            shutil.rmtree(task, ignore_errors=True)
    return out


def quality(task: Path, truth: bt.Truth, summary: dict, detections) -> dict:
    table = Table.read(task / "objects.fits")
    table.write(Path(truth.folder) / "skysift_objects.fits", overwrite=True)  # a closer look
    x, y = np.asarray(table["x"], float), np.asarray(table["y"], float)
    radius = float(summary["aperture_radius"])
    wcs = WCS(fits.getheader(task / "image.wcs"))
    calibration = CalibrationResult.load(task / "calibration.json")
    return {
        "n_detected": len(detections),
        "n_measured": len(table),
        **bt.completeness(truth, x, y),
        "completeness_detection": bt.completeness(
            truth, np.asarray(detections["x"]), np.asarray(detections["y"])
        )["completeness"],
        **bt.flux_ratio(truth, x, y, np.asarray(table["flux"], float), radius),
        **bt.fwhm_error(truth, float(summary["fwhm"])),
        **bt.wcs_rms(wcs, truth),
        **bt.zero_point_error(truth, calibration.zero_point, radius),
        "color_term": round(float(summary["color_term"]), 5),
        "color_term_error": round(float(summary["color_term"]) - truth.meta["color_term"], 5),
        **bt.calibrated_mag_error(truth, x, y, np.asarray(table["mag_calib"], float)),
        "limit_sn5": summary.get("limit_sn5"),
        "limit_sn5_truth": round(float(truth.meta["limit_sn5"]), 4),
    }


def run_once(frame: Path, workers: bool) -> dict:
    warnings.simplefilter("ignore")
    warm_imports()
    stages = instrument()
    truth = bt.load_truth(frame)
    task = new_task(frame)
    load_before = bt.load_average()
    try:
        ctx = StepContext(task_dir=task)
        inspect_seconds, inspect_cpu, _ = timed_step("inspect", ctx, {})
        rss_inspect = rss_mb()
        inspect_stages = {k: v for k, v in stages.seconds.items() if k.startswith("inspect_")}
        cpu = {k: v for k, v in stages.cpu.items()}
        stages.reset()
        photometry_seconds, photometry_cpu, summary = timed_step(
            "photometry", ctx, PHOTOMETRY_CONFIG
        )
        rss_photometry = rss_mb()
        cpu.update(stages.cpu)
        cpu["inspect"], cpu["photometry"] = inspect_cpu, photometry_cpu
        cpu = {k: round(v, 3) for k, v in cpu.items()}
        laps = summary["seconds"]
        seconds = {
            "inspect": round(inspect_seconds, 3),
            "inspect_read": inspect_stages.get("inspect_read", 0.0),
            "inspect_header_pixels": inspect_stages.get("inspect_header_pixels", 0.0),
            "inspect_cosmics": inspect_stages.get("inspect_cosmics", 0.0),
            "photometry": round(photometry_seconds, 3),
            "read": laps["read"],
            "detection": laps["detection"],
            "fwhm": laps["fwhm"],
            "measurement": laps["measurement"],
            "prefilter": laps["prefilter"],
            "catalogue": stages.seconds.get("catalogue", 0.0),
            "astrometry": stages.seconds.get("astrometry", 0.0),
            "calibration_fit": stages.seconds.get("calibration_fit", 0.0),
            "limit": stages.seconds.get("limit", 0.0),
            "plots_reference": stages.seconds.get("plots_reference", 0.0),
            "write": laps["write"],
            "plots": laps["plots"],
        }
        named = ("catalogue", "astrometry", "calibration_fit", "limit", "plots_reference")
        seconds["reference_other"] = laps["calibration"] - sum(seconds[k] for k in named)
        seconds = {k: round(float(v), 3) for k, v in seconds.items()}
        totals = {
            "detection_chain": round(
                seconds["inspect"] + sum(seconds[s] for s in DETECTION_STAGES), 3
            ),
            "photometry_step": round(sum(seconds[s] for s in PHOTOMETRY_STAGES), 3),
            "photometry_step_no_plots": round(
                seconds["photometry"] - seconds["plots"] - seconds["plots_reference"], 3
            ),
            "photometry_step_all": seconds["photometry"],
            "detection_chain_cpu": round(
                cpu["inspect"] + sum(cpu.get(s, 0.0) for s in DETECTION_STAGES), 3
            ),
            "photometry_step_cpu": round(
                sum(cpu.get(s, 0.0) for s in PHOTOMETRY_STAGES if s != "reference_other"), 3
            ),
            "photometry_step_all_cpu": cpu["photometry"],
        }
        record = {
            "tool": "skysift",
            "frame": str(frame),
            "shape": list(truth.shape),
            "seconds": seconds,
            "totals": totals,
            "cpu_seconds": cpu,
            "peak_rss_mb": {
                "after_inspect": round(rss_inspect, 1),
                "after_photometry": round(rss_photometry, 1),
            },
            "quality": quality(task, truth, summary, stages.captured["detection"].objects),
            "astrometry": summary.get("astrometry"),
            "load_before": load_before,
        }
    finally:
        shutil.rmtree(task, ignore_errors=True)
    if workers:
        record["cosmics_workers"] = inspect_workers(frame, stages)
    record["load_after"] = bt.load_average()
    return record


def print_summary(record: dict, runs: int) -> None:
    ny, nx = record["shape"]
    print(f"SkySift inspect + photometry, {nx}×{ny}, median of {runs} run(s)")
    for stage, seconds in record["seconds"].items():
        print(f"  {stage:<24} {seconds:8.2f} s")
    for name, seconds in record["totals"].items():
        print(f"  total {name:<20} {seconds:8.2f} s")
    print("  CPU seconds (all threads):", record["cpu_seconds"])
    for name, value in record["peak_rss_mb"].items():
        print(f"  peak RSS {name:<17} {value:8.0f} MB")
    for key, value in record["quality"].items():
        print(f"  {key:<28} {value}")
    for key, value in record.get("cosmics_workers", {}).items():
        print(f"  cosmics {key:<20} {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("frame", type=Path, help="frame folder written by bench_frames.py")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workers", action="store_true", help="also time cosmics_workers 1/2")
    parser.add_argument("--json", type=Path, help="where to write the medians (JSON)")
    parser.add_argument("--once", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.once:
        print(json.dumps(run_once(args.frame, args.workers)))
        return
    runs = []
    for _ in range(args.repeat):
        command = [sys.executable, __file__, str(args.frame), "--once"]
        if args.workers:
            command.append("--workers")
        child = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
        if child.returncode != 0:
            raise SystemExit(f"SkySift run failed:\n{child.stderr[-3000:]}")
        runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
    record = bt.median_record(runs)
    record["runs"] = runs
    print_summary(record, len(runs))
    out = args.json or args.frame / "skysift.json"
    out.write_text(json.dumps(record, indent=1))
    print(f"written {out}")


if __name__ == "__main__":
    main()
