"""Star magnitudes and colours, and the reference catalogue in the VizieR PS1 layout.

Colours follow an approximate main-sequence stellar locus in the Pan-STARRS1
grizy system (g-r from -0.3 for A stars to ~1.6 for mid-M dwarfs). Node values
are approximate, read from the SDSS main-sequence locus of Covey et al. 2007
(AJ 134, 2398, their Table 3) and shifted to PS1 with the linear SDSS->PS1
relations of Tonry et al. 2012 (ApJ 750, 99, Table 6); they are meant to be
realistic, not a photometric standard.
"""

from __future__ import annotations

import numpy as np
from astropy.table import MaskedColumn, Table
from numpy.typing import NDArray

BANDS = ("g", "r", "i", "z", "y")
# VizieR II/349/ps1 column names, in VizieR's order (only the ones we fill)
PS1_VIZIER_CATALOG = "II/349/ps1"
PS1_COLUMNS = (
    "RAJ2000",
    "DEJ2000",
    "objID",
    "f_objID",
    "Qual",
    "e_RAJ2000",
    "e_DEJ2000",
    "Epoch",
    "Ns",
    "Nd",
    "gmag",
    "e_gmag",
    "rmag",
    "e_rmag",
    "imag",
    "e_imag",
    "zmag",
    "e_zmag",
    "ymag",
    "e_ymag",
)
# PS1 3pi stack 5-sigma point-source depths (Chambers et al. 2016, Table 11)
PS1_DEPTH_5SIGMA = {"g": 23.3, "r": 23.2, "i": 23.1, "z": 22.3, "y": 21.4}
PS1_MEAN_EPOCH = 2012.5  # yr; DR1 mean epochs cluster around 2011-2013
# PS1 'Qual' bits for an ordinary good star: 4 good-quality measurement, 16 good stack
# object, 32 stack primary (Flewelling et al. 2020, ObjectQualityFlags)
PS1_QUAL_GOOD_STAR = 4 + 16 + 32

# locus nodes: g-r, r-i, i-z, z-y
_LOCUS = np.array(
    [
        [-0.30, -0.16, -0.14, -0.06],
        [0.00, -0.04, -0.05, -0.02],
        [0.25, 0.06, 0.01, 0.01],
        [0.40, 0.12, 0.04, 0.03],
        [0.60, 0.20, 0.08, 0.05],
        [0.90, 0.32, 0.15, 0.08],
        [1.15, 0.45, 0.23, 0.12],
        [1.30, 0.62, 0.32, 0.17],
        [1.42, 0.90, 0.46, 0.24],
        [1.50, 1.25, 0.64, 0.33],
        [1.56, 1.65, 0.85, 0.43],
        [1.60, 2.00, 1.05, 0.52],
    ]
)
LOCUS_SCATTER = 0.025  # mag, intrinsic width of the locus in each colour


def locus_colours(g_r: NDArray) -> tuple[NDArray, NDArray, NDArray]:
    """(r-i, i-z, z-y) on the stellar locus for the given g-r."""
    g_r = np.asarray(g_r, float)
    return tuple(np.interp(g_r, _LOCUS[:, 0], _LOCUS[:, k]) for k in (1, 2, 3))


def draw_g_r(n: int, rng: np.random.Generator) -> NDArray:
    """g-r colours of a high-latitude field: turn-off stars, M dwarfs and a flat tail."""
    kind = rng.choice(3, size=n, p=[0.55, 0.30, 0.15])
    g_r = np.where(
        kind == 0,
        rng.normal(0.42, 0.15, n),
        np.where(kind == 1, rng.normal(1.35, 0.15, n), rng.uniform(-0.3, 1.6, n)),
    )
    return np.clip(g_r, -0.3, 1.6)


def draw_r_magnitudes(n: int, bright: float, faint: float, rng: np.random.Generator) -> NDArray:
    """r magnitudes with star counts growing as dN/dm ~ 10^(0.3 m) between the limits."""
    slope = 0.3
    lo, hi = 10 ** (slope * bright), 10 ** (slope * faint)
    return np.log10(lo + rng.uniform(0.0, 1.0, n) * (hi - lo)) / slope


def star_magnitudes(r: NDArray, g_r: NDArray, rng: np.random.Generator) -> dict[str, NDArray]:
    """True grizy magnitudes of stars with these r and g-r (locus plus intrinsic scatter)."""
    r_i, i_z, z_y = locus_colours(g_r)
    n = r.size
    jitter = rng.normal(0.0, LOCUS_SCATTER, (3, n))
    i = r - (r_i + jitter[0])
    z = i - (i_z + jitter[1])
    y = z - (z_y + jitter[2])
    return {"g": r + g_r, "r": r, "i": i, "z": z, "y": y}


def ps1_magnitude_error(mag: NDArray, band: str) -> NDArray:
    """PS1-like error: photon noise reaching 0.217 mag at the 5-sigma depth, 3 mmag floor."""
    snr = 5.0 * 10 ** (-0.4 * (np.asarray(mag) - PS1_DEPTH_5SIGMA[band]))
    return np.sqrt(0.003**2 + (1.0857 / snr) ** 2)


def ps1_object_id(ra: NDArray, dec: NDArray) -> NDArray:
    """PS1 objID built from the position, as the survey does (Flewelling et al. 2020).

    objID = zone * 1e13 + floor(ra * 1e6) * 1e4 + floor(zone_residual * 1e4),
    zones being 30 arcsec tall in declination.
    """
    zone_height = 1.0 / 120.0
    zpos = (np.asarray(dec) + 90.0) / zone_height
    zone = np.floor(zpos).astype(np.int64)
    resid = np.floor((zpos - zone) * 1e4).astype(np.int64)
    ids = zone * 10**13 + np.floor(np.asarray(ra) * 1e6).astype(np.int64) * 10**4 + resid
    # positions closer than the id resolution would share an id; keep ids unique
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    for k in range(1, sorted_ids.size):
        if sorted_ids[k] <= sorted_ids[k - 1]:
            sorted_ids[k] = sorted_ids[k - 1] + 1
    ids[order] = sorted_ids
    return ids


def build_ps1_table(
    ra: NDArray,
    dec: NDArray,
    true_mags: dict[str, NDArray],
    rng: np.random.Generator,
    add_noise: bool = True,
) -> Table:
    """The reference catalogue as VizieR serves II/349/ps1 (one row per star).

    Magnitudes fainter than 0.3 mag beyond the PS1 5-sigma depth of their band are
    masked, as VizieR leaves them blank. With ``add_noise`` the listed magnitudes
    scatter about the truth by their quoted errors.
    """
    n = ra.size
    table = Table(masked=True)
    table["RAJ2000"] = MaskedColumn(
        ra, unit="deg", format="{:.7f}", description="Right ascension (ICRS) at Epoch"
    )
    table["DEJ2000"] = MaskedColumn(
        dec, unit="deg", format="{:.7f}", description="Declination (ICRS) at Epoch"
    )
    table["objID"] = MaskedColumn(ps1_object_id(ra, dec), description="Unique object identifier")
    table["f_objID"] = MaskedColumn(np.zeros(n, np.int32), description="Object info flags")
    table["Qual"] = MaskedColumn(
        np.full(n, PS1_QUAL_GOOD_STAR, np.int16), description="Subset of ObjectQualityFlags"
    )
    r = true_mags["r"]
    pos_err = np.clip(0.010 + 0.05 * 10 ** (0.4 * (r - 21.0)), 0.005, 0.3)
    table["e_RAJ2000"] = MaskedColumn(pos_err.astype(np.float32), unit="arcsec", format="{:.4f}")
    table["e_DEJ2000"] = MaskedColumn(pos_err.astype(np.float32), unit="arcsec", format="{:.4f}")
    table["Epoch"] = MaskedColumn(
        PS1_MEAN_EPOCH + rng.normal(0, 0.4, n), unit="yr", format="{:.6f}"
    )
    n_det = np.clip(rng.poisson(np.clip(70 - 3.0 * (r - 15.0), 5, None)), 1, None)
    table["Ns"] = MaskedColumn(np.full(n, 5, np.int16), description="Number of stack detections")
    table["Nd"] = MaskedColumn(n_det.astype(np.int16), description="Number of detections")
    for band in BANDS:
        true = true_mags[band]
        err = ps1_magnitude_error(true, band)
        listed = true + rng.normal(0.0, 1.0, n) * err if add_noise else true.copy()
        blank = true > PS1_DEPTH_5SIGMA[band] + 0.3
        table[f"{band}mag"] = MaskedColumn(
            listed.astype(np.float32),
            mask=blank,
            unit="mag",
            format="{:.4f}",
            description=f"Mean PSF AB magnitude from {band} filter",
        )
        table[f"e_{band}mag"] = MaskedColumn(
            err.astype(np.float32), mask=blank, unit="mag", format="{:.4f}"
        )
    table.meta["CATALOG"] = PS1_VIZIER_CATALOG
    table.meta["ORIGIN"] = "SkySift simulate: PS1 DR1 layout, stars only"
    return table[list(PS1_COLUMNS)]
