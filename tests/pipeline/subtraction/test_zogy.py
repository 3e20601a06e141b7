"""ZOGY's half-plane (rfft) arithmetic against the full-plane equations of its docstring."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import fft

from pipeline.subtraction import zogy
from pipeline.subtraction.base import SubtractionInputs


def _gaussian(half: int, fwhm: float) -> np.ndarray:
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    psf = np.exp(-(xx**2 + yy**2) / (2 * (fwhm / 2.3548) ** 2))
    return psf / psf.sum()


def _pair(shape, rng):
    """Noise images with a few stars, their variance maps and PSFs (no masked pixels)."""
    psf_n, psf_r = _gaussian(10, 3.0), _gaussian(10, 2.2)
    image = rng.normal(0, 20.0, shape)
    template = rng.normal(0, 8.0, shape)
    for y, x, flux in ((40, 50, 2e4), (100, 130, 8e3), (150, 60, 5e3)):
        image[y - 10 : y + 11, x - 10 : x + 11] += flux * psf_n
        template[y - 10 : y + 11, x - 10 : x + 11] += 2.5 * flux * psf_r
    return SubtractionInputs(
        image=image,
        template=template,
        image_bad=np.zeros(shape, bool),
        template_bad=np.zeros(shape, bool),
        image_var=np.full(shape, 400.0) + np.clip(image, 0, None) / 2.0,
        template_var=np.full(shape, 64.0) + np.clip(template, 0, None) / 4.0,
        image_fwhm=3.0,
        template_fwhm=2.2,
        image_noise=20.0,
        template_noise=8.0,
        flux_ratio=2.5,
        image_psf=psf_n,
        template_psf=psf_r,
    )


def _full_plane(inputs, psf_n, psf_r, shape, pad):
    """The docstring's equations with complex full-plane FFTs in double precision."""
    f_n, f_r, s_n, s_r = 1.0, inputs.flux_ratio, inputs.image_noise, inputs.template_noise

    def embed(a):
        out = np.zeros(shape)
        out[pad : pad + a.shape[0], pad : pad + a.shape[1]] = a
        return out

    def psf_hat(p):
        full = np.zeros(shape)
        full[: p.shape[0], : p.shape[1]] = p
        return fft.fft2(np.roll(full, (-(p.shape[0] // 2),) * 2, axis=(0, 1)))

    def conv(a_hat, k_hat):
        return fft.ifft2(a_hat * k_hat).real

    def var_through(var, k_hat):
        return conv(fft.fft2(var), fft.fft2(fft.ifft2(k_hat).real ** 2))

    new, ref = embed(inputs.image), embed(inputs.template)
    var_n, var_r = embed(inputs.image_var), embed(inputs.template_var)
    pn, pr = psf_hat(psf_n), psf_hat(psf_r)
    den2 = s_n**2 * f_r**2 * np.abs(pr) ** 2 + s_r**2 * f_n**2 * np.abs(pn) ** 2
    kn = f_r**2 * f_n * np.conj(pn) * np.abs(pr) ** 2 / den2
    kr = f_r * f_n**2 * np.conj(pr) * np.abs(pn) ** 2 / den2
    score = conv(fft.fft2(new), kn) - conv(fft.fft2(ref), kr)
    match = (f_n / f_r) * pn * np.conj(pr) / (np.abs(pr) ** 2 + zogy.WIENER_FLOOR)
    convolved = conv(fft.fft2(ref), match)
    with np.errstate(invalid="ignore", divide="ignore"):  # the zero padding has no variance
        scorr = score / np.sqrt(var_through(var_n, kn) + var_through(var_r, kr))
        noise = np.sqrt(var_n + var_through(var_r, match))
    crop = (slice(pad, pad + inputs.image.shape[0]), slice(pad, pad + inputs.image.shape[1]))
    per_flux = float(np.mean(kn * pn).real)
    return new[crop] - convolved[crop], noise[crop], scorr[crop], per_flux


# the padded FFT planes have an even and an odd width: irfft2 must be told the shape
@pytest.mark.parametrize(
    ("shape", "fft_shape"), [((200, 230), (243, 288)), ((201, 183), (243, 225))]
)
def test_half_plane_matches_full_plane(shape, fft_shape, monkeypatch):
    inputs = _pair(shape, np.random.default_rng(4))
    # use the given PSFs, so that both sides work from the same stamps
    monkeypatch.setattr(
        zogy, "chunk_psfs", lambda i: (i.image_psf, i.template_psf, {"image_psf_stars": 0})
    )
    products = zogy.zogy_subtract(inputs)
    pad = max(21, 2 * zogy.stamp_half_size(3.0))
    assert zogy._padded_shape(shape, pad) == fft_shape
    diff, noise, scorr, per_flux = _full_plane(
        inputs, inputs.image_psf, inputs.template_psf, fft_shape, pad
    )
    assert np.max(np.abs(products.difference - diff)) < 1e-8 * np.abs(diff).max()
    # variances run in single precision: 1e-5 relative is far below any noise figure
    assert np.max(np.abs(products.noise / noise - 1)) < 1e-5
    assert np.max(np.abs(products.significance - scorr)) < 1e-4
    assert products.info["score_per_flux"] == pytest.approx(per_flux, rel=1e-10)
