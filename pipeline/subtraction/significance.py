"""Point-source significance of a difference image, for engines that do not give one.

For a difference D with per-pixel noise σ and a point source of PSF P, the optimal
(matched-filter) estimate of the flux at x and its S/N are

    S(x) = Σ_u P(u) D(x+u) / σ²(x+u)  /  sqrt(Σ_u P(u)² / σ²(x+u)),

which is the statistic ZOGY's S_corr also approximates. Masked pixels get zero weight. The
noise of kernel-convolved images is slightly correlated, which this treats as independent:
the map is then a little optimistic where the convolved image's noise dominates.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from pipeline.detection import gaussian_kernel


def psf_significance(
    difference: np.ndarray,
    noise: np.ndarray,
    bad: np.ndarray,
    psf: np.ndarray | None,
    fwhm: float,
) -> np.ndarray:
    """Matched-filter S/N map of ``difference`` for the PSF (a Gaussian of ``fwhm`` if None)."""
    kernel = np.asarray(psf if psf is not None else gaussian_kernel(fwhm), float)
    kernel = kernel[::-1, ::-1] / kernel.sum()  # correlation with P as a convolution
    weight = np.where(bad | ~(noise > 0), 0.0, 1.0 / np.where(noise > 0, noise, 1.0) ** 2)
    num = signal.fftconvolve(np.where(bad, 0.0, difference) * weight, kernel, mode="same")
    den = signal.fftconvolve(weight, kernel**2, mode="same")
    return num / np.sqrt(np.maximum(den, 1e-30))
