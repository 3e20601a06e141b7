"""Time reprojection and subtraction (ZOGY, 1000-px chunks) of a simulated 2048² pair.

Run: ``uv run python bench/bench_subtraction.py``. Prints a table; never part of the tests.
"""

from __future__ import annotations

import time
import warnings

from pipeline.simulate import simulate_sky
from pipeline.subtraction.chunks import subtract_in_chunks
from pipeline.subtraction.prepare import prepare_inputs
from pipeline.subtraction.zogy import zogy_subtract
from pipeline.templates.reprojection import reproject_template


def main(size: int = 2048) -> None:
    sky = simulate_sky(size=size, seed=11)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for method in ("interp", "adaptive"):
            start = time.perf_counter()
            data, bad = reproject_template(
                sky.template.image,
                sky.template.header,
                None,
                sky.truth.wcs,
                sky.image.shape,
                method,
            )
            rows.append((f"reproject ({method})", time.perf_counter() - start))
        start = time.perf_counter()
        inputs, _ = prepare_inputs(
            sky.image,
            sky.image >= sky.truth.saturation,
            data,
            bad,
            image_fwhm=sky.truth.fwhm_median,
            image_gain=sky.truth.gain,
            template_gain=sky.template.gain,
            image_saturation=sky.truth.saturation,
        )
        rows.append(("prepare (backgrounds, PSFs, flux ratio)", time.perf_counter() - start))
        for workers in (1, None):
            start = time.perf_counter()
            subtract_in_chunks(inputs, zogy_subtract, 1000, 50, workers)
            rows.append(
                (f"ZOGY, chunks 1000/50, workers={workers or 'all'}", time.perf_counter() - start)
            )
    print(f"{'stage (' + str(size) + '²)':<48} {'seconds':>8}")
    for name, seconds in rows:
        print(f"{name:<48} {seconds:8.2f}")


if __name__ == "__main__":
    main()
