"""Write a simulated sky to disk: images, catalogue, and the truth as JSON and FITS."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table

from .config import SkyConfig
from .core import SimulatedSky, simulate_sky

GRID_STEP = 32  # px between nodes of the ZP and FWHM maps in truth.fits
SIMULATION_FILES = {
    "image": "image.fits",
    "catalog": "catalog.fits",
    "catalog_vot": "catalog.vot",
    "template": "template.fits",
    "truth_json": "truth.json",
    "truth_fits": "truth.fits",
}


def _plain(value: Any) -> Any:
    """Convert numpy scalars/arrays inside ``value`` into JSON-friendly Python objects."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        return None if not np.isfinite(value) else float(value)
    return value


def _rows(table: Table) -> list[dict]:
    return [{name: _plain(row[name]) for name in table.colnames} for row in table]


def _grid_hdu(values: np.ndarray, name: str, unit: str) -> fits.ImageHDU:
    hdu = fits.ImageHDU(values.astype(np.float32), name=name)
    hdu.header["GRIDSTEP"] = (GRID_STEP, "[px] spacing of the grid nodes")
    hdu.header["GRIDX0"] = (GRID_STEP / 2 - 0.5, "[px] 0-based x of node [0, 0]")
    hdu.header["GRIDY0"] = (GRID_STEP / 2 - 0.5, "[px] 0-based y of node [0, 0]")
    hdu.header["BUNIT"] = unit
    return hdu


def write_truth_fits(sky: SimulatedSky, path: Path) -> None:
    """truth.fits: STARS, GALAXIES, TRANSIENTS, COSMICS, BADPIX, ZPMAP, FWHMMAP HDUs."""
    truth = sky.truth
    hdus = [fits.PrimaryHDU()]
    hdus[0].header["LIMSN5"] = (truth.limit_sn5, "analytic S/N=5 limit, r mag")
    hdus[0].header["COLTERM"] = (truth.color_term, "colour term C on g-r")
    for name, table in (
        ("STARS", truth.stars),
        ("GALAXIES", truth.galaxies),
        ("TRANSIENTS", truth.transients),
        ("CREVENTS", truth.cosmic_events),
    ):
        hdus.append(fits.table_to_hdu(Table(table, masked=False)))
        hdus[-1].name = name
    hdus.append(fits.ImageHDU(truth.cosmic_mask.astype(np.uint8), name="COSMICS"))
    hdus.append(fits.ImageHDU(truth.bad_column_mask.astype(np.uint8), name="BADPIX"))
    hdus.append(_grid_hdu(truth.zero_point_map.on_grid(GRID_STEP), "ZPMAP", "mag"))
    hdus.append(_grid_hdu(truth.psf_field.on_grid(GRID_STEP), "FWHMMAP", "pix"))
    fits.HDUList(hdus).writeto(path, overwrite=True)


def truth_document(sky: SimulatedSky, files: dict[str, str]) -> dict[str, Any]:
    """All scalar truth, the transients and the file names, as plain JSON types."""
    cfg = sky.config
    return _plain(
        {
            "seed": sky.seed,
            "shape": list(cfg.image_shape),
            "ra_center": cfg.ra_center,
            "dec_center": cfg.dec_center,
            "filter": "r",
            **sky.truth.scalars(),
            "transients": _rows(sky.truth.transients),
            "template": None
            if sky.template is None
            else {
                "fwhm": sky.template.fwhm,
                "zp": sky.template.zp,
                "color_term": sky.template.color_term,
                "gain": sky.template.gain,
                "read_noise": sky.template.read_noise,
                "sky_level": sky.template.sky_level,
                "shift_px": list(sky.template.shift_px),
                "rotation_deg": sky.template.rotation_deg,
            },
            "files": files,
        }
    )


def write_simulation(sky: SimulatedSky, outdir: str | Path) -> dict[str, Path]:
    """Write ``sky`` into ``outdir`` (created if needed).

    Returns
    -------
    dict
        Paths keyed by ``image``, ``catalog``, ``catalog_vot``, ``template`` (if the
        sky has one), ``truth_json`` and ``truth_fits``.
    """
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {key: out / name for key, name in SIMULATION_FILES.items()}
    if sky.template is None:
        paths.pop("template")
    fits.PrimaryHDU(sky.image, sky.header).writeto(paths["image"], overwrite=True)
    sky.catalog.write(paths["catalog"], format="fits", overwrite=True)
    sky.catalog.write(paths["catalog_vot"], format="votable", overwrite=True)
    if sky.template is not None:
        fits.PrimaryHDU(sky.template.image, sky.template.header).writeto(
            paths["template"], overwrite=True
        )
    write_truth_fits(sky, paths["truth_fits"])
    document = truth_document(sky, {k: p.name for k, p in paths.items()})
    paths["truth_json"].write_text(json.dumps(document, indent=1))
    return paths


def simulate_command(
    outdir: str | Path, size: int = 2048, seed: int = 1, psf: str = "moffat"
) -> dict[str, str]:
    """What ``skysift simulate OUTDIR`` runs: simulate a sky and write it to ``outdir``.

    Returns the written paths (as strings) keyed like :func:`write_simulation`, plus
    ``limit_sn5`` and counts, for the CLI to print.
    """
    sky = simulate_sky(SkyConfig(size=size, psf=psf), seed=seed)
    paths = write_simulation(sky, outdir)
    result = {key: str(path) for key, path in paths.items()}
    result["limit_sn5"] = f"{sky.truth.limit_sn5:.2f}"
    result["n_catalog_stars"] = str(len(sky.catalog))
    result["n_transients"] = str(len(sky.truth.transients))
    return result
