"""Galaxies: elliptical Sersic profiles convolved with the local PSF.

Each galaxy is integrated over pixels by 5x5 sub-sampling inside a stamp of
about 8 effective radii, convolved (FFT) with the pixel-integrated PSF at its
position, and scaled so that the flux deposited equals the requested flux.
"""

from __future__ import annotations

import numpy as np
from astropy.table import Table
from numpy.typing import NDArray
from scipy.signal import fftconvolve

from .fields import PSFField
from .psf import psf_stamps, subintervals_for

GALAXY_SUBSAMPLE = 5


def sersic_b(n: float) -> float:
    """b_n making r_e the half-light radius (Ciotti & Bertin 1999 asymptotic series)."""
    return 2.0 * n - 1.0 / 3.0 + 4.0 / (405.0 * n) + 46.0 / (25515.0 * n * n)


def draw_galaxy_shapes(n: int, pixel_scale: float, rng: np.random.Generator) -> dict[str, NDArray]:
    """Random discs (Sersic n ~ 1) and a few spheroids (n = 4) with sky-like sizes."""
    # a quarter are spheroids (at least one when n >= 2), in random order
    spheroid = rng.permutation(np.arange(n) < (max(1, round(0.25 * n)) if n >= 2 else 0))
    sersic_n = np.where(spheroid, 4.0, rng.uniform(0.8, 1.5, n))
    r_eff_arcsec = np.where(
        spheroid, rng.lognormal(np.log(1.8), 0.35, n), rng.lognormal(np.log(2.6), 0.35, n)
    )
    ellipticity = np.where(spheroid, rng.uniform(0.0, 0.3, n), rng.uniform(0.05, 0.65, n))
    return {
        "sersic_n": sersic_n,
        "r_eff": r_eff_arcsec / pixel_scale,  # px, along the major axis
        "ellipticity": ellipticity,
        "theta": rng.uniform(0, np.pi, n),  # rad, major axis from +x towards +y
        "g_r": rng.normal(0.65, 0.15, n),
    }


def _sersic_stamp(
    dx: float, dy: float, r_eff: float, n: float, ell: float, theta: float, half: int
) -> NDArray:
    """Pixel-integrated, un-normalised Sersic stamp centred at offset (dx, dy)."""
    size = 2 * half + 1
    s = GALAXY_SUBSAMPLE
    sub = (np.arange(size * s) + 0.5) / s - half - 0.5
    xs = sub[None, :] - dx
    ys = sub[:, None] - dy
    c, si = np.cos(theta), np.sin(theta)
    q = 1.0 - ell
    xp = xs * c + ys * si
    yp = -xs * si + ys * c
    r = np.sqrt(xp**2 + (yp / q) ** 2)
    values = np.exp(-sersic_b(n) * ((r / r_eff) ** (1.0 / n) - 1.0))
    return values.reshape(size, s, size, s).mean(axis=(1, 3))


def render_galaxies(
    image: NDArray,
    x: NDArray,
    y: NDArray,
    flux: NDArray,
    shapes: dict[str, NDArray],
    psf: PSFField,
) -> NDArray:
    """Add PSF-convolved Sersic galaxies to ``image`` in place; return deposited fluxes."""
    ny, nx = image.shape
    deposited = np.zeros(x.size)
    fwhm, ell_psf, theta_psf = psf.shape(x, y)
    a_psf, b_psf, _ = psf.axes_scale(x, y)
    for i in range(x.size):
        r_eff, n = float(shapes["r_eff"][i]), float(shapes["sersic_n"][i])
        half = int(np.ceil(min(8.0 * r_eff * (1.5 if n > 2 else 1.0), 80) + 3 * fwhm[i]))
        ix, iy = round(float(x[i])), round(float(y[i]))
        gal = _sersic_stamp(
            x[i] - ix,
            y[i] - iy,
            r_eff,
            n,
            float(shapes["ellipticity"][i]),
            float(shapes["theta"][i]),
            half,
        )
        psf_half = int(np.ceil(3 * fwhm[i]))
        kernel = psf_stamps(
            np.zeros(1),
            np.zeros(1),
            a_psf[i : i + 1],
            b_psf[i : i + 1],
            theta_psf[i : i + 1],
            psf.kind,
            psf.beta,
            psf_half,
            subintervals_for(fwhm[i] * np.sqrt(1 - ell_psf[i])),
        )[0]
        stamp = fftconvolve(gal, kernel / kernel.sum(), mode="same")
        stamp = np.clip(stamp, 0, None)
        stamp *= flux[i] / stamp.sum()
        y0, x0 = iy - half, ix - half
        ya, xa = max(y0, 0), max(x0, 0)
        yb, xb = min(y0 + 2 * half + 1, ny), min(x0 + 2 * half + 1, nx)
        if ya < yb and xa < xb:
            part = stamp[ya - y0 : yb - y0, xa - x0 : xb - x0]
            image[ya:yb, xa:xb] += part
            deposited[i] = part.sum()
    return deposited


def galaxy_table(galaxies: dict[str, NDArray], shapes: dict[str, NDArray]) -> Table:
    """Truth table of the galaxies (positions 0-based pixels, sizes in pixels)."""
    columns = ("x", "y", "ra", "dec", "mag", "zp", "flux", "flux_in_image")
    table = Table({name: galaxies[name] for name in columns})
    table["g_r"] = shapes["g_r"]
    for name in ("r_eff", "sersic_n", "ellipticity", "theta"):
        table[name] = shapes[name]
    return table
