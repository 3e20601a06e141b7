"""Reference-catalogue figures: VizieR VOTable parsing and transformations for 50 000 rows.

A simulated Pan-STARRS catalogue (``pipeline.simulate`` star colours and magnitudes,
VizieR II/349/ps1 layout) is served by the local VizieR fixture server; the real
astroquery client fetches it. Timed separately: the server building its VOTable, the
client's fetch (request + transfer + VOTable parse), the parse alone, normalisation,
derivation of the calibration bands (PS1 → BVRI; SDSS → PS1 with the iterated
inversion; Gaia → V R I and the Gaia → SDSS → PS1 chain), blend merging and the cache.

Run: ``uv run python bench/bench_catalogs.py [--rows 50000] [--repeat 3]``. Prints a table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.catalogs import derive_bands, get_definition, remove_blends  # noqa: E402
from pipeline.catalogs.cache import read_cached, write_cached  # noqa: E402
from pipeline.catalogs.normalize import normalize  # noqa: E402
from pipeline.catalogs.vizier import _parse_answer, query_vizier  # noqa: E402
from pipeline.simulate.catalog import (  # noqa: E402
    build_ps1_table,
    draw_g_r,
    draw_r_magnitudes,
    star_magnitudes,
)
from tests.fixture_servers.vizier import (  # noqa: E402
    VizierFixture,
    parse_params,
    select,
    votable_answer,
)
from tests.pipeline.catalogs.helpers import layout_table  # noqa: E402

CENTRE = (150.0, 20.0)
RADIUS_DEG = 0.5


def simulated_ps1(rows: int, seed: int = 1) -> Table:
    """``rows`` simulated stars spread uniformly over a cone, in the PS1 VizieR layout."""
    rng = np.random.default_rng(seed)
    distance = RADIUS_DEG * np.sqrt(rng.uniform(0, 1, rows))
    angle = rng.uniform(0, 2 * np.pi, rows)
    dec = CENTRE[1] + distance * np.sin(angle)
    ra = CENTRE[0] + distance * np.cos(angle) / np.cos(np.radians(dec))
    r = draw_r_magnitudes(rows, 12.0, 22.5, rng)
    mags = star_magnitudes(r, draw_g_r(rows, rng), rng)
    return build_ps1_table(ra, dec, mags, rng)


def timed(function, repeat: int):
    """(median seconds, last result) over ``repeat`` calls."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    ps1 = simulated_ps1(args.rows)
    definition = get_definition("ps1")
    rows_out: list[tuple[str, int, float]] = []

    with VizierFixture({definition.vizier_id: ps1}) as server:
        query = dict(server_url=server.url, timeout=120.0, row_limit=-1)
        query_vizier(definition, *CENTRE, 0.01, **query)  # warm up: astroquery import
        server.requests.clear()
        seconds, answer = timed(
            lambda: query_vizier(definition, *CENTRE, RADIUS_DEG, **query), args.repeat
        )
        params = parse_params(server.requests[-1])

        def build_answer() -> bytes:
            selected, overflow = select(ps1, params)
            return votable_answer(definition.vizier_id, selected, params, overflow)

        server_seconds, body = timed(build_answer, args.repeat)
    rows = len(answer.table)
    rows_out.append(("server: build VOTable (fixture)", rows, server_seconds))
    rows_out.append(("client: astroquery fetch + parse", rows, seconds))
    seconds, raw = timed(lambda: _parse_answer(body, definition, "bench").table, args.repeat)
    rows_out.append((f"parse VOTable ({len(body) / 1e6:.1f} MB)", len(raw), seconds))
    seconds, table = timed(lambda: normalize(raw, definition), args.repeat)
    rows_out.append(("normalise to our columns", len(table), seconds))
    seconds, _ = timed(lambda: derive_bands(table.copy()), args.repeat)
    rows_out.append(("derive BVRI from PS1 (Tonry)", len(table), seconds))

    sdss = normalize(layout_table(get_definition("sdss"), ps1), get_definition("sdss"))
    seconds, _ = timed(lambda: derive_bands(sdss.copy()), args.repeat)
    rows_out.append(("derive from SDSS (iterated PS1 griz)", len(sdss), seconds))
    gaia = normalize(layout_table(get_definition("gaiaedr3"), ps1), get_definition("gaiaedr3"))
    seconds, _ = timed(lambda: derive_bands(gaia.copy()), args.repeat)
    rows_out.append(("derive from Gaia (chains)", len(gaia), seconds))

    derived = derive_bands(table.copy())
    seconds, merged = timed(lambda: remove_blends(derived, fwhm_arcsec=2.0), args.repeat)
    rows_out.append(
        (f"merge blends ({merged.meta['blends']['groups']} groups)", len(derived), seconds)
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.fits"
        seconds, _ = timed(lambda: write_cached(path, table, "bench"), args.repeat)
        rows_out.append(("cache write (FITS)", len(table), seconds))
        seconds, _ = timed(lambda: read_cached(path), args.repeat)
        rows_out.append(("cache read (FITS)", len(table), seconds))

    print(f"\nreference catalogues, {args.rows} simulated PS1 stars, median of {args.repeat}")
    print(f"{'step':<42} {'rows':>8} {'seconds':>9} {'rows/s':>11}")
    for name, count, seconds in rows_out:
        rate = count / seconds if seconds > 0 else float("inf")
        print(f"{name:<42} {count:>8} {seconds:>9.3f} {rate:>11.0f}")


if __name__ == "__main__":
    main()
