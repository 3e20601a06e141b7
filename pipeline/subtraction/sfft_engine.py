"""SFFT image subtraction (Hu et al. 2022, ApJ 936, 157) through the PyPI ``sfft`` package.

SFFT fits, by linear least squares solved in Fourier space, a matching kernel made of
delta functions on a (2w+1)² grid whose weights vary as a polynomial of degree
``kernel_poly_order`` over the image, plus a differential background polynomial of degree
``bg_poly_order``. With ``const_phot_ratio`` the kernel sum (the flux ratio) is one number.

How we use it:

* **Direction.** The template is convolved to the science image, D = N − (K ⊗ R + B), so
  the difference has the science PSF and flux scale and the science zero point applies.
  ``convolve="science"`` reverses this, for a template with worse seeing than the image
  (convolving it would have to sharpen it): D = (K ⊗ N + B − R) / ΣK is then in science
  flux units but has the *template's* PSF, so apertures sized for the science image lose
  some flux.
* **Where the kernel is learnt.** Like SFFT's "sparse" flavour, only the pixels within
  ``star_radius`` FWHM of stars seen alike in both images (:func:`matched_stars`) enter the
  fit (both images are zeroed elsewhere); the solution is then applied to the whole pair.
* **Backend.** The package's CPU backend (pyFFTW + numba) solves for the kernel; we apply the
  solution with FFT convolutions (:func:`apply_solution`: the same difference as SFFT's own
  subtraction step to 1e-11 ADU, at under half its CPU time for order 0 and
  without its 2(2w+1) complex work arrays of the frame's size). Its numba functions are
  closures compiled once per (padded shape, kernel half-width, orders): we keep each compiled
  set for the life of the process, and do *not* use numba's disk cache. Loading two variants
  of the same closure that were cached by different processes gave a wrong function (numba
  names its compiled functions with a per-process counter, so they collide): "descr is NULL"
  crashes, or silently wrong constants. Compiling costs about 13 CPU seconds (20-30 s on two
  busy cores) per geometry and process. Each sub-image is zero-padded by at least w + 1
  pixels, because SFFT's convolutions are circular, up to a multiple of 128 pixels so that
  images of similar sizes share one compiled geometry.
* **Noise map.** Var(D) = V_N + V_R ⊗ K(x)², approximated as (V_R ⊗ K_c²) · ΣK(x)² / ΣK_c²,
  with K_c the kernel at the sub-image centre: exact for the background-limited level
  everywhere, approximate (the kernel's *shape* change) only on top of sources.
* **Bad pixels.** Masked pixels of the convolved image are spread over the kernel footprint
  (|K_c| above 1 % of its peak); those of the other image are kept as they are; the outer
  w pixels of the sub-image, where the convolution lacks data, are bad too.
* **Significance.** The matched filter of D / noise with the whole-image PSF of the image
  whose PSF D has (:func:`psf_significance`).
* **Defaults.** A constant kernel and background per sub-image (orders 0, as STDWeb uses
  SFFT): the sub-images already follow the PSF's variation, a sub-image may hold only a few
  tens of usable stars for the (order+1)(order+2)/2 × (2w+1)² kernel weights, and each
  order costs time (on a 1000-px sub-image, once compiled: 1.3 CPU s for order 0, 2.7 s
  for order 1, 9.5 s for order 2).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import math
import os
import threading
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field
from scipy import ndimage, signal
from scipy.interpolate import RectBivariateSpline

from pipeline.subtraction.base import SubtractionInputs, SubtractionProducts
from pipeline.subtraction.engines import EngineFailed
from pipeline.subtraction.psf import PsfError
from pipeline.subtraction.significance import psf_significance
from pipeline.subtraction.stars import matched_stars, star_footprints

KERNEL_HW_FWHM = 2.0  # default half-width in FWHM of the broader image (sfft's KerHWRatio)
KERNEL_HW_LIMITS = (3, 20)  # sfft's packets clip the half-width to a similar range
MIN_STARS = 5
FOOTPRINT_LEVEL = 0.01  # kernel pixels above this fraction of the peak spread bad pixels
NOISE_GRID = 32  # pixels between the points where ΣK(x)² is evaluated
FFT_BUCKET = 128  # padded sides are multiples of this (2^7 k: fast FFT lengths)


class SfftConfig(BaseModel):
    """Parameters of the SFFT engine (every one has a default derived from the pair)."""

    model_config = {"extra": "forbid"}

    kernel_half_width: int | None = Field(
        None,
        ge=1,
        le=40,
        description="Half-width w of the (2w+1)² matching kernel, pixels; empty: "
        "2 × the larger FWHM, within 3-20.",
    )
    kernel_poly_order: int = Field(
        0, ge=0, le=3, description="Polynomial degree of the kernel's variation over a sub-image."
    )
    bg_poly_order: int = Field(
        0, ge=0, le=3, description="Polynomial degree of the differential background."
    )
    const_phot_ratio: bool = Field(
        True, description="One flux ratio (kernel sum) for the whole sub-image."
    )
    convolve: Literal["template", "science"] = Field(
        "template",
        description="Image convolved: template (difference keeps the science PSF and zero "
        "point) or science (difference has the template PSF).",
    )
    star_threshold: float = Field(
        5.0, gt=0, description="S/N threshold of the stars that constrain the kernel."
    )
    star_radius: float = Field(
        2.5, gt=0, le=10, description="Pixels within this many FWHM of those stars are fitted."
    )
    max_stars: int = Field(300, ge=MIN_STARS, le=5000, description="Stars used at most.")
    threads: int | None = Field(
        None, ge=1, le=64, description="FFT threads per sub-image; empty: one per CPU core."
    )


# --- compiled configurations ---------------------------------------------------------------

_CONFIG_LOCK = threading.Lock()
_CONFIGS: dict[tuple, tuple] = {}
_SERIAL_LOCK = threading.Lock()


@functools.cache
def _numba_is_thread_safe() -> bool:
    """numba's tbb and omp threading layers accept parallel calls from several threads at
    once; its fallback "workqueue" layer aborts the process, so calls are then serialised."""
    import numba

    layer = str(numba.config.THREADING_LAYER).lower()
    if layer == "workqueue":
        return False
    modules = {"tbb": ("tbbpool",), "omp": ("omppool",)}.get(layer, ("tbbpool", "omppool"))
    for module in modules:
        with contextlib.suppress(Exception):
            importlib.import_module(f"numba.np.ufunc.{module}")
            return True
    return False


def _sfft_config(shape: tuple[int, int], hw: int, cfg: SfftConfig, threads: int) -> tuple:
    """SFFT's compiled configuration for this geometry (compiled once per process)."""
    key = (shape, hw, cfg.kernel_poly_order, cfg.bg_poly_order, cfg.const_phot_ratio)
    with _CONFIG_LOCK, _sfft_errors():
        if key not in _CONFIGS:
            import numba
            from sfft.sfftcore.SFFTConfigure import SingleSFFTConfigure

            set_num_threads = numba.set_num_threads
            try:
                _CONFIGS[key] = SingleSFFTConfigure.SSC(
                    NX=shape[1],  # SFFT's first axis is x: it gets the transposed arrays
                    NY=shape[0],
                    KerHW=hw,
                    KerPolyOrder=cfg.kernel_poly_order,
                    BGPolyOrder=cfg.bg_poly_order,
                    ConstPhotRatio=cfg.const_phot_ratio,
                    BACKEND_4SUBTRACT="Numpy",
                    NUM_CPU_THREADS_4SUBTRACT=threads,
                    NUMBA_CACHE=False,  # see the module docstring
                    VERBOSE_LEVEL=0,
                )
            finally:
                # sfft 1.7.3 assigns an int over numba.set_num_threads; put the function back
                numba.set_num_threads = set_num_threads
        return _CONFIGS[key]


def _solve(conv: np.ndarray, ref: np.ndarray, config, threads: int) -> np.ndarray:
    """SFFT's solution (kernel and background coefficients) for ref ≈ K ⊗ conv + B.

    Arrays are given in numpy (y, x) order; SFFT works on (x, y), so they are transposed
    and the solution's polynomial coordinates are then (x, y) like FITS.
    """
    from sfft.sfftcore.SFFTSubtract import ElementalSFFTSubtract

    lock = contextlib.nullcontext() if _numba_is_thread_safe() else _SERIAL_LOCK
    with lock, _sfft_errors():
        solution, _ = ElementalSFFTSubtract.ESS(
            PixA_I=np.ascontiguousarray(conv.T),
            PixA_J=np.ascontiguousarray(ref.T),
            SFFTConfig=config,
            SFFTSolution=None,
            Subtract=False,
            BACKEND_4SUBTRACT="Numpy",
            NUM_CPU_THREADS_4SUBTRACT=threads,
            VERBOSE_LEVEL=0,
        )
    if not np.all(np.isfinite(solution)):
        raise EngineFailed("SFFT's kernel solution is not finite (degenerate star set?)")
    return solution


def apply_solution(conv: np.ndarray, solution: np.ndarray, config) -> np.ndarray:
    """K ⊗ conv + B on the padded frame, from SFFT's solution (numpy (y, x) order).

    SFFT's model is Σ_ij K_ij ⊗ (x^i y^j · conv) + Σ_pq b_pq x^p y^q with x, y its scaled
    coordinates ((index + 1) / size). We evaluate it with one FFT convolution per kernel
    term, which gives what SFFT's own subtraction step gives (to rounding) without its
    (2w+1) × 2 complex work arrays of the frame's size.
    """
    from sfft.utils.SFFTSolutionReader import Read_SFFTSolution, SVKDict_SFFT2ST

    p = config[0]
    order = p["DK"]
    sfft_basis = Read_SFFTSolution().FromArray(
        Solution=solution, N0=p["N0"], N1=p["N1"], L0=p["L0"], L1=p["L1"], DK=order, Fpq=p["Fpq"]
    )
    kernels = SVKDict_SFFT2ST.convert(DKx=order, DKy=order, Sfft_dict=sfft_basis)
    ny, nx = conv.shape
    x = (np.arange(nx) + 1.0) / p["N0"]
    y = (np.arange(ny) + 1.0) / p["N1"]
    out = np.zeros(conv.shape)
    for (i, j), kernel in kernels.items():
        term = conv * (x[None, :] ** i * y[:, None] ** j) if i or j else conv
        out += signal.fftconvolve(term, kernel.T, mode="same")  # SFFT indexes (dx, dy)
    background = solution[p["Fijab"] :]
    terms = [(a, b) for a in range(p["DB"] + 1) for b in range(p["DB"] + 1 - a)]
    for coeff, (a, b) in zip(background, terms, strict=True):
        out += coeff * (x[None, :] ** a * y[:, None] ** b)
    return out


@contextlib.contextmanager
def _sfft_errors():
    """sfft raises bare Exceptions ('MeLOn ERROR: ...') and numpy's LinAlgError."""
    try:
        yield
    except np.linalg.LinAlgError as exc:
        raise EngineFailed(f"SFFT's linear system is singular: {exc}") from exc
    except Exception as exc:
        if type(exc) is Exception:
            raise EngineFailed(f"SFFT failed: {exc}") from exc
        raise


# --- the kernel from the solution ------------------------------------------------------------


def kernels_at(solution: np.ndarray, config: tuple, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Matching kernels (N, 2w+1, 2w+1) in numpy (dy, dx) order at 0-based padded (x, y)."""
    from sfft.utils.SFFTSolutionReader import Realize_MatchingKernel

    p = config[0]
    xy = np.column_stack([np.asarray(x, float) + 1.0, np.asarray(y, float) + 1.0])
    stack = Realize_MatchingKernel(xy).FromArray(
        Solution=solution, N0=p["N0"], N1=p["N1"], L0=p["L0"], L1=p["L1"], DK=p["DK"], Fpq=p["Fpq"]
    )
    return np.transpose(stack, (0, 2, 1))  # SFFT's kernels are indexed (dx, dy)


def _kernel_power(solution, config, shape, pad) -> np.ndarray:
    """ΣK(x)² at every pixel of the (unpadded) sub-image, interpolated from a coarse grid."""
    ny, nx = shape
    gy = np.unique(np.r_[np.arange(0, ny, NOISE_GRID), ny - 1]).astype(float)
    gx = np.unique(np.r_[np.arange(0, nx, NOISE_GRID), nx - 1]).astype(float)
    yy, xx = np.meshgrid(gy, gx, indexing="ij")
    kernels = kernels_at(solution, config, xx.ravel() + pad, yy.ravel() + pad)
    power = (kernels**2).sum(axis=(1, 2)).reshape(len(gy), len(gx))
    if len(gy) < 2 or len(gx) < 2:
        return np.full(shape, float(power.mean()))
    spline = RectBivariateSpline(gy, gx, power, kx=min(3, len(gy) - 1), ky=min(3, len(gx) - 1))
    return spline(np.arange(ny), np.arange(nx))


# --- the engine -------------------------------------------------------------------------------


def _half_width(inputs: SubtractionInputs, cfg: SfftConfig) -> int:
    if cfg.kernel_half_width is not None:
        return int(cfg.kernel_half_width)
    fwhm = max(inputs.image_fwhm, inputs.template_fwhm)
    return int(np.clip(math.ceil(KERNEL_HW_FWHM * fwhm), *KERNEL_HW_LIMITS))


def _bucket(n: int) -> int:
    """Padded side: a multiple of FFT_BUCKET, so that few geometries need compiling."""
    return FFT_BUCKET * math.ceil(n / FFT_BUCKET)


def _padded(image: np.ndarray, shape: tuple[int, int], pad: int) -> np.ndarray:
    out = np.zeros(shape)
    out[pad : pad + image.shape[0], pad : pad + image.shape[1]] = image
    return out


def sfft_subtract(
    inputs: SubtractionInputs, config: SfftConfig | None = None
) -> SubtractionProducts:
    """Subtract ``inputs.template`` from ``inputs.image`` with SFFT (see the module docstring).

    Raises :class:`PsfError` when fewer than :data:`MIN_STARS` stars constrain the kernel.
    """
    cfg = config or SfftConfig()
    threads = cfg.threads or max(1, os.cpu_count() or 1)
    hw = _half_width(inputs, cfg)
    fwhm = max(inputs.image_fwhm, inputs.template_fwhm)
    radius = cfg.star_radius * fwhm
    stars = matched_stars(inputs, cfg.star_threshold, cfg.max_stars, border=radius + hw)
    if len(stars) < MIN_STARS:
        raise PsfError(
            f"only {len(stars)} clean stars common to image and template in this sub-image "
            f"(SFFT needs {MIN_STARS}): use larger sub-images or a lower star threshold"
        )
    ny, nx = inputs.image.shape
    pad = hw + 1  # SFFT convolves circularly: keep the wrapped edge out of the image
    shape = (_bucket(ny + 2 * pad), _bucket(nx + 2 * pad))
    bad = inputs.image_bad | inputs.template_bad
    sci = _padded(np.where(bad, 0.0, inputs.image), shape, pad)
    tpl = _padded(np.where(bad, 0.0, inputs.template), shape, pad)
    fit = _padded(star_footprints(inputs.image.shape, stars, radius) & ~bad, shape, pad) > 0
    science_convolved = cfg.convolve == "science"
    conv, ref = (sci, tpl) if science_convolved else (tpl, sci)
    compiled = _sfft_config(shape, hw, cfg, threads)
    solution = _solve(conv * fit, ref * fit, compiled, threads)
    raw = ref - apply_solution(conv, solution, compiled)

    inner = (slice(pad, pad + ny), slice(pad, pad + nx))
    kc = kernels_at(solution, compiled, [pad + nx / 2], [pad + ny / 2])[0]
    ksum = float(kc.sum())
    power = _kernel_power(solution, compiled, (ny, nx), pad)
    s_n, s_r = float(inputs.image_noise), float(inputs.template_noise)
    var_n = _padded(np.where(bad, s_n**2, inputs.image_var), shape, pad)
    var_r = _padded(np.where(bad, s_r**2, inputs.template_var), shape, pad)
    var_conv, var_ref = (var_n, var_r) if science_convolved else (var_r, var_n)
    through = signal.fftconvolve(var_conv, kc**2, mode="same")[inner] * power / (kc**2).sum()
    variance = np.maximum(through, 0.0) + var_ref[inner]
    if science_convolved:
        difference = -raw[inner] / ksum  # (K ⊗ N + B − R) / ΣK: science flux units
        convolved = inputs.image - difference  # what the image was, in effect, compared with
        variance = variance / ksum**2
        conv_bad = inputs.image_bad
        psf = inputs.template_psf
    else:
        difference = raw[inner]
        convolved = inputs.image - difference
        conv_bad = inputs.template_bad
        psf = inputs.image_psf
    footprint = np.abs(kc) > FOOTPRINT_LEVEL * np.abs(kc).max()
    spread = ndimage.binary_dilation(conv_bad, structure=footprint) if conv_bad.any() else conv_bad
    out_bad = spread | bad
    out_bad[:hw], out_bad[-hw:], out_bad[:, :hw], out_bad[:, -hw:] = True, True, True, True
    noise = np.sqrt(variance)
    fwhm_d = inputs.template_fwhm if science_convolved else inputs.image_fwhm
    significance = psf_significance(difference, noise, out_bad, psf, fwhm_d)
    background = solution[compiled[0]["Fijab"] :]
    info = {
        "sfft_kernel_half_width": hw,
        "sfft_stars": len(stars),
        "sfft_kernel_sum": round(ksum, 5),
        "sfft_background": round(float(background[0]), 4),
        "sfft_convolved": cfg.convolve,
    }
    return SubtractionProducts(
        difference=difference,
        convolved=convolved,
        noise=noise,
        significance=significance,
        bad=out_bad,
        info=info,
    )
