"""HOTPANTS image subtraction (Becker 2015, ascl:1504.004) run as an external program.

HOTPANTS fits an Alard & Lupton (1998) kernel — Gaussians times polynomials — on stamps
around stars and subtracts the convolved image. Each (sub-)image pair is written as FITS to
its own temporary folder, ``hotpants`` runs there with a timeout, and its outputs are read
back into :class:`SubtractionProducts`.

Parameters are derived from the pair the way the STDWeb paper (§4.2, "Image subtraction")
describes; the user can override each one, and add any other option:

* ``-c t -n i``: the template is always convolved to the image and the result normalised to
  the image, so the difference keeps the science PSF and zero point.
* ``-ng``: three Gaussians of widths 0.5, 1 and 2 × σ_k with polynomial degrees 6, 4, 2
  (HOTPANTS's default degrees, and about the ratios of its default widths 0.7, 1.5, 3 px),
  where σ_k = sqrt(|σ_image² − σ_template²|) (at least 0.5 px) is the width of the Gaussian
  that turns one Gaussian PSF into the other.
* ``-r`` = 2.5 × the larger FWHM (and 3 × the widest Gaussian), ``-rss`` = 1.5 × ``-r``
  (HOTPANTS's default ratio 15/10); ``-nsx``/``-nsy``: up to 10 stamps per axis, fewer on
  small sub-images so that each stamp still holds a sub-stamp and the kernel.
* ``-iu``/``-tu``: the saturation levels (or beyond the data); ``-iuk``/``-tuk``: 80 % of
  them, for the stars the kernel is fitted on; ``-il``/``-tl``: 10 σ below the (subtracted)
  background — the default 0 would mask half the sky of background-subtracted images.
* Noise: ``-ini``/``-tni`` carry our noise model, sqrt(background RMS² + source Poisson
  variance from the gain), so HOTPANTS's own model from ``-ig``/``-tg``/``-ir``/``-tr``
  (which assumes the sky is still in the pixels) is not used; ``-imi``/``-tmi`` carry the
  masks, and ``-ssf`` the stars common to both images (:func:`matched_stars`), completed
  by HOTPANTS's own search (``-afssc 1``).
* Outputs: ``-oni`` noise, ``-omi`` mask (bit 0x8000 = unusable), ``-oci`` convolved
  template; the header gives KSUMnn (kernel sum), CONVOLnn and PHOTNORM, with which the
  difference is brought to science flux units whatever the user chose.

The significance map is the matched filter of the difference with the image's PSF
(:func:`psf_significance`).
"""

from __future__ import annotations

import math
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
from astropy.io import fits
from pydantic import BaseModel, Field, field_validator

from pipeline.subtraction.base import SubtractionInputs, SubtractionProducts
from pipeline.subtraction.engines import EngineFailed
from pipeline.subtraction.significance import psf_significance
from pipeline.subtraction.stars import SATURATION_MARGIN, matched_stars

FWHM_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
GAUSS_WIDTHS = (0.5, 1.0, 2.0)  # × σ_k
GAUSS_DEGREES = (6, 4, 2)  # HOTPANTS's defaults
MIN_KERNEL_SIGMA = 0.5  # px, when the two seeings are (nearly) equal
FLAG_OUTPUT_ISBAD = 0x8000
STDERR_TAIL = 15  # lines of HOTPANTS's stderr quoted when it fails

# Options the user may add, with how many values each takes ("ng": 1 + 2n). The options
# naming files are left out: SkySift names every file, and a path from the web must never
# reach the command line.
_ONE_NUMBER = (
    "tu tuk tl tg tr tp iu iuk il ig ir ip r kcs ft sft nft mins mous nrx nry nsx nsy "
    "afssc nss rss ko bgo ssig ks kfm fi fin obs obz nbs nbz v"
)
_NUMERIC_OPTIONS = {**dict.fromkeys(_ONE_NUMBER.split(), 1), "gd": 4}
_CHOICE_OPTIONS = {"c": "tib", "n": "tiu", "fom": "vsh"}
_SWITCHES = frozenset(
    ["okn", "sconv", "nim", "ndm", "cim", "allm", "nc", "hki", "sht", "nsht", "convvar", "sum"]
)
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def parse_extra_arguments(text: str) -> list[str]:
    """Split user-given HOTPANTS options and check each against HOTPANTS's option list.

    Raises ValueError for unknown options, options naming files, or malformed values.
    """
    tokens = shlex.split(text or "")
    out: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("-") or _NUMBER.match(token):
            raise ValueError(f"expected a HOTPANTS option, found {token!r}")
        name = token[1:].lower()
        if name in _SWITCHES:
            out.append(token)
            i += 1
            continue
        if name in _CHOICE_OPTIONS:
            count = 1
        elif name in _NUMERIC_OPTIONS:
            count = _NUMERIC_OPTIONS[name]
        elif name == "ng":
            if i + 1 >= len(tokens) or not tokens[i + 1].isdigit():
                raise ValueError("-ng needs the number of Gaussians, then degree and sigma of each")
            count = 1 + 2 * int(tokens[i + 1])
        else:
            raise ValueError(
                f"HOTPANTS option {token!r} is unknown or names a file (SkySift sets those)"
            )
        values = tokens[i + 1 : i + 1 + count]
        if len(values) < count:
            raise ValueError(f"{token} needs {count} value(s)")
        if name in _CHOICE_OPTIONS:
            if values[0][:1].lower() not in _CHOICE_OPTIONS[name] or len(values[0]) != 1:
                raise ValueError(f"{token} takes one of {', '.join(_CHOICE_OPTIONS[name])}")
        elif not all(_NUMBER.match(v) for v in values):
            raise ValueError(f"{token} takes numbers, got {' '.join(values)}")
        out.extend([token, *values])
        i += 1 + count
    return out


class HotpantsConfig(BaseModel):
    """Parameters of the HOTPANTS engine; empty ones are derived from the pair."""

    model_config = {"extra": "forbid"}

    kernel_half_width: int | None = Field(
        None, ge=2, le=50, description="-r: kernel half-width, px; empty: 2.5 × larger FWHM."
    )
    stamp_half_width: int | None = Field(
        None, ge=3, le=80, description="-rss: half-width of the fitted sub-stamps; empty: 1.5 × -r."
    )
    gaussians: str | None = Field(
        None,
        description="-ng: 'n deg1 sigma1 ... degn sigman'; empty: 3 Gaussians of 0.5, 1, 2 × "
        "the matching width with degrees 6, 4, 2.",
    )
    kernel_order: int = Field(0, ge=0, le=4, description="-ko: spatial order of the kernel.")
    bg_order: int = Field(0, ge=0, le=4, description="-bgo: spatial order of the background.")
    stamps: int | None = Field(
        None, ge=1, le=50, description="-nsx, -nsy: stamps per axis; empty: up to 10."
    )
    fit_threshold: float = Field(
        20.0, gt=0, description="-ft: S/N a stamp's star needs for the kernel fit."
    )
    lower_sigma: float = Field(
        10.0, gt=0, description="-il, -tl: valid data down to this many noise σ below zero."
    )
    convolve: Literal["t", "i", "b"] = Field(
        "t", description="-c: image convolved: t(emplate), i(mage) or b(est)."
    )
    normalize: Literal["i", "t", "u"] = Field(
        "i", description="-n: photometric system of HOTPANTS's output (converted back anyway)."
    )
    use_stars: bool = Field(
        True, description="-ssf: give HOTPANTS the stars common to both images as stamps."
    )
    timeout: float = Field(600.0, gt=0, le=7200, description="Seconds before HOTPANTS is stopped.")
    extra: str = Field(
        "", description="More HOTPANTS options, e.g. '-ks 3 -okn'; they override the above."
    )

    @field_validator("extra")
    @classmethod
    def _check_extra(cls, value: str) -> str:
        parse_extra_arguments(value)
        return value

    @field_validator("gaussians")
    @classmethod
    def _check_gaussians(cls, value: str | None) -> str | None:
        if value:
            parse_extra_arguments(f"-ng {value}")
        return value


def hotpants_binary() -> str | None:
    return shutil.which("hotpants")


# --- parameters from the pair -------------------------------------------------------------------


def derived_parameters(inputs: SubtractionInputs, cfg: HotpantsConfig) -> dict[str, str]:
    """HOTPANTS options (name without dash → value string) for this pair (module docstring)."""
    fwhm = max(inputs.image_fwhm, inputs.template_fwhm)
    s_i, s_t = inputs.image_fwhm / FWHM_SIGMA, inputs.template_fwhm / FWHM_SIGMA
    s_k = max(math.sqrt(abs(s_i**2 - s_t**2)), MIN_KERNEL_SIGMA)
    sigmas = [w * s_k for w in GAUSS_WIDTHS]
    r = cfg.kernel_half_width or max(math.ceil(2.5 * fwhm), math.ceil(3.0 * sigmas[-1]))
    rss = max(cfg.stamp_half_width or math.ceil(1.5 * r), r)
    side = min(inputs.image.shape)
    stamps = cfg.stamps or int(np.clip(side // (2 * rss + 2 * r + 2), 1, 10))
    if cfg.gaussians:
        ng = cfg.gaussians
    else:
        terms = " ".join(f"{d} {s:.3f}" for d, s in zip(GAUSS_DEGREES, sigmas, strict=True))
        ng = f"{len(sigmas)} {terms}"
    params = {"r": str(r), "rss": str(rss), "ng": ng, "nsx": str(stamps), "nsy": str(stamps)}
    for prefix, data, noise, sat in (
        ("i", inputs.image, inputs.image_noise, inputs.image_saturation),
        ("t", inputs.template, inputs.template_noise, inputs.template_saturation),
    ):
        upper = sat if sat is not None else 10.0 * float(np.nanmax(np.abs(data))) + 1.0
        params[f"{prefix}u"] = f"{upper:.6g}"
        params[f"{prefix}uk"] = f"{SATURATION_MARGIN * upper:.6g}"
        params[f"{prefix}l"] = f"{-cfg.lower_sigma * noise:.6g}"
    params.update(
        ko=str(cfg.kernel_order),
        bgo=str(cfg.bg_order),
        ft=f"{cfg.fit_threshold:g}",
        c=cfg.convolve,
        n=cfg.normalize,
    )
    return params


# --- files in and out ---------------------------------------------------------------------------


def _write(path: Path, data: np.ndarray, dtype=np.float32) -> None:
    fits.PrimaryHDU(np.ascontiguousarray(data, dtype=dtype)).writeto(path)


def _write_inputs(folder: Path, inputs: SubtractionInputs, stars: np.ndarray) -> dict[str, Path]:
    bad = inputs.image_bad | inputs.template_bad
    files = {name: folder / f"{name}.fits" for name in ("image", "template", "inoise", "tnoise")}
    files.update(imask=folder / "imask.fits", tmask=folder / "tmask.fits")
    _write(files["image"], np.where(bad, 0.0, inputs.image))
    _write(files["template"], np.where(bad, 0.0, inputs.template))
    _write(files["inoise"], np.sqrt(np.where(bad, inputs.image_noise**2, inputs.image_var)))
    _write(files["tnoise"], np.sqrt(np.where(bad, inputs.template_noise**2, inputs.template_var)))
    _write(files["imask"], inputs.image_bad, np.int16)
    _write(files["tmask"], inputs.template_bad, np.int16)
    if len(stars):
        files["stars"] = folder / "stars.txt"
        # HOTPANTS reads 1-based x y
        np.savetxt(files["stars"], stars + 1.0, fmt="%.2f")
    return files


def build_command(
    binary: str, files: dict[str, Path], folder: Path, params: dict[str, str], extra: list[str]
) -> list[str]:
    """The full HOTPANTS command line; ``extra`` comes last, so it overrides."""
    command = [
        binary,
        "-inim", str(files["image"]),
        "-tmplim", str(files["template"]),
        "-outim", str(folder / "diff.fits"),
        "-ini", str(files["inoise"]),
        "-tni", str(files["tnoise"]),
        "-imi", str(files["imask"]),
        "-tmi", str(files["tmask"]),
        "-oni", str(folder / "noise.fits"),
        "-omi", str(folder / "mask.fits"),
        "-oci", str(folder / "conv.fits"),
    ]  # fmt: skip
    if "stars" in files:
        command += ["-ssf", str(files["stars"]), "-afssc", "1"]
    for name, value in params.items():
        command += [f"-{name}", *value.split()]
    return command + extra


def _run(command: list[str], folder: Path, timeout: float) -> None:
    try:
        done = subprocess.run(
            command, cwd=folder, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise EngineFailed(f"HOTPANTS did not finish within {timeout:g} s") from exc
    except OSError as exc:
        raise EngineFailed(f"HOTPANTS could not be started: {exc}") from exc
    missing = [n for n in ("diff.fits", "noise.fits", "mask.fits") if not (folder / n).exists()]
    if done.returncode != 0 or missing:
        tail = "\n".join((done.stderr or done.stdout or "").strip().splitlines()[-STDERR_TAIL:])
        what = f"exit code {done.returncode}" if done.returncode else f"no {', '.join(missing)}"
        raise EngineFailed(f"HOTPANTS failed ({what}): {tail or 'no message'}")


def _header_float(header: fits.Header, key: str) -> float | None:
    """HOTPANTS writes most numbers as strings ('%.4f')."""
    try:
        return float(header[key])
    except (KeyError, TypeError, ValueError):
        return None


def _regions(header: fits.Header, shape: tuple[int, int]) -> list[tuple[slice, slice, str, float]]:
    """(y slice, x slice, convolved image, kernel sum) of every HOTPANTS region."""
    out = []
    count = int(header.get("NREGION", 1))
    for i in range(count):
        ksum = _header_float(header, f"KSUM{i:02d}")
        if ksum is None or not np.isfinite(ksum) or ksum <= 0:
            raise EngineFailed(f"HOTPANTS gave no usable kernel sum for region {i} ({ksum})")
        match = re.match(r"\[(\d+):(\d+),(\d+):(\d+)\]", str(header.get(f"REGION{i:02d}", "")))
        if match:
            x0, x1, y0, y1 = (int(v) for v in match.groups())
            box = (slice(y0 - 1, y1), slice(x0 - 1, x1))
        else:
            box = (slice(0, shape[0]), slice(0, shape[1]))
        convolved = str(header.get(f"CONVOL{i:02d}", "TEMPLATE")).strip().upper()
        out.append((*box, convolved, ksum))
    return out


def _to_science_units(norm: str, convolved: str, ksum: float) -> float:
    """Factor taking HOTPANTS's difference in region to science-image flux units."""
    if convolved == "TEMPLATE":
        return ksum if norm == "t" else 1.0  # -n t divided by ΣK
    return 1.0 if norm == "i" else 1.0 / ksum  # convolved image: its flux scale is ΣK × science


def read_outputs(folder: Path, inputs: SubtractionInputs) -> SubtractionProducts:
    """HOTPANTS's difference, noise, mask and convolved image as SubtractionProducts."""
    with fits.open(folder / "diff.fits") as hdul:
        header = hdul[0].header
        diff = np.asarray(hdul[0].data, float)
    noise = np.asarray(fits.getdata(folder / "noise.fits"), float)
    mask = np.asarray(fits.getdata(folder / "mask.fits")).astype(np.int64)
    fill = _header_float(header, "MASKVAL")
    fill = 1e-30 if fill is None else fill
    bad = (mask & FLAG_OUTPUT_ISBAD) != 0
    bad |= ~np.isfinite(diff) | ~np.isfinite(noise) | (noise <= 0)
    bad |= np.isclose(diff, fill, rtol=1e-4, atol=0.0)
    norm = str(header.get("PHOTNORM", "t")).strip().lower()[:1]
    info: dict = {"hotpants_regions": int(header.get("NREGION", 1))}
    directions = set()
    for i, (ys, xs, convolved, ksum) in enumerate(_regions(header, diff.shape)):
        factor = _to_science_units(norm, convolved, ksum)
        diff[ys, xs] *= factor
        noise[ys, xs] *= factor
        directions.add(convolved)
        info[f"hotpants_ksum{i:02d}"] = round(ksum, 5)
        for key in ("X2NRM", "SSSIG", "DSIGE", "DSIG"):
            value = _header_float(header, f"{key}{i:02d}")
            if value is not None and np.isfinite(value):
                info[f"hotpants_{key.lower()}{i:02d}"] = round(value, 4)
    diff = np.where(bad, 0.0, np.nan_to_num(diff))
    noise = np.where(bad, 0.0, np.nan_to_num(noise))
    if (folder / "conv.fits").exists() and directions == {"TEMPLATE"}:
        convolved = np.nan_to_num(np.asarray(fits.getdata(folder / "conv.fits"), float))
    else:
        convolved = inputs.image - diff  # what was subtracted from the image, in its units
    info["hotpants_convolved"] = "template" if directions == {"TEMPLATE"} else "image"
    return SubtractionProducts(diff, convolved, noise, None, bad, info)


# --- the engine -----------------------------------------------------------------------------------


def hotpants_subtract(
    inputs: SubtractionInputs, config: HotpantsConfig | None = None, binary: str | None = None
) -> SubtractionProducts:
    """Subtract ``inputs.template`` from ``inputs.image`` with the ``hotpants`` program.

    Raises :class:`EngineFailed` (with the tail of HOTPANTS's messages) when it fails.
    """
    cfg = config or HotpantsConfig()
    binary = binary or hotpants_binary()
    if binary is None:
        raise EngineFailed("the `hotpants` program is not on PATH")
    params = derived_parameters(inputs, cfg)
    stars = np.zeros((0, 2))
    if cfg.use_stars:
        border = float(params["rss"]) + float(params["r"])
        stars = matched_stars(inputs, cfg.fit_threshold / 2, 500, border=border)
    with tempfile.TemporaryDirectory(prefix="skysift-hotpants-") as tmp:
        folder = Path(tmp)
        files = _write_inputs(folder, inputs, stars)
        command = build_command(binary, files, folder, params, parse_extra_arguments(cfg.extra))
        _run(command, folder, cfg.timeout)
        products = read_outputs(folder, inputs)
    r = command[len(command) - 1 - command[::-1].index("-r") + 1]  # the last -r counts
    products.info.update(
        hotpants_stars=len(stars), hotpants_r=int(float(r)), hotpants_command=shlex.join(command)
    )
    from_image = products.info["hotpants_convolved"] == "image"
    psf = inputs.template_psf if from_image else inputs.image_psf
    fwhm = inputs.template_fwhm if from_image else inputs.image_fwhm
    products.significance = psf_significance(
        products.difference, products.noise, products.bad, psf, fwhm
    )
    return products
