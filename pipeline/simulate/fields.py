"""Smooth functions of the pixel position: zero point, PSF shape and sky level.

Each model is a small picklable object that is callable on pixel coordinates
(0-based, scalars or arrays) and knows how to describe itself as plain numbers
for ``truth.json``. Positions are normalised as ``u = (x - xc) / (nx / 2)`` and
``v = (y - yc) / (ny / 2)`` so that the image spans ``[-1, 1]`` on both axes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

GAUSSIAN_FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
ZP_TERMS = ("1", "u", "v", "u^2", "u*v", "v^2")


@dataclass(frozen=True)
class FieldFrame:
    """Maps pixel coordinates onto the normalised square ``[-1, 1]^2``."""

    nx: int
    ny: int

    def normalise(self, x: ArrayLike, y: ArrayLike) -> tuple[NDArray, NDArray]:
        u = (np.asarray(x, float) - (self.nx - 1) / 2.0) / (self.nx / 2.0)
        v = (np.asarray(y, float) - (self.ny - 1) / 2.0) / (self.ny / 2.0)
        return u, v

    def grid(self, step: int) -> tuple[NDArray, NDArray]:
        """Pixel-centre coordinates of a coarse grid with ``step`` pixels between nodes."""
        xs = np.arange(step / 2.0 - 0.5, self.nx, step)
        ys = np.arange(step / 2.0 - 0.5, self.ny, step)
        return np.meshgrid(xs, ys)


@dataclass(frozen=True)
class ZeroPointModel:
    """ZP(x, y) = sum_k c_k * term_k(u, v), with the terms of :data:`ZP_TERMS`."""

    frame: FieldFrame
    coeffs: tuple[float, ...]

    def __call__(self, x: ArrayLike, y: ArrayLike) -> NDArray:
        u, v = self.frame.normalise(x, y)
        c = self.coeffs
        return c[0] + c[1] * u + c[2] * v + c[3] * u * u + c[4] * u * v + c[5] * v * v

    def on_grid(self, step: int = 32) -> NDArray:
        return self(*self.frame.grid(step))

    def describe(self) -> dict:
        return {
            "terms": list(ZP_TERMS),
            "coeffs": [float(c) for c in self.coeffs],
            "u": f"(x - {(self.frame.nx - 1) / 2}) / {self.frame.nx / 2}",
            "v": f"(y - {(self.frame.ny - 1) / 2}) / {self.frame.ny / 2}",
        }


def make_zero_point_model(
    frame: FieldFrame, zp_center: float, peak_to_peak: float, rng: np.random.Generator
) -> ZeroPointModel:
    """A random smooth 2nd-order ZP surface with ZP(centre) = zp_center.

    The shape is random; its peak-to-peak over the image is scaled to
    ``peak_to_peak`` mag (vignetting-like patterns are of this size).
    """
    shape = rng.normal(0.0, 1.0, 5)
    shape[2:] -= np.array([0.6, 0.0, 0.6])  # mostly a fall-off towards the edges
    unit = ZeroPointModel(frame, (0.0, *shape))
    u, v = frame.grid(max(1, min(frame.nx, frame.ny) // 128))
    values = unit(u, v)
    span = float(values.max() - values.min())
    scale = peak_to_peak / span if span > 0 else 0.0
    return ZeroPointModel(frame, (float(zp_center), *(float(s * scale) for s in shape)))


@dataclass(frozen=True)
class PSFField:
    """FWHM and elongation of the PSF as smooth functions of position.

    ``fwhm`` is the geometric mean ``sqrt(fwhm_major * fwhm_minor)`` (the FWHM of
    the circle with the same half-maximum area). It grows quadratically with the
    distance from the centre, from ``fwhm_center`` to ``fwhm_corner`` at the
    corners. The elongation ``1 - b/a`` is the length of the vector
    ``e_center * (cos 2t0, sin 2t0) + (e_corner - e_center) * rho^2 (cos 2phi, sin 2phi)``
    (phi the polar angle of the position, t0 = 30 deg), i.e. radial at the corners.
    """

    frame: FieldFrame
    kind: str
    beta: float
    fwhm_center: float
    fwhm_corner: float
    ellipticity_center: float
    ellipticity_corner: float
    theta_center_deg: float = 30.0

    def _rho2_and_angle(self, x: ArrayLike, y: ArrayLike) -> tuple[NDArray, NDArray, NDArray]:
        u, v = self.frame.normalise(x, y)
        return (u * u + v * v) / 2.0, (u * u - v * v) / 2.0, u * v

    def fwhm(self, x: ArrayLike, y: ArrayLike) -> NDArray:
        rho2, _, _ = self._rho2_and_angle(x, y)
        return self.fwhm_center + (self.fwhm_corner - self.fwhm_center) * rho2

    def shape(self, x: ArrayLike, y: ArrayLike) -> tuple[NDArray, NDArray, NDArray]:
        """Return (fwhm, ellipticity 1-b/a, position angle of the major axis in rad from +x)."""
        rho2, c2, s2 = self._rho2_and_angle(x, y)
        t0 = np.deg2rad(self.theta_center_deg)
        de = self.ellipticity_corner - self.ellipticity_center
        e1 = self.ellipticity_center * np.cos(2 * t0) + de * c2
        e2 = self.ellipticity_center * np.sin(2 * t0) + de * s2
        ell = np.hypot(e1, e2)
        theta = 0.5 * np.arctan2(e2, e1)
        fwhm = self.fwhm_center + (self.fwhm_corner - self.fwhm_center) * rho2
        return fwhm, ell, theta

    def axes_scale(self, x: ArrayLike, y: ArrayLike) -> tuple[NDArray, NDArray, NDArray]:
        """Profile scale lengths along the major and minor axes (sigma or alpha) and the angle."""
        fwhm, ell, theta = self.shape(x, y)
        q = 1.0 - ell
        fwhm_major, fwhm_minor = fwhm / np.sqrt(q), fwhm * np.sqrt(q)
        per = self.fwhm_per_scale
        return fwhm_major / per, fwhm_minor / per, theta

    @property
    def fwhm_per_scale(self) -> float:
        """FWHM in units of the profile scale (sigma for Gaussian, alpha for Moffat)."""
        if self.kind == "gaussian":
            return float(GAUSSIAN_FWHM_PER_SIGMA)
        return float(2.0 * np.sqrt(2.0 ** (1.0 / self.beta) - 1.0))

    def encircled_fraction(self, radius: float, fwhm: float) -> float:
        """Fraction of a round PSF of this FWHM inside ``radius`` (pixel integration ignored)."""
        scale = fwhm / self.fwhm_per_scale
        if self.kind == "gaussian":
            return float(1.0 - np.exp(-0.5 * (radius / scale) ** 2))
        return float(1.0 - (1.0 + (radius / scale) ** 2) ** (1.0 - self.beta))

    def on_grid(self, step: int = 32) -> NDArray:
        return self.fwhm(*self.frame.grid(step))

    def describe(self) -> dict:
        return {
            "kind": self.kind,
            "beta": float(self.beta) if self.kind == "moffat" else None,
            "fwhm_center": float(self.fwhm_center),
            "fwhm_corner": float(self.fwhm_corner),
            "ellipticity_center": float(self.ellipticity_center),
            "ellipticity_corner": float(self.ellipticity_corner),
            "theta_center_deg": float(self.theta_center_deg),
            "fwhm_definition": "sqrt(fwhm_major * fwhm_minor), before pixel integration",
        }


@dataclass(frozen=True)
class SkyBackground:
    """Sky level with a gentle linear gradient: S(x, y) = level * (1 + g_u u + g_v v)."""

    frame: FieldFrame
    level: float
    gradient_u: float
    gradient_v: float

    def __call__(self, x: ArrayLike, y: ArrayLike) -> NDArray:
        u, v = self.frame.normalise(x, y)
        return self.level * (1.0 + self.gradient_u * u + self.gradient_v * v)

    def image(self) -> NDArray:
        xs = np.arange(self.frame.nx, dtype=float)[None, :]
        ys = np.arange(self.frame.ny, dtype=float)[:, None]
        return self(xs, ys)

    def describe(self) -> dict:
        return {
            "level": float(self.level),
            "gradient_u": float(self.gradient_u),
            "gradient_v": float(self.gradient_v),
        }


def make_sky_background(
    frame: FieldFrame, level: float, relative_gradient: float, rng: np.random.Generator
) -> SkyBackground:
    """A sky plane whose total relative change across the field is ``relative_gradient``."""
    angle = rng.uniform(0, 2 * np.pi)
    half = relative_gradient / 2.0
    return SkyBackground(frame, float(level), half * np.cos(angle), half * np.sin(angle))
