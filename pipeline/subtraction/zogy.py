"""ZOGY image subtraction (Zackay, Ofek & Gal-Yam 2016, ApJ 830, 27), our implementation.

With background-subtracted images N (science) and R (template) on one grid, their PSFs
P_n, P_r (unit sum), flux scales F_n, F_r and background noises σ_n, σ_r, in Fourier
space (hats; den² = σ_n² F_r² |P̂_r|² + σ_r² F_n² |P̂_n|²):

* proper difference (eq. 13)   D̂ = (F_r P̂_r N̂ − F_n P̂_n R̂) / den
* its PSF (eq. 14)             P̂_d = F_r F_n P̂_r P̂_n / (F_d den),
  with F_d = F_r F_n / sqrt(σ_n² F_r² + σ_r² F_n²)
* matched filter (eq. 17)      Ŝ = F_d D̂ conj(P̂_d) = k̂_n N̂ − k̂_r R̂ with
  k̂_n = F_r² F_n conj(P̂_n) |P̂_r|² / den² and k̂_r = F_r F_n² conj(P̂_r) |P̂_n|² / den² (eqs. 28-29)
* corrected significance (eq. 25) S_corr = S / sqrt(V_n ⊗ k_n² + V_r ⊗ k_r²), where V_n, V_r are
  the per-pixel variances including the sources' own Poisson noise (the astrometric-noise term
  of eq. 30 is left out: the reprojected template is aligned to ≲0.1 px, and the dipole test
  of :mod:`pipeline.subtraction.dipole` deals with what remains).

Detection uses S_corr. For photometry, cut-outs and the shape prefilter we also form the
difference with the *science* PSF, D_n = N − (F_n/F_r) K ⊗ R with K̂ = P̂_n/P̂_r — the
proper difference re-convolved by P̂_n/P̂_d. The division is regularised (Wiener, with a
floor :data:`WIENER_FLOOR` on |P̂_r|²) so it stays stable when the template seeing is worse.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft_module
from scipy import ndimage

from pipeline.subtraction.base import SubtractionInputs, SubtractionProducts
from pipeline.subtraction.psf import PsfError, measure_psf, psf_fwhm, stamp_half_size

WIENER_FLOOR = 1e-4  # relative to |P̂_r(0)|² = 1
# Variance maps are smooth and positive and only set the noise level: their convolutions
# run in single precision (half the FFT time; relative error ~1e-6), the pixels' in double.
VARIANCE_DTYPE = np.float32
SQUARED_KERNEL_FLOOR = 1e-15  # relative; smaller kernel² values add nothing to a variance
MIN_CHUNK_STARS = 5


def _padded_shape(shape: tuple[int, int], pad: int) -> tuple[int, int]:
    # sizes whose prime factors are small keep the FFTs fast (scipy's next_fast_len)
    return tuple(sfft_module.next_fast_len(n + 2 * pad, real=True) for n in shape)


def _embed(image: np.ndarray, shape: tuple[int, int], pad: int, dtype=float) -> np.ndarray:
    out = np.zeros(shape, dtype)
    out[pad : pad + image.shape[0], pad : pad + image.shape[1]] = image
    return out


# All images are real, so their transforms are Hermitian: the half-plane transforms of
# rfft2/irfft2 carry everything at half the cost and memory of fft2/ifft2.


def _rfft(array: np.ndarray) -> np.ndarray:
    return sfft_module.rfft2(array)


def _irfft(hat: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return sfft_module.irfft2(hat, s=shape)


def _psf_hat(psf: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Half-plane FFT of a centred PSF stamp placed with its centre at pixel (0, 0)."""
    full = np.zeros(shape)
    h = psf.shape[0] // 2
    full[: psf.shape[0], : psf.shape[1]] = psf
    full = np.roll(full, (-h, -h), axis=(0, 1))
    return _rfft(full)


def _squared_kernel_hat(kernel_hat: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Transform of kernel² (single precision), kernel being the real-space form of
    ``kernel_hat``: the variance of (kernel ⊗ image) for independent pixels is
    variance ⊗ kernel².
    """
    squared = _irfft(kernel_hat, shape) ** 2
    # the far wings would be denormal in single precision, which slows FFTs many times
    squared[squared < SQUARED_KERNEL_FLOOR * squared.max()] = 0.0
    return _rfft(squared.astype(VARIANCE_DTYPE))


def _abs2(hat: np.ndarray) -> np.ndarray:
    return hat.real**2 + hat.imag**2


def _full_plane_mean(half: np.ndarray, shape: tuple[int, int]) -> float:
    """Mean over the full FFT plane of a Hermitian-even quantity given on the half plane."""
    weight = np.full(half.shape[1], 2.0)
    weight[0] = 1.0
    if shape[1] % 2 == 0:
        weight[-1] = 1.0
    return float((half * weight).sum() / (shape[0] * shape[1]))


def chunk_psfs(inputs: SubtractionInputs) -> tuple[np.ndarray, np.ndarray, dict]:
    """PSFs of both images measured in this (sub-)image, or the whole-image ones."""
    info: dict = {}
    psfs = []
    for name, data, bad, noise, fwhm, sat, fallback in (
        (
            "image",
            inputs.image,
            inputs.image_bad,
            inputs.image_noise,
            inputs.image_fwhm,
            inputs.image_saturation,
            inputs.image_psf,
        ),
        (
            "template",
            inputs.template,
            inputs.template_bad,
            inputs.template_noise,
            inputs.template_fwhm,
            inputs.template_saturation,
            inputs.template_psf,
        ),
    ):
        try:
            psf, n = measure_psf(data, bad, noise, fwhm, sat)
            info[f"{name}_psf_stars"] = n
        except PsfError:
            if fallback is None:
                raise
            psf = fallback
            info[f"{name}_psf_stars"] = 0  # whole-image PSF used
        psfs.append(psf)
    return (*_common_size(*psfs), info)


def _common_size(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    size = max(a.shape[0], b.shape[0])

    def grow(p):
        extra = (size - p.shape[0]) // 2
        return np.pad(p, extra) if extra else p

    return grow(a), grow(b)


def zogy_subtract(inputs: SubtractionInputs) -> SubtractionProducts:
    """Subtract ``inputs.template`` from ``inputs.image`` with ZOGY.

    Returns the science-PSF difference, the convolved template, the difference noise
    map and S_corr (see the module docstring). Raises :class:`PsfError` when a PSF
    cannot be measured.
    """
    psf_n, psf_r, info = chunk_psfs(inputs)
    f_n, f_r = 1.0, float(inputs.flux_ratio)
    s_n, s_r = float(inputs.image_noise), float(inputs.template_noise)
    pad = max(psf_n.shape[0], 2 * stamp_half_size(max(inputs.image_fwhm, inputs.template_fwhm)))
    shape = _padded_shape(inputs.image.shape, pad)
    bad = inputs.image_bad | inputs.template_bad
    new = _embed(np.where(bad, 0.0, inputs.image), shape, pad)
    ref = _embed(np.where(bad, 0.0, inputs.template), shape, pad)
    var_n = _embed(np.where(bad, s_n**2, inputs.image_var), shape, pad, VARIANCE_DTYPE)
    var_r = _embed(np.where(bad, s_r**2, inputs.template_var), shape, pad, VARIANCE_DTYPE)

    pn, pr = _psf_hat(psf_n, shape), _psf_hat(psf_r, shape)
    n_hat, r_hat = _rfft(new), _rfft(ref)
    abs2_n, abs2_r = _abs2(pn), _abs2(pr)
    den2 = s_n**2 * f_r**2 * abs2_r + s_r**2 * f_n**2 * abs2_n
    den2 = np.maximum(den2, 1e-12 * den2.max())
    kn = (f_r**2 * f_n) * np.conj(pn) * (abs2_r / den2)
    kr = (f_r * f_n**2) * np.conj(pr) * (abs2_n / den2)
    # S = k_n ⊗ N − k_r ⊗ R and its variance V_n ⊗ k_n² + V_r ⊗ k_r², one inverse FFT each
    score = _irfft(n_hat * kn - r_hat * kr, shape)
    var_r_hat = _rfft(var_r)
    score_var = _irfft(
        _rfft(var_n) * _squared_kernel_hat(kn, shape) + var_r_hat * _squared_kernel_hat(kr, shape),
        shape,
    )
    scorr = score / np.sqrt(np.maximum(score_var, 1e-30))
    # flux of a unit point source in N as seen by S: (k_n ⊗ P_n) at its centre, i.e. the
    # mean of k̂_n P̂_n over the full plane (the half plane's columns counted with their
    # mirror images; the first and, for even widths, the last column have none)
    score_per_flux = _full_plane_mean((kn * pn).real, shape)

    match = (f_n / f_r) * pn * np.conj(pr) / (abs2_r + WIENER_FLOOR)
    convolved = _irfft(r_hat * match, shape)
    difference = new - convolved
    diff_var = var_n + _irfft(var_r_hat * _squared_kernel_hat(match, shape), shape)

    crop = (slice(pad, pad + inputs.image.shape[0]), slice(pad, pad + inputs.image.shape[1]))
    # masked pixels spread over the kernel footprint
    grow = max(3, int(np.ceil(max(inputs.image_fwhm, inputs.template_fwhm))))
    spread = ndimage.binary_dilation(bad, iterations=grow) if bad.any() else bad
    info.update(
        psf_fwhm_image=round(psf_fwhm(psf_n), 3),
        psf_fwhm_template=round(psf_fwhm(psf_r), 3),
        score_per_flux=score_per_flux,
    )
    return SubtractionProducts(
        difference=difference[crop],
        convolved=convolved[crop],
        noise=np.sqrt(np.maximum(diff_var[crop], 0.0)),
        significance=scorr[crop],
        bad=spread,
        info=info,
    )
