"""Derive the calibration bands a catalogue does not measure, from published relations.

Given the bands a table has, :func:`plan_derivations` finds, for every calibration
band of :mod:`pipeline.filters` (PS1 grizy, SDSS u, Johnson-Cousins UBVRI, Gaia
G/BP/RP, 2MASS JHKs), the shortest chain of relations from
:data:`pipeline.catalogs.relations.RELATIONS` that reaches it; :func:`derive_bands`
evaluates the plan on a table, vectorised over rows.

* Breadth first: a band is derived at the first step where every input is known,
  so one-step relations win over chains; at equal depth the order of ``RELATIONS``
  decides (``prefer`` moves a source's relations first).
* A relation whose colour is in the system being derived (Tonry's SDSS − PS1 in
  (g−r)_P1, used to get PS1 from SDSS) is solved jointly for all such bands by
  fixed-point iteration, starting from the measured magnitudes.
* Errors: e² = e_base² + Σ_k (P_k′·e_colour_k)² + scatter², colour errors from
  the two bands in quadrature (correlations ignored).
* A star whose colour is outside a relation's stated range (or outside
  :data:`~pipeline.catalogs.relations.PHYSICAL_COLOUR_RANGE` when none is stated) gets
  NaN in the derived band rather than an extrapolated value.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from astropy.table import Table

from pipeline.catalogs.definitions import CATALOGS, err_column, mag_column
from pipeline.catalogs.relations import (
    OPTIONAL_SOURCES,
    PHYSICAL_COLOUR_RANGE,
    RELATIONS,
    ColourTerm,
    Relation,
)
from pipeline.filters import FILTER_NAMES

# Bands a reference catalogue can be asked for: every filter except "clear", which is
# calibrated against Gaia G (see pipeline.catalogs.choice.calibration_band).
CALIBRATION_BANDS: tuple[str, ...] = tuple(name for name in FILTER_NAMES if name != "clear")
GROUP_ITERATIONS = 12  # the PS1<->SDSS colour terms shrink a colour error ~6x per pass


@dataclass(frozen=True)
class Step:
    """Derive ``band`` from ``relation``; ``group`` > 0 marks a jointly iterated set."""

    band: str
    relation: Relation
    group: int = 0

    @property
    def base(self) -> str:
        """The band the relation starts from."""
        relation = self.relation
        return relation.rhs if self.band == relation.lhs else relation.lhs

    @property
    def sign(self) -> float:
        """+1 when deriving the left side (lhs = rhs + f), −1 for the right side."""
        return 1.0 if self.band == self.relation.lhs else -1.0


def _ordered(prefer: Sequence[str]) -> list[Relation]:
    preferred = set(prefer)
    usable = [r for r in RELATIONS if r.source not in OPTIONAL_SOURCES or r.source in preferred]
    return sorted(usable, key=lambda r: r.source not in preferred)  # stable sort


def _orientations(relation: Relation) -> tuple[tuple[str, str], ...]:
    """(derived band, base band) pairs a relation may be used for."""
    pairs = []
    if relation.derives in ("lhs", "both"):
        pairs.append((relation.lhs, relation.rhs))
    if relation.derives in ("rhs", "both"):
        pairs.append((relation.rhs, relation.lhs))
    return tuple(pairs)


def plan_derivations(
    available: Iterable[str],
    targets: Iterable[str] | None = None,
    prefer: Sequence[str] = (),
) -> list[Step]:
    """The steps that derive every reachable target band from the available ones.

    Parameters
    ----------
    available : iterable of str
        Band keys the table measures (or already holds).
    targets : iterable of str, optional
        Bands wanted; defaults to :data:`CALIBRATION_BANDS`.
    prefer : sequence of str
        Relation sources (``"kostov2018"``, ``"lupton2005"`` ...) to try first.

    Returns
    -------
    list of Step
        In evaluation order; steps of one iterated group are consecutive and share a
        ``group`` number. Only steps needed for a wanted band are kept.
    """
    wanted = set(CALIBRATION_BANDS if targets is None else targets)
    relations = _ordered(prefer)
    known = set(available)
    steps: list[Step] = []
    group = 0
    while True:
        level = _direct_level(relations, known)
        if level:
            steps.extend(level)
            known.update(step.band for step in level)
            continue
        members = _iterated_group(relations, known)
        if not members:
            break
        group += 1
        steps.extend(Step(band, relation, group) for band, relation in members.items())
        known.update(members)
    return _needed(steps, wanted)


def _direct_level(relations: list[Relation], known: set[str]) -> list[Step]:
    """Bands derivable in one step from the bands known now (one breadth-first level)."""
    found: dict[str, Relation] = {}
    for relation in relations:
        for band, base in _orientations(relation):
            if band in known or band in found or base not in known:
                continue
            if relation.colour_bands <= known:
                found[band] = relation
    return [Step(band, relation) for band, relation in found.items()]


def _iterated_group(relations: list[Relation], known: set[str]) -> dict[str, Relation]:
    """Unknown bands whose relations need each other's colours (solved by iteration)."""
    candidates: dict[str, Relation] = {}
    for relation in relations:
        for band, base in _orientations(relation):
            if band not in known and band not in candidates and base in known:
                candidates[band] = relation
    changed = True
    while changed:  # drop bands whose colours can be neither known nor iterated
        changed = False
        for band, relation in list(candidates.items()):
            if not relation.colour_bands <= known | candidates.keys():
                del candidates[band]
                changed = True
    return candidates


def _needed(steps: list[Step], wanted: set[str]) -> list[Step]:
    """Keep only the steps a wanted band depends on."""
    by_band = {step.band: step for step in steps}
    needed: set[str] = set()
    stack = [band for band in wanted if band in by_band]
    while stack:
        band = stack.pop()
        if band in needed:
            continue
        needed.add(band)
        step = by_band[band]
        stack.extend(b for b in (step.base, *step.relation.colour_bands) if b in by_band)
    return [step for step in steps if step.band in needed]


def derivable_bands(catalog: str, prefer: Sequence[str] = ()) -> dict[str, str]:
    """Calibration bands a catalogue can serve, with how.

    Returns
    -------
    dict
        Band → ``"native"`` or the chain of relation keys that derives it
        (``"riello2021:sdss:g > tonry2012:sdss:g"``), in :data:`CALIBRATION_BANDS` order.
    """
    native = set(CATALOGS[catalog].native_bands)
    steps = plan_derivations(native, prefer=prefer)
    chains = _chains(steps)
    served = {}
    for band in CALIBRATION_BANDS:
        if band in native:
            served[band] = "native"
        elif band in chains:
            served[band] = chains[band]
    return served


def _chains(steps: list[Step]) -> dict[str, str]:
    """Band → the relation keys that lead to it (bands of its own iterated group left out)."""
    chain: dict[str, str] = {}
    group_of = {step.band: step.group for step in steps}
    for step in steps:
        inputs = (step.base, *sorted(step.relation.colour_bands))
        parents = [
            chain[b]
            for b in inputs
            if b in chain and (step.group == 0 or group_of.get(b) != step.group)
        ]
        prefix = parents[0] + " > " if parents else ""
        chain[step.band] = prefix + step.relation.key
    return chain


def _polynomial(coefficients: tuple[float, ...], x: np.ndarray) -> np.ndarray:
    return np.polynomial.polynomial.polyval(x, np.asarray(coefficients, float))


def _derivative(coefficients: tuple[float, ...], x: np.ndarray) -> np.ndarray:
    slope = np.polynomial.polynomial.polyder(np.asarray(coefficients, float))
    return np.polynomial.polynomial.polyval(x, slope) if slope.size else np.zeros_like(x)


def _term_value(term: ColourTerm, colour: np.ndarray) -> np.ndarray:
    """P(colour), NaN where the colour is outside the term's validity range."""
    lo, hi = term.valid if term.valid is not None else PHYSICAL_COLOUR_RANGE
    value = _polynomial(term.coefficients, colour)
    return np.where((colour >= lo) & (colour <= hi), value, np.nan)


def _evaluate(step: Step, mags: dict[str, np.ndarray], errs: dict[str, np.ndarray]):
    """(magnitude, error) of one step from the current band values."""
    relation = step.relation
    shift = np.full_like(mags[step.base], relation.offset)
    variance = errs[step.base] ** 2 + (relation.scatter or 0.0) ** 2
    for term in relation.terms:
        colour = mags[term.blue] - mags[term.red]
        shift = shift + _term_value(term, colour)
        colour_var = errs[term.blue] ** 2 + errs[term.red] ** 2
        variance = variance + _derivative(term.coefficients, colour) ** 2 * colour_var
    return mags[step.base] + step.sign * shift, np.sqrt(variance)


def derive_bands(
    table: Table,
    bands: Iterable[str] | None = None,
    *,
    prefer: Sequence[str] = (),
) -> Table:
    """Add the derivable calibration bands to a normalised catalogue (in place).

    Parameters
    ----------
    table : astropy.table.Table
        Normalised catalogue (columns named by
        :func:`~pipeline.catalogs.definitions.mag_column`/``err_column``; NaN = missing).
    bands : iterable of str, optional
        Bands wanted; defaults to every calibration band that can be derived.
    prefer : sequence of str
        Relation sources to try first, e.g. ``("kostov2018",)`` for PS1 → BVRI.

    Returns
    -------
    astropy.table.Table
        The same table, with ``<band>mag``/``e_<band>mag`` columns added for derived
        bands and ``meta["derived"]`` = {band: relation chain}. Columns it already has
        are left alone.
    """
    available = bands_in_table(table)
    steps = plan_derivations(available, bands, prefer)
    if not steps:
        return table
    mags = {b: np.asarray(table[mag_column(b)], float) for b in available}
    errs = {b: _error_or_zero(table, b) for b in available}
    index = 0
    while index < len(steps):
        group = steps[index].group
        if group == 0:
            mags[steps[index].band], errs[steps[index].band] = _evaluate(steps[index], mags, errs)
            index += 1
            continue
        members = [s for s in steps[index:] if s.group == group]
        _solve_group(members, mags, errs)
        index += len(members)
    wanted = set(CALIBRATION_BANDS if bands is None else bands)
    derived = table.meta.setdefault("derived", {})
    chains = _chains(steps)
    for step in steps:
        if step.band in wanted and mag_column(step.band) not in table.colnames:
            table[mag_column(step.band)] = mags[step.band]
            table[err_column(step.band)] = errs[step.band]
            table[mag_column(step.band)].unit = "mag"
            table[err_column(step.band)].unit = "mag"
            derived[step.band] = chains[step.band]
    return table


def _solve_group(members: list[Step], mags: dict, errs: dict) -> None:
    """Fixed-point solution of relations whose colours involve the bands being derived."""
    for step in members:  # start from the measured magnitude of the same band
        mags[step.band] = mags[step.base].copy()
        errs[step.band] = errs[step.base].copy()
    for _ in range(GROUP_ITERATIONS):
        updated = {step.band: _evaluate(step, mags, errs) for step in members}
        for band, (mag, err) in updated.items():
            mags[band], errs[band] = mag, err


def _error_or_zero(table: Table, band: str) -> np.ndarray:
    name = err_column(band)
    if name not in table.colnames:
        return np.zeros(len(table))
    err = np.asarray(table[name], float)
    return np.where(np.isfinite(err), err, 0.0)


def bands_in_table(table: Table) -> set[str]:
    """Band keys (calibration or native) whose magnitude column the table has."""
    keys = set(CALIBRATION_BANDS)
    for relation in RELATIONS:
        keys.update((relation.lhs, relation.rhs, *relation.colour_bands))
    for definition in CATALOGS.values():
        keys.update(definition.native_bands)
    return {band for band in keys if mag_column(band) in table.colnames}
