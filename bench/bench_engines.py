"""The subtraction engines alone (ZOGY, SFFT, HOTPANTS when installed) on simulated pairs.

Run::

    uv run python bench/bench_engines.py --sizes 2048 4096 --repeat 2
    uv run python bench/bench_engines.py --compile        # SFFT's cold numba compilation

For each size a prepared pair is built once and cached (``<out>/<size>.pkl``, default
``/tmp/skysift-bench-engines``): ``simulate_sky(size, seed)``, its template reprojected onto
the image grid, ``prepare_inputs`` with the simulated gains, saturation levels and the
truth's cosmic-ray mask. Each engine then runs in a fresh process:
``subtract_in_chunks(inputs, get_engine(name), 1000, 50)`` with one worker per core,
``--repeat`` times in a row — the first call of a process includes compiling SFFT's numba
functions for the sub-image geometry (see :mod:`pipeline.subtraction.sfft_engine` for why
numba's disk cache is not used), the later ones do not.
Wall seconds (``time.perf_counter``) and process CPU seconds (all threads,
``time.process_time``) per call, peak RSS, the 1-minute load average before and after.
Quality: the injected transients within 1.5 px of a 5σ detection of the engine's
significance map, and the scatter of difference / noise over quiet pixels (|convolved
template| below the template's noise), which should be 1.

``--compile`` times that compilation alone for a 1000-px sub-image's geometry, kernel
orders 0 and 1, in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_OUT = Path("/tmp/skysift-bench-engines")
SEED = 11
CHUNK, OVERLAP = 1000, 50
MATCH_RADIUS = 1.5


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def build_pair(size: int, out: Path) -> Path:
    """Prepared inputs and the truth of a simulated pair, pickled once."""
    path = out / f"{size}.pkl"
    if path.exists():
        return path
    from pipeline.simulate import simulate_sky
    from pipeline.subtraction.prepare import prepare_simulated_pair

    out.mkdir(parents=True, exist_ok=True)
    sky = simulate_sky(size=size, seed=SEED)
    inputs, info = prepare_simulated_pair(sky)
    truth = sky.truth.transients
    with path.open("wb") as fh:
        pickle.dump({"inputs": inputs, "info": info, "truth": np.asarray(truth["x", "y"])}, fh)
    return path


def run_engine(pair: Path, engine: str, repeat: int) -> dict:
    """In this process: time ``repeat`` chunked subtractions with one engine."""
    from pipeline.subtraction.candidates import detect_candidates
    from pipeline.subtraction.chunks import default_workers, subtract_in_chunks
    from pipeline.subtraction.engines import get_engine

    with pair.open("rb") as fh:
        data = pickle.load(fh)
    inputs, truth = data["inputs"], data["truth"]
    function = get_engine(engine)
    calls = []
    products = None
    for _ in range(repeat):
        start, cpu = time.perf_counter(), time.process_time()
        products = subtract_in_chunks(inputs, function, CHUNK, OVERLAP)
        calls.append(
            {
                "wall_s": round(time.perf_counter() - start, 2),
                "cpu_s": round(time.process_time() - cpu, 2),
            }
        )
    significance = products.significance
    if significance is None:  # only engines without a map of their own
        from pipeline.subtraction.candidates import gaussian_significance

        significance = gaussian_significance(products, inputs.image_fwhm)
    table = detect_candidates(significance, products.bad, 5.0, 3, 10)
    cx, cy = np.asarray(table["x"], float), np.asarray(table["y"], float)
    found = sum(
        bool(len(cx)) and float(np.min(np.hypot(cx - x, cy - y))) < MATCH_RADIUS
        for x, y in zip(truth["x"], truth["y"], strict=True)
    )
    quiet = (np.abs(products.convolved) < inputs.template_noise) & ~products.bad
    ratio = (products.difference / np.where(products.noise > 0, products.noise, 1.0))[quiet]
    return {
        "engine": engine,
        "size": inputs.image.shape[0],
        "chunks": products.info["n_chunks"],
        "workers": default_workers(),
        "calls": calls,
        "transients_found": found,
        "transients": len(truth),
        "detections": len(table),
        "quiet_scatter": round(float(np.std(ratio[np.abs(ratio) < 10])), 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def time_compile() -> dict:
    """SFFT's compilation (SSC, no disk cache) for a 1000-px sub-image's padded geometry."""
    from pipeline.subtraction.sfft_engine import SfftConfig, _bucket, _sfft_config

    side = _bucket(CHUNK + 2 * 8)  # half-width 7 + 1 px of padding on each side
    out = {"geometry": side}
    for order in (0, 1):
        start, cpu = time.perf_counter(), time.process_time()
        _sfft_config((side, side), 7, SfftConfig(kernel_poly_order=order), os.cpu_count() or 1)
        out[f"order{order}_wall_s"] = round(time.perf_counter() - start, 2)
        out[f"order{order}_cpu_s"] = round(time.process_time() - cpu, 2)
    return out


def child(args: list[str]) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096])
    parser.add_argument("--engines", nargs="+", default=["zogy", "sfft", "hotpants"])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("PAIR", "ENGINE"))
    parser.add_argument("--child-compile", action="store_true")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_engine(Path(args.child[0]), args.child[1], args.repeat)))
        return
    if args.child_compile:
        print(json.dumps(time_compile()))
        return
    if args.compile:
        load = load_average()
        result = child(["--child-compile"])
        print(json.dumps({**result, "load_before": load, "load_after": load_average()}))
        return
    from pipeline.subtraction.engines import hotpants_path, sfft_available

    available = {"zogy": True, "sfft": sfft_available(), "hotpants": hotpants_path() is not None}
    results = []
    for size in args.sizes:
        pair = build_pair(size, args.out)
        for engine in args.engines:
            if not available.get(engine):
                print(f"{engine}: not installed here, skipped", file=sys.stderr)
                continue
            load = load_average()
            result = child(["--child", str(pair), engine, "--repeat", str(args.repeat)])
            result.update(load_before=load, load_after=load_average())
            results.append(result)
            print(json.dumps(result), flush=True)
    (args.out / "engines.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
