"""STDPipe 0.4.1 baseline for issue 7: image subtraction and candidate search on the same
simulated pair as ``bench_subtraction.py``, timed stage by stage.

Runs in the baseline's own venv (STDPipe is only timed, never part of SkySift)::

    uv venv .bench-stdpipe --python 3.11
    uv pip install --python .bench-stdpipe/bin/python stdpipe==0.4.1 statsmodels==0.14.6 \\
        sep astroscrappy photutils scikit-learn astroquery reproject
    uv run python bench/bench_subtraction.py --sizes 2048 4096      # builds the frames
    .bench-stdpipe/bin/python bench/bench_stdpipe_subtraction.py /tmp/skysift-bench-sub/4096

Inputs are those of SkySift's step: ``image.fits`` and ``custom_template.fits`` of the frame
folder, and the SkySift task folder's inspection mask (``task/mask.fits``), refined WCS
(``task/image.wcs``) and FWHM (``task/photometry.result.json``); image gain and saturation
from the header, template gain from the simulation (as SkySift is given). No HOTPANTS and no
PSFEx binaries are installed here, so the two paths STDPipe offers without them are timed:

* **SFFT chain** — what STDWeb runs when ``subtraction_method='sfft'``, per sub-image of
  1000 px overlapping by 50 px (``pipeline.split_image``, nx = ny = ⌈size/1000⌉): masks
  dilated by the FWHM, sep backgrounds subtracted from both images, ``run_sfft`` with
  STDWeb's defaults (kernel, background and flux polynomial orders 0, kernel half-width
  ⌈max(FWHM_image, FWHM_template)⌉), masked difference pixels zeroed; SExtractor on the
  difference with its noise map (``get_objects_sextractor`` defaults: 2σ, minarea 5;
  edge = overlap), ``measure_objects`` (1·FWHM aperture, 5–7·FWHM annulus, the noise map,
  S/N ≥ 5), ``filter_transient_candidates`` (flag mask 0x7e00, no catalogue/SkyBoT
  queries), and for every candidate a cut-out with ``adjust_cutout(max_shift=1,
  max_scale=1.3, inner=2·FWHM)`` rejecting p > 0.01 or χ² < χ²₀/3, then ``write_cutout``
  of the survivors. The template FWHM is measured once on the whole reprojected template
  (median 2·FLUX_RADIUS of clean objects, SExtractor), as STDWeb does per sub-image.
* **ZOGY** — ``run_zogy`` on the whole pair with the same sub-image grid (its own
  ``nx``/``overlap``), fitted flux scale and sub-pixel shift (its defaults), PSFs from
  STDPipe's pure-Python ``psf.create_psf_model`` (constant ePSF) instead of PSFEx, and
  ``get_objects_sep`` lists of both images for its initial flux scale (what ``run_psfex``
  would hand it).

The template is reprojected once for the whole image with ``reproject_adaptive
(conserve_flux=True)`` (STDWeb's path for uploaded templates; STDWeb does it per
sub-image, which costs more because of the overlaps). Wall and CPU seconds (all threads
plus child processes such as SExtractor) per stage; each repetition in a fresh process;
the parent prints medians and writes JSON (``<frame>/stdpipe_subtraction.json``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

SUB_SIZE, SUB_OVERLAP = 1000, 50
REL_APER, REL_BG = 1.0, (5.0, 7.0)
SN = 5.0
FLAGMASK = 0x7E00
ADJUST_P_VALUE, ADJUST_CHI2_DROP = 0.01, 3.0
MATCH_RADIUS = 1.5  # px between a candidate and an injected transient


def cpu_seconds() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


class Clock:
    """Wall and CPU seconds summed per stage (stages may be entered many times)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        start, cpu = time.perf_counter(), cpu_seconds()
        yield
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
        self.cpu[name] = self.cpu.get(name, 0.0) + cpu_seconds() - cpu


def warm_imports() -> None:
    """Import what STDPipe imports lazily, as a long-running worker would have it loaded."""
    import photutils.psf  # noqa: F401
    import statsmodels.api  # noqa: F401
    from stdpipe import cutouts, photometry, pipeline, psf, subtraction, templates  # noqa: F401


def template_fwhm(template: np.ndarray, mask: np.ndarray, gain: float) -> float:
    """STDWeb's template FWHM: median 2·FLUX_RADIUS of clean S/N > 20 SExtractor objects."""
    from stdpipe import photometry

    obj = photometry.get_objects_sextractor(
        template, mask=mask, gain=gain, extra_params=["FLUX_RADIUS"], verbose=False
    )
    clean = (obj["flags"] == 0) & (obj["magerr"] < 1 / 20)
    return float(np.median(2.0 * obj["FLUX_RADIUS"][clean]))


def sfft_chain(image, mask, tmpl, tmask, wcs, header, fwhm, tfwhm, gain, tgain, clock, out):
    """STDWeb's SFFT subtraction and candidate search, sub-image by sub-image."""
    import sep
    from stdpipe import cutouts, photometry, pipeline, subtraction, templates

    n = math.ceil(image.shape[0] / SUB_SIZE)
    half = math.ceil(max(fwhm, tfwhm))
    candidates = []
    header = header.copy()
    header.update(wcs.to_header(relax=True))
    for x0, y0, sub, submask, subtmpl, subtmask, subheader, subwcs in pipeline.split_image(
        image, mask, tmpl, tmask, header, wcs, nx=n, overlap=SUB_OVERLAP, get_origin=True
    ):
        with clock.stage("sfft_preparation"):
            submask = templates.dilate_mask(submask, fwhm)
            subtmask = templates.dilate_mask(subtmask, fwhm)
            img = np.ascontiguousarray(sub, np.double)
            tpl = np.ascontiguousarray(np.nan_to_num(subtmpl), np.double)
            img = img - sep.Background(img, mask=submask).back()
            tpl = tpl - sep.Background(tpl, mask=subtmask).back()
        with clock.stage("sfft"):
            diff, conv, noise = subtraction.run_sfft(
                img,
                tpl,
                mask=submask,
                template_mask=subtmask,
                err=True,
                template_err=True,
                image_gain=gain,
                template_gain=tgain,
                kernel_shape=(2 * half + 1, 2 * half + 1),
                kernel_poly_order=0,
                bg_poly_order=0,
                flux_poly_order=0,
                get_convolved=True,
                get_noise=True,
            )
            bad = submask | subtmask
            diff[bad] = 0.0
        with clock.stage("detection_measurement"):
            obj = photometry.get_objects_sextractor(
                diff, mask=bad, err=noise, edge=SUB_OVERLAP, wcs=subwcs, gain=gain, verbose=False
            )
            obj = photometry.measure_objects(
                obj,
                diff,
                mask=bad,
                fwhm=fwhm,
                aper=REL_APER,
                bkgann=list(REL_BG),
                err=noise,
                sn=SN,
                verbose=False,
            )
        with clock.stage("filtering"):
            obj["flags"] = np.asarray(obj["flags"], np.int32)  # int16 overflows with 0x7e00
            cand = pipeline.filter_transient_candidates(
                obj, fwhm=fwhm, flagged=True, flagmask=FLAGMASK, vizier=[], skybot=False
            )
        kept = []
        with clock.stage("adjust"):
            for row in cand:
                cutout = cutouts.get_cutout(
                    img,
                    row,
                    20,
                    mask=bad,
                    diff=diff,
                    template=tpl,
                    convolved=conv,
                    err=noise,
                    header=subheader,
                    wcs=subwcs,
                )
                if cutouts.adjust_cutout(
                    cutout, max_shift=1, max_scale=1.3, inner=int(np.ceil(2 * fwhm))
                ):
                    meta = cutout["meta"]
                    if (
                        meta["adjust_pval"] > ADJUST_P_VALUE
                        or meta["adjust_chi2"] * ADJUST_CHI2_DROP < meta["adjust_chi2_0"]
                    ):
                        continue
                kept.append(cutout)
                candidates.append((float(row["x"]) + x0, float(row["y"]) + y0))
        with clock.stage("cutouts"):
            for i, cutout in enumerate(kept):
                cutouts.write_cutout(cutout, str(out / f"{x0}_{y0}_{i}.cutout"))
    return candidates


def zogy(image, mask, tmpl, tmask, fwhm, tfwhm, gain, tgain, clock):
    """STDPipe's ZOGY on the whole pair, PSFs from its pure-Python ePSF builder."""
    import sep
    from stdpipe import photometry, psf, subtraction

    with clock.stage("zogy_psf"):
        img = np.ascontiguousarray(image, np.double)
        tpl = np.ascontiguousarray(np.nan_to_num(tmpl), np.double)
        img_bs = img - sep.Background(img, mask=mask).back()
        tpl_bs = tpl - sep.Background(tpl, mask=tmask).back()
        img_psf = psf.create_psf_model(img_bs, fwhm=fwhm, mask=mask)
        tpl_psf = psf.create_psf_model(tpl_bs, fwhm=tfwhm, mask=tmask)
        # object lists give run_zogy its initial flux scale (run_psfex would return them)
        img_obj = photometry.get_objects_sep(img_bs, mask=mask, thresh=5.0, gain=gain)
        tpl_obj = photometry.get_objects_sep(tpl_bs, mask=tmask, thresh=5.0, gain=tgain)
    with clock.stage("zogy"):
        subtraction.run_zogy(
            img,
            tpl,
            mask=mask,
            template_mask=tmask,
            image_psf=img_psf,
            template_psf=tpl_psf,
            image_gain=gain,
            template_gain=tgain,
            image_fwhm=fwhm,
            template_fwhm=tfwhm,
            nx=math.ceil(image.shape[0] / SUB_SIZE),
            overlap=SUB_OVERLAP,
            image_obj=img_obj,
            template_obj=tpl_obj,
        )


def quality(frame: Path, positions: list[tuple[float, float]]) -> dict:
    truth = Table.read(frame / "transients.fits")
    xy = np.array(positions).reshape(-1, 2)
    matched, found = set(), 0
    for x, y in zip(truth["x"], truth["y"], strict=True):
        d = np.hypot(xy[:, 0] - x, xy[:, 1] - y)
        if len(d) and d.min() < MATCH_RADIUS:
            found += 1
            matched.add(int(np.argmin(d)))
    return {
        "transients": len(truth),
        "transients_found": found,
        "false_candidates": len(xy) - len(matched),
    }


def run_once(frame: Path, variants: list[str]) -> dict:
    from reproject import reproject_adaptive

    warm_imports()
    clock = Clock()
    load_before = [round(v, 2) for v in os.getloadavg()]
    task = frame / "task"
    with clock.stage("read"):
        image, header = fits.getdata(frame / "image.fits", header=True)
        image = image.astype(np.double)
        wcs = WCS(fits.getheader(task / "image.wcs")).celestial
        mask = fits.getdata(task / "mask.fits") > 0
        template, theader = fits.getdata(frame / "custom_template.fits", header=True)
        fwhm = float(json.loads((task / "photometry.result.json").read_text())["summary"]["fwhm"])
        gain = float(header["GAIN"])
        tgain = float(Table.read(frame / "transients.fits").meta["TGAIN"])
    with clock.stage("template"):
        tmpl, footprint = reproject_adaptive(
            (template.astype(np.double), WCS(theader).celestial),
            wcs,
            shape_out=image.shape,
            conserve_flux=True,
        )
        tmask = ~np.isfinite(tmpl) | (footprint < 0.5)
    with clock.stage("template_fwhm"):
        tfwhm = template_fwhm(np.nan_to_num(tmpl), tmask, tgain)
    record: dict = {"fwhm": fwhm, "template_fwhm": round(tfwhm, 3)}
    out = Path(tempfile.mkdtemp(prefix="stdpipe-sub-"))
    try:
        if "sfft" in variants:
            found = sfft_chain(
                image, mask, tmpl, tmask, wcs, header, fwhm, tfwhm, gain, tgain, clock, out
            )
            record["quality_sfft"] = quality(frame, found)
        if "zogy" in variants:
            zogy(image, mask, tmpl, tmask, fwhm, tfwhm, gain, tgain, clock)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    record.update(
        {
            "tool": "stdpipe 0.4.1",
            "size": int(image.shape[0]),
            "seconds": {k: round(v, 3) for k, v in clock.seconds.items()},
            "cpu_seconds": {k: round(v, 3) for k, v in clock.cpu.items()},
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "load_before": load_before,
            "load_after": [round(v, 2) for v in os.getloadavg()],
        }
    )
    return record


SFFT_CHAIN = (
    "read",
    "template",
    "template_fwhm",
    "sfft_preparation",
    "sfft",
    "detection_measurement",
    "filtering",
    "adjust",
    "cutouts",
)


def summarise(runs: list[dict]) -> dict:
    out = json.loads(json.dumps(runs[-1]))
    for group in ("seconds", "cpu_seconds"):
        for key in out[group]:
            out[group][key] = round(float(np.median([r[group][key] for r in runs])), 3)
        total = [sum(r[group].get(k, 0.0) for k in SFFT_CHAIN) for r in runs]
        out[group]["sfft_chain_total"] = round(float(np.median(total)), 3)
    out["load"] = [r["load_before"][0] for r in runs] + [runs[-1]["load_after"][0]]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("frame", type=Path, help="frame folder written by bench_subtraction.py")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=["sfft", "zogy"])
    parser.add_argument("--once", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    if args.once:
        print(json.dumps(run_once(args.frame, args.variants)))
        return
    runs = []
    for _ in range(args.repeat):
        command = [
            sys.executable,
            __file__,
            str(args.frame),
            "--once",
            "--variants",
            *args.variants,
        ]
        child = subprocess.run(command, capture_output=True, text=True, check=False)
        if child.returncode != 0:
            raise SystemExit(f"baseline run failed:\n{child.stderr[-3000:]}")
        runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
    record = summarise(runs)
    record["runs"] = runs
    print(
        f"STDPipe 0.4.1 subtraction, {record['size']}², median of {len(runs)} run(s); "
        f"1-min load {record['load']}"
    )
    print(f"  {'stage':<24} {'wall s':>8} {'CPU s':>8}")
    for key, value in record["seconds"].items():
        print(f"  {key:<24} {value:8.2f} {record['cpu_seconds'][key]:8.2f}")
    print("  FWHM image / template:", record["fwhm"], record["template_fwhm"])
    print("  quality (SFFT chain):", record.get("quality_sfft"))
    (args.frame / "stdpipe_subtraction.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
