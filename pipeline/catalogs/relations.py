"""Published photometric transformations, as data with their provenance.

Each :class:`Relation` is one published equation

    m[lhs] − m[rhs] = offset + Σ_k P_k(colour_k),   P_k(x) = c0 + c1·x + c2·x² + …

between two bands (band keys as in :mod:`pipeline.catalogs.definitions`), usable in
either direction by :mod:`pipeline.catalogs.transform`. A colour may be measured in
the system being derived (Tonry's PS1→SDSS relations used backwards): the engine
then solves the bands of that system together by fixed-point iteration.

``scatter`` is the rms of the published fit (added in quadrature to the errors), None
when the source quotes none. ``valid`` is the colour range the source states the
relation holds in, None when the source states none: a colour outside a stated range
gives no transformed magnitude (NaN) rather than an extrapolation.

Sources
-------
* Tonry et al. 2012, ApJ 750, 99, Table 6 (quadratic fits in (g−r)_P1): PS1 → SDSS
  griz and PS1 → Johnson-Cousins BVRI. No colour range is tabulated.
* Kostov & Bonev 2018, Bulg. Astron. J. 28, 3 (arXiv:1706.06147): PS1 → BVRI fitted to
  Stetson's standards; an alternative to Tonry (``prefer=("kostov2018",)``).
* Lupton 2005, SDSS DR4 vs Stetson (sdss.org "Transformations between SDSS magnitudes
  and other systems"): SDSS → BVRI, single colour.
* Jordi et al. 2006, A&A 460, 339, Table 3: U−B from SDSS (u−g) and (g−r), two colours
  (the Balmer jump needs both).
* SDSS DR16 flux calibration notes: u_AB = u_SDSS − 0.04.
* Riello et al. 2021, A&A 649, A3, Table C.2 (coefficients) and Table C.1 (validity):
  Gaia EDR3 G from BP−RP to Johnson-Cousins V, R, I and SDSS g, r, i.
* SkyMapper DR4 → PS1 grizy and BVRI: two-colour cubic fits by S. Karpov in the
  reference system (STDPipe ``stdpipe/catalogs.py``, ``_augment_skymapper``, fitted on
  the Pancino et al. 2022 spectrophotometric standards); no peer-reviewed relation
  for DR4 exists that we know of. Printed there highest power first; reversed here.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.catalogs.definitions import SDSS, SKYMAPPER

# Colours no star reaches; outside these a relation with no stated range is not applied.
PHYSICAL_COLOUR_RANGE = (-1.0, 4.0)


@dataclass(frozen=True)
class ColourTerm:
    """A polynomial in one colour (blue − red), coefficients in increasing power."""

    blue: str
    red: str
    coefficients: tuple[float, ...]
    valid: tuple[float, float] | None = None

    @property
    def bands(self) -> tuple[str, str]:
        return (self.blue, self.red)


@dataclass(frozen=True)
class Relation:
    """``m[lhs] − m[rhs] = offset + Σ P_k(colour_k)``, with provenance.

    Attributes
    ----------
    key : str
        Unique identifier, e.g. ``"tonry2012:B"``.
    source : str
        Short key of the publication (``"tonry2012"``), for :func:`derive_bands` ``prefer``.
    reference : str
        Publication and table/equation the coefficients come from.
    derives : str
        Which side the relation is used to derive: ``"lhs"``, ``"rhs"`` or ``"both"``.
        Only relations between close systems are used backwards (inverting a colour
        transformation between distant systems amplifies its errors).
    """

    key: str
    lhs: str
    rhs: str
    terms: tuple[ColourTerm, ...]
    offset: float = 0.0
    scatter: float | None = None
    source: str = ""
    reference: str = ""
    derives: str = "lhs"

    @property
    def colour_bands(self) -> frozenset[str]:
        return frozenset(band for term in self.terms for band in term.bands)


def _highest_first(*coefficients: float) -> tuple[float, ...]:
    """Coefficients printed highest power first (numpy.polyval order), reversed."""
    return tuple(reversed(coefficients))


_TONRY = "Tonry et al. 2012, ApJ 750, 99, Table 6 (quadratic in (g-r)_P1)"
_KOSTOV = "Kostov & Bonev 2018, Bulg. Astron. J. 28, 3 (arXiv:1706.06147)"
_LUPTON = "Lupton 2005, SDSS DR4 vs Stetson standards (sdss.org SDSS-UBVRI transformations)"
_JORDI = "Jordi et al. 2006, A&A 460, 339, Table 3 (two-colour U-B)"
_SDSS_AB = "SDSS DR16 flux calibration: u_AB = u_SDSS - 0.04"
_RIELLO = "Riello et al. 2021, A&A 649, A3, Table C.2 (validity: Table C.1)"
_KARPOV = (
    "S. Karpov, STDPipe stdpipe/catalogs.py _augment_skymapper (fit on Pancino et al. 2022 "
    "standards)"
)


def _tonry(
    lhs: str, rhs: str, c0: float, c1: float, c2: float, rms: float, derives: str = "lhs"
) -> Relation:
    return Relation(
        key=f"tonry2012:{lhs}",
        lhs=lhs,
        rhs=rhs,
        terms=(ColourTerm("g", "r", (c0, c1, c2)),),
        scatter=rms,
        source="tonry2012",
        reference=_TONRY,
        derives=derives,
    )


def _kostov(lhs: str, rhs: str, c0: float, c1: float, c2: float) -> Relation:
    return Relation(
        key=f"kostov2018:{lhs}",
        lhs=lhs,
        rhs=rhs,
        terms=(ColourTerm("g", "r", (c0, c1, c2)),),
        source="kostov2018",
        reference=_KOSTOV,
    )


def _lupton(lhs: str, rhs: str, colour: str, c0: float, c1: float, sigma: float) -> Relation:
    blue, red = colour
    return Relation(
        key=f"lupton2005:{lhs}",
        lhs=lhs,
        rhs=f"{SDSS}:{rhs}",
        terms=(ColourTerm(f"{SDSS}:{blue}", f"{SDSS}:{red}", (c0, c1)),),
        scatter=sigma,
        source="lupton2005",
        reference=_LUPTON,
    )


def _riello(
    rhs: str, coefficients: tuple[float, ...], rms: float, valid: tuple[float, float]
) -> Relation:
    return Relation(
        key=f"riello2021:{rhs}",
        lhs="G",
        rhs=rhs,
        terms=(ColourTerm("BP", "RP", coefficients, valid),),
        scatter=rms,
        source="riello2021",
        reference=_RIELLO,
        derives="rhs",
    )


# STDPipe applies its own colour cuts to these fits: -0.5 < g-r < 2.5, -0.5 < r-i < 2.0.
_SM_GR = (-0.5, 2.5)
_SM_RI = (-0.5, 2.0)


def _karpov(lhs: str, base: str, p_gr: tuple[float, ...], p_ri: tuple[float, ...]) -> Relation:
    sm = f"{SKYMAPPER}:"
    return Relation(
        key=f"karpov-smss:{lhs}",
        lhs=lhs,
        rhs=sm + base,
        terms=(
            ColourTerm(sm + "g", sm + "r", _highest_first(*p_gr), _SM_GR),
            ColourTerm(sm + "r", sm + "i", _highest_first(*p_ri), _SM_RI),
        ),
        source="karpov-smss",
        reference=_KARPOV,
    )


# Order matters: for a band, the first applicable relation (fewest steps) is used.
RELATIONS: tuple[Relation, ...] = (
    # --- Pan-STARRS1 -> Johnson-Cousins (Tonry 2012, Table 6) ---
    _tonry("B", "g", 0.212, 0.556, 0.034, 0.032),
    _tonry("V", "r", 0.005, 0.462, 0.013, 0.012),
    _tonry("R", "r", -0.137, -0.108, -0.029, 0.015),
    _tonry("I", "i", -0.366, -0.136, -0.018, 0.017),
    # --- SDSS - PS1 (Tonry 2012, Table 6); used backwards it gives PS1 from SDSS ---
    _tonry(f"{SDSS}:g", "g", 0.013, 0.145, 0.019, 0.008, "both"),
    _tonry(f"{SDSS}:r", "r", -0.001, 0.004, 0.007, 0.004, "both"),
    _tonry(f"{SDSS}:i", "i", -0.005, 0.011, 0.010, 0.004, "both"),
    _tonry(f"{SDSS}:z", "z", 0.013, -0.039, -0.012, 0.010, "both"),
    # --- alternative PS1 -> BVRI (Kostov & Bonev 2018), used only when preferred ---
    _kostov("B", "g", 0.199, 0.540, 0.016),
    _kostov("V", "g", -0.020, -0.498, -0.008),
    _kostov("R", "r", -0.163, -0.086, -0.061),
    _kostov("I", "i", -0.387, -0.123, -0.034),
    # --- SDSS -> Johnson-Cousins (Lupton 2005) and U (Jordi 2006) ---
    _lupton("B", "g", "gr", 0.2271, 0.3130, 0.0107),
    _lupton("V", "g", "gr", -0.0038, -0.5784, 0.0054),
    _lupton("R", "r", "ri", -0.1439, -0.2936, 0.0072),
    _lupton("I", "i", "iz", -0.3974, -0.3780, 0.0063),
    Relation(
        key="jordi2006:U",
        lhs="U",
        rhs="B",
        terms=(
            ColourTerm(f"{SDSS}:u", f"{SDSS}:g", (-0.82, 0.52)),
            ColourTerm(f"{SDSS}:g", f"{SDSS}:r", (0.0, 0.53)),
        ),
        source="jordi2006",
        reference=_JORDI,
    ),
    Relation(
        key="sdss-ab:u",
        lhs="u",
        rhs=f"{SDSS}:u",
        terms=(),
        offset=-0.04,
        source="sdss-ab",
        reference=_SDSS_AB,
    ),
    # --- Gaia EDR3 G, BP-RP -> Johnson-Cousins and SDSS (Riello 2021) ---
    _riello("V", (-0.02704, 0.01424, -0.2156, 0.01426), 0.03017, (-0.5, 5.0)),
    _riello("R", (-0.02275, 0.3961, -0.1243, -0.01396, 0.003775), 0.03167, (0.0, 4.0)),
    _riello("I", (0.01753, 0.76, -0.0991), 0.03765, (-0.5, 4.5)),
    _riello(f"{SDSS}:g", (0.2199, -0.6365, -0.1548, 0.0064), 0.0745, (0.3, 3.0)),
    _riello(f"{SDSS}:r", (-0.09837, 0.08592, 0.1907, -0.1701, 0.02263), 0.03776, (0.0, 3.0)),
    _riello(f"{SDSS}:i", (-0.293, 0.6404, -0.09609, -0.002104), 0.04092, (0.5, 2.0)),
    # --- SkyMapper DR4 -> PS1 grizy and BVRI (Karpov, STDPipe) ---
    _karpov(
        "g",
        "g",
        (-0.07715320986152466, 0.2694597282089696, 0.04069379065128178, 0.01396290714542747),
        (0.026097008342026252, -0.14040957287568073, 0.133647539780504, 0.013962907145427432),
    ),
    _karpov(
        "r",
        "r",
        (0.08779280979185472, -0.23257704629617004, 0.1890698144343673, -0.008125550119663026),
        (-0.06273832689338121, 0.21909317812693613, -0.23340488268623696, -0.00812555011966309),
    ),
    _karpov(
        "i",
        "i",
        (0.03553380678975111, -0.021174189684500792, -0.028159666883815007, 0.0009748746568893062),
        (0.00911922467970264, -0.0362286983251751, 0.1403094994141109, 0.0009748746568892609),
    ),
    _karpov(
        "z",
        "z",
        (0.08071260245520126, -0.051693023216670575, -0.0739439627982131, -0.0020460270205769223),
        (0.09720715174271254, -0.32063637962189184, 0.37918283208242526, -0.0020460270205769305),
    ),
    _karpov(
        "y",
        "z",
        (0.038781034592287725, -0.11040188064275973, 0.08235396198116865, 0.006980454415779221),
        (-0.0649739656901001, 0.205320995228645, -0.28233276303592, 0.006980454415779424),
    ),
    _karpov(
        "B",
        "g",
        (-0.22773918482205113, 0.1818124624962873, 1.0021365492384895, 0.10762635377473588),
        (-0.004034933919297649, 0.08214592357213418, -0.07535454054888649, 0.10762635377473558),
    ),
    _karpov(
        "V",
        "g",
        (-0.02545732895304914, 0.03256423830249228, -0.33074199873567045, -0.002938730214382037),
        (-0.007342074336918033, 0.08255055271047995, -0.14349325478829064, -0.0029387302143822),
    ),
    _karpov(
        "R",
        "r",
        (0.07296699439306827, -0.1943702618426095, 0.15375263988851387, -0.08547735652048871),
        (-0.07378125129406726, 0.18462924970775316, -0.40720945890364135, -0.08547735652048903),
    ),
    _karpov(
        "I",
        "i",
        (-0.00925391710305653, 0.046223960182760516, -0.06889215990613289, -0.19321699685334734),
        (0.01197866152020802, -0.044370062623186206, -0.05231484699406009, -0.19321699685334745),
    ),
)

# Sources used only when the caller prefers them (alternatives to a default).
OPTIONAL_SOURCES: frozenset[str] = frozenset({"kostov2018"})

RELATIONS_BY_KEY: dict[str, Relation] = {relation.key: relation for relation in RELATIONS}
