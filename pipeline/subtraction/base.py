"""What every subtraction engine takes and returns, so the step is engine-agnostic.

Both images arrive background-subtracted, on the same pixel grid (the template has
been reprojected onto the science image), with boolean masks of unusable pixels and
per-pixel variance maps (background + source noise). An engine returns the difference
in *science-image units with the science PSF*, so that the science image's apertures,
zero point and shape prefilter apply to it unchanged, plus the template convolved to
the science PSF and flux scale, the noise map of the difference and, when the engine
has one, a significance map for detection.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SubtractionInputs:
    """One (sub-)image pair ready for subtraction.

    Attributes
    ----------
    image, template : numpy.ndarray
        Background-subtracted science and template pixels on the same grid.
    image_bad, template_bad : numpy.ndarray of bool
        Pixels with no usable data in each image.
    image_var, template_var : numpy.ndarray
        Per-pixel variance (ADU² of each image).
    image_fwhm, template_fwhm : float
        Seeing FWHM in pixels (sets PSF stamp and kernel sizes).
    image_noise, template_noise : float
        Background RMS of each image.
    flux_ratio : float
        Template flux / science flux of the same star (after reprojection).
    image_saturation, template_saturation : float or None
        Levels above which stars are not used for PSFs.
    """

    image: np.ndarray
    template: np.ndarray
    image_bad: np.ndarray
    template_bad: np.ndarray
    image_var: np.ndarray
    template_var: np.ndarray
    image_fwhm: float
    template_fwhm: float
    image_noise: float
    template_noise: float
    flux_ratio: float
    image_saturation: float | None = None
    template_saturation: float | None = None
    image_psf: np.ndarray | None = None  # whole-image PSFs: fallback for sparse chunks
    template_psf: np.ndarray | None = None

    def crop(self, ys: slice, xs: slice) -> SubtractionInputs:
        """The same pair restricted to a sub-image (global PSFs kept as fallback)."""
        return SubtractionInputs(
            self.image[ys, xs],
            self.template[ys, xs],
            self.image_bad[ys, xs],
            self.template_bad[ys, xs],
            self.image_var[ys, xs],
            self.template_var[ys, xs],
            self.image_fwhm,
            self.template_fwhm,
            self.image_noise,
            self.template_noise,
            self.flux_ratio,
            self.image_saturation,
            self.template_saturation,
            self.image_psf,
            self.template_psf,
        )


@dataclass
class SubtractionProducts:
    """What an engine returns for one (sub-)image.

    Attributes
    ----------
    difference : numpy.ndarray
        Science minus matched template, science units and PSF.
    convolved : numpy.ndarray
        The template matched to the science PSF and flux scale.
    noise : numpy.ndarray
        1σ noise map of ``difference``.
    significance : numpy.ndarray or None
        Matched-filter significance of a point source at each pixel (ZOGY S_corr).
    bad : numpy.ndarray of bool
        Pixels whose difference is not usable (masked input spread by the kernels).
    info : dict
        Plain numbers describing the solution (PSF widths, star counts...).
    """

    difference: np.ndarray
    convolved: np.ndarray
    noise: np.ndarray
    significance: np.ndarray | None
    bad: np.ndarray
    info: dict = field(default_factory=dict)
