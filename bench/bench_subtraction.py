"""The image-subtraction step on simulated 2048² and 4096² pairs, timed stage by stage.

Run::

    uv run python bench/bench_subtraction.py --sizes 2048 4096 --repeat 3
    uv run python bench/bench_subtraction.py --sizes 2048 --functions   # engine-level figures

For each size, a frame folder ``<out>/<size>`` (default ``/tmp/skysift-bench-sub``) is built
once and reused: ``simulate_sky(size, seed)`` written as ``image.fits``, ``catalog.fits`` and
``custom_template.fits`` (the simulated template with its own WCS, seeing, depth and
pointing), a task folder ``task/`` after ``run_step("inspect")`` and ``run_step("photometry",
{"catalog": "ps1", "catalog_file": "catalog.fits"})``, and ``transients.fits`` (the truth).
The STDPipe baseline (``bench_stdpipe_subtraction.py``) reads the same files.

Each repetition runs in a fresh process on a fresh copy of that task folder and times only
``run_step("subtraction", {"template": "custom", "template_gain": <simulated>})`` with every
other setting at its default (ZOGY, 1000-px chunks overlapping by 50 px, one worker per
core, dipole test on, up to 200 cut-outs). The stages come from wrapping the functions the
step calls: template (reading the uploaded template and reprojecting it; the
reprojection alone is also shown), preparation (backgrounds, variance maps, FWHM, PSFs,
flux ratio), subtraction (all sub-images), detection + measurement (detection on S_corr,
centroids, shape columns, aperture photometry, mask flags), filtering (prefilter,
calibration), dipole test, cut-outs (FITS + PNG), writing the FITS maps; "other" is the
rest of the step (reading the image, mask and WCS, the candidate table). Wall seconds
(``time.perf_counter``) and process CPU seconds (all threads, ``time.process_time``) are
recorded per stage; the parent prints medians, the 1-minute load average before and after,
and writes JSON (``<out>/<size>/subtraction.json``). Quality: the injected transients found
(within 1.5 px) and the candidates that match none.

``--functions`` also times the engine-level calls alone on the same pair (reprojection
interp / adaptive, ``prepare_inputs``, ``subtract_in_chunks`` with 1 worker and all).
Building a frame and ``--functions`` run in child processes too, so that the parent's memory
stays small (a child inherits its parent's peak RSS figure).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_OUT = Path("/tmp/skysift-bench-sub")
SEED = 11
MATCH_RADIUS = 1.5  # px between a candidate and an injected transient
STAGES = (
    "template",
    "preparation",
    "subtraction",
    "detection_measurement",
    "filtering",
    "dipole",
    "cutouts",
    "writing",
)
STEP_OUTPUTS = ("sub_", "candidates", "subtraction.")


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the frame folder ----------------------------------------------------------------


def build_frame(size: int, out: Path, seed: int = SEED) -> Path:
    """Simulated pair + task folder after inspect and photometry (built once, reused)."""
    frame = out / str(size)
    if (frame / "task" / "photometry.result.json").exists():
        return frame
    from astropy.io import fits

    from pipeline.simulate import simulate_sky
    from pipeline.steps import StepContext, run_step

    frame.mkdir(parents=True, exist_ok=True)
    sky = simulate_sky(size=size, seed=seed)
    fits.PrimaryHDU(sky.image, sky.header).writeto(frame / "image.fits", overwrite=True)
    fits.PrimaryHDU(sky.template.image, sky.template.header).writeto(
        frame / "custom_template.fits", overwrite=True
    )
    sky.catalog.write(frame / "catalog.fits", overwrite=True)
    truth = sky.truth.transients.copy()
    truth.meta.update(
        {
            "GAIN": sky.truth.gain,
            "TGAIN": sky.template.gain,
            "SATUR": sky.truth.saturation,
            "FWHM": sky.truth.fwhm_median,
        }
    )
    truth.write(frame / "transients.fits", overwrite=True)
    task = frame / "task"
    shutil.rmtree(task, ignore_errors=True)
    task.mkdir()
    for name in ("image.fits", "catalog.fits", "custom_template.fits"):
        shutil.copyfile(frame / name, task / name)
    ctx = StepContext(task_dir=task, log=logging.getLogger("bench.subtraction"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_step("inspect", ctx)
        run_step("photometry", ctx, {"catalog": "ps1", "catalog_file": "catalog.fits"})
    return frame


def fresh_task(frame: Path) -> Path:
    """A copy of the frame's task folder without any subtraction outputs."""
    task = Path(tempfile.mkdtemp(prefix="skysift-bench-sub-"))
    for path in (frame / "task").iterdir():
        if path.is_file() and not path.name.startswith(STEP_OUTPUTS):
            shutil.copyfile(path, task / path.name)
    return task


# --- timing the step -----------------------------------------------------------------


class Stages:
    """Wraps module-level functions so that each call adds to a named stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.depth = 0  # nested wrapped calls count only in the outermost stage

    def wrap(self, module, name: str, stage: str) -> None:
        original = getattr(module, name, None)
        if original is None:  # the step may have been reorganised: skip what is gone
            return

        @functools.wraps(original)
        def timed(*args, **kwargs):
            if self.depth:
                return original(*args, **kwargs)
            self.depth += 1
            start, cpu = time.perf_counter(), time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                self.depth -= 1
                self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start
                self.cpu[stage] = self.cpu.get(stage, 0.0) + time.process_time() - cpu

        setattr(module, name, timed)


def instrument() -> tuple[Stages, Stages]:
    """Stage clocks on the step's calls, and a separate clock on the reprojection alone."""
    from pipeline.steps import subtraction as step
    from pipeline.subtraction import candidates as cand
    from pipeline.templates import sources

    inner = Stages()
    inner.wrap(sources, "reproject_template", "reprojection")
    stages = Stages()
    stages.wrap(step, "get_template", "template")
    stages.wrap(step, "prepare_inputs", "preparation")
    stages.wrap(step, "subtract_in_chunks", "subtraction")
    for name in (
        "gaussian_significance",
        "detect_candidates",
        "refine_positions",
        "shape_columns",
        "measure_candidates",
        "flag_edge_and_mask",
    ):
        stages.wrap(cand, name, "detection_measurement")
    stages.wrap(step, "_apply_prefilter", "filtering")
    stages.wrap(step, "_calibrate", "filtering")
    stages.wrap(step, "_select", "filtering")
    stages.wrap(cand, "dipole_tests", "dipole")
    stages.wrap(step, "write_candidate_cutouts", "cutouts")
    stages.wrap(step, "_write", "writing")
    return stages, inner


def quality(task: Path, frame: Path) -> dict:
    from astropy.table import Table

    truth = Table.read(frame / "transients.fits")
    candidates = Table.read(task / "candidates.fits")
    cx, cy = np.asarray(candidates["x"], float), np.asarray(candidates["y"], float)
    matched = set()
    found = 0
    for x, y in zip(truth["x"], truth["y"], strict=True):
        d = np.hypot(cx - x, cy - y)
        if len(d) and d.min() < MATCH_RADIUS:
            found += 1
            matched.add(int(np.argmin(d)))
    return {
        "transients": len(truth),
        "transients_found": found,
        "false_candidates": len(candidates) - len(matched),
    }


def run_once(frame: Path) -> dict:
    """One timed subtraction step in this process (a child of :func:`main`)."""
    from astropy.table import Table

    from pipeline.steps import StepContext, get_step, run_step

    warnings.simplefilter("ignore")
    get_step("subtraction").load()  # imports done before the clock, as in a running worker
    import matplotlib.pyplot  # noqa: F401

    stages, inner = instrument()
    meta = Table.read(frame / "transients.fits").meta
    task = fresh_task(frame)
    load_before = load_average()
    try:
        ctx = StepContext(task_dir=task, log=logging.getLogger("bench.subtraction"))
        start, cpu = time.perf_counter(), time.process_time()
        result = run_step(
            "subtraction", ctx, {"template": "custom", "template_gain": float(meta["TGAIN"])}
        )
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        seconds = {s: stages.seconds.get(s, 0.0) for s in STAGES}
        cpus = {s: stages.cpu.get(s, 0.0) for s in STAGES}
        seconds["other"] = wall - sum(seconds.values())
        cpus["other"] = cpu - sum(cpus.values())
        seconds["reprojection"] = inner.seconds.get("reprojection", 0.0)
        cpus["reprojection"] = inner.cpu.get("reprojection", 0.0)
        seconds["step"], cpus["step"] = wall, cpu
        summary = result.summary
        record = {
            "size": _size(frame),
            "seconds": {k: round(v, 3) for k, v in seconds.items()},
            "cpu_seconds": {k: round(v, 3) for k, v in cpus.items()},
            "peak_rss_mb": round(rss_mb(), 1),
            "summary": {
                k: summary.get(k)
                for k in (
                    "n_chunks",
                    "n_detections",
                    "n_dipole_rejected",
                    "n_prefilter_rejected",
                    "n_candidates",
                    "flux_ratio",
                    "image_psf_fwhm",
                    "template_psf_fwhm",
                )
            },
            "quality": quality(task, frame),
            "load_before": load_before,
            "load_after": load_average(),
            "cpu_count": os.cpu_count(),
        }
    finally:
        shutil.rmtree(task, ignore_errors=True)
    return record


def _size(frame: Path) -> int:
    from astropy.io import fits

    return int(fits.getheader(frame / "image.fits")["NAXIS1"])


# --- engine-level figures (--functions) -------------------------------------------------


def time_functions(frame: Path) -> list[tuple[str, float, float]]:
    """Reprojection (both methods), preparation and chunked ZOGY alone on the frame's pair."""
    from astropy.io import fits
    from astropy.table import Table
    from astropy.wcs import WCS

    from pipeline.subtraction.chunks import subtract_in_chunks
    from pipeline.subtraction.prepare import prepare_inputs
    from pipeline.subtraction.zogy import zogy_subtract
    from pipeline.templates.reprojection import reproject_template

    meta = Table.read(frame / "transients.fits").meta
    image, header = fits.getdata(frame / "image.fits", header=True)
    image = image.astype(float)
    template, theader = fits.getdata(frame / "custom_template.fits", header=True)
    rows = []

    def clock(name, func, *args, **kwargs):
        start, cpu = time.perf_counter(), time.process_time()
        value = func(*args, **kwargs)
        rows.append((name, time.perf_counter() - start, time.process_time() - cpu))
        return value

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wcs = WCS(header).celestial
        for method in ("adaptive", "interp"):
            data, bad = clock(
                f"reproject ({method})",
                reproject_template,
                template,
                theader,
                None,
                wcs,
                image.shape,
                method,
            )
        inputs, _ = clock(
            "prepare_inputs",
            prepare_inputs,
            image,
            image >= float(meta["SATUR"]),
            data,
            bad,
            image_fwhm=float(meta["FWHM"]),
            image_gain=float(meta["GAIN"]),
            template_gain=float(meta["TGAIN"]),
            image_saturation=float(meta["SATUR"]),
        )
        for workers in (1, None):
            clock(
                f"ZOGY, chunks 1000/50, workers={workers or 'all'}",
                subtract_in_chunks,
                inputs,
                zogy_subtract,
                1000,
                50,
                workers,
            )
    return rows


# --- the parent ------------------------------------------------------------------------


def median_record(runs: list[dict]) -> dict:
    out = json.loads(json.dumps(runs[-1]))
    for group in ("seconds", "cpu_seconds"):
        for key in out[group]:
            out[group][key] = round(float(np.median([r[group][key] for r in runs])), 3)
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    out["load"] = [r["load_before"][0] for r in runs] + [runs[-1]["load_after"][0]]
    return out


def print_record(size: int, record: dict, runs: int) -> None:
    print(f"\nsubtraction step, {size}², median of {runs} run(s); 1-min load {record['load']}")
    print(f"  {'stage':<24} {'wall s':>8} {'CPU s':>8}")
    for key in (*STAGES, "other", "step", "reprojection"):
        label = "  (of template: reprojection)" if key == "reprojection" else key
        print(f"  {label:<24} {record['seconds'][key]:8.2f} {record['cpu_seconds'][key]:8.2f}")
    print(f"  peak RSS {record['peak_rss_mb']:.0f} MB")
    print("  summary:", record["summary"])
    print("  quality:", record["quality"])


def child_run(option: str, frame: Path):
    """Run this script with ``option`` on ``frame`` in a fresh process; its JSON answer."""
    command = [sys.executable, __file__, option, str(frame)]
    child = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
    if child.returncode != 0:
        raise SystemExit(f"subtraction run failed:\n{child.stderr[-3000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--functions", action="store_true", help="engine-level figures too")
    parser.add_argument("--once", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--functions-once", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--build-once", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_once:
        build_frame(int(args.build_once.name), args.build_once.parent)
        print("{}")
        return
    if args.once:
        print(json.dumps(run_once(args.once)))
        return
    if args.functions_once:
        print(json.dumps(time_functions(args.functions_once)))
        return
    for size in args.sizes:
        frame = args.out / str(size)
        # a child builds the frame: the parent's memory high-water mark passes to the children
        child_run("--build-once", frame)
        runs = [child_run("--once", frame) for _ in range(args.repeat)]
        record = median_record(runs)
        record["runs"] = runs
        print_record(size, record, len(runs))
        if args.functions:  # in a child too: the parent's memory must not grow
            record["functions"] = child_run("--functions-once", frame)
            print(f"  engine-level calls alone ({size}²):")
            for name, wall, cpu in record["functions"]:
                print(f"    {name:<40} {wall:8.2f} s {cpu:8.2f} CPU-s")
        (frame / "subtraction.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
