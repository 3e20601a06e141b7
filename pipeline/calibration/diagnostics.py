"""Checks on a calibration: do the matched magnitudes correlate, which band fits best.

* :func:`magnitude_correlation_test` — a permutation test that instrumental and
  catalogue magnitudes of the matched pairs correlate. Pairs made by a wrong
  astrometric solution are chance coincidences whose magnitudes do not; the test
  then gives a large p-value.
* :func:`diagnose_color_terms` — refit with every band the catalogue supports as
  the primary one and suggest the band with the smallest colour term, i.e. the
  passband closest to the instrument's (a large colour term or scatter means the
  image was probably taken in another filter than the one assumed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.stats import rankdata

MAX_TEST_PAIRS = 2000  # more pairs add no power to the test, only time
PERMUTATION_CHUNK = 200
MIN_TEST_PAIRS = 5


@dataclass
class CorrelationTest:
    """Result of the magnitude correlation test.

    Attributes
    ----------
    correlation : float
        Spearman rank correlation of instrumental and catalogue magnitudes.
    p_value : float or None
        Fraction of shuffles with a correlation at least as high (one-sided, with
        the usual +1 correction); None when there were too few pairs to test.
    n_pairs, n_permutations : int
    """

    correlation: float
    p_value: float | None
    n_pairs: int
    n_permutations: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "correlation": _plain(self.correlation),
            "p_value": _plain(self.p_value),
            "n_pairs": int(self.n_pairs),
            "n_permutations": int(self.n_permutations),
        }


def _plain(value: float | None, digits: int = 6) -> float | None:
    if value is None or not np.isfinite(value):
        return None
    return float(f"{float(value):.{digits}g}")


def _standardised_ranks(values: NDArray) -> NDArray:
    ranks = rankdata(values)
    ranks -= ranks.mean()
    norm = np.sqrt(np.sum(ranks**2))
    return ranks / norm if norm > 0 else ranks


def magnitude_correlation_test(
    mag_inst: NDArray,
    mag_cat: NDArray,
    n_permutations: int = 1000,
    *,
    seed: int = 0,
) -> CorrelationTest:
    """Permutation test that ``mag_inst`` and ``mag_cat`` correlate positively.

    Up to :data:`MAX_TEST_PAIRS` pairs (a random subset beyond) are ranked; the
    catalogue ranks are shuffled ``n_permutations`` times. The generator is seeded,
    so the same input gives the same p-value.
    """
    good = np.isfinite(mag_inst) & np.isfinite(mag_cat)
    a, b = np.asarray(mag_inst, float)[good], np.asarray(mag_cat, float)[good]
    rng = np.random.default_rng(seed)
    if a.size > MAX_TEST_PAIRS:
        pick = rng.choice(a.size, MAX_TEST_PAIRS, replace=False)
        a, b = a[pick], b[pick]
    if a.size < MIN_TEST_PAIRS:
        return CorrelationTest(float("nan"), None, int(a.size), 0)
    ra, rb = _standardised_ranks(a), _standardised_ranks(b)
    observed = float(ra @ rb)
    exceed = 0
    done = 0
    while done < n_permutations:
        count = min(PERMUTATION_CHUNK, n_permutations - done)
        shuffled = rng.permuted(np.broadcast_to(rb, (count, rb.size)), axis=1)
        exceed += int(np.count_nonzero(shuffled @ ra >= observed))
        done += count
    return CorrelationTest(observed, (exceed + 1) / (n_permutations + 1), int(a.size), done)


@dataclass
class BandTrial:
    """One refit of the colour-term diagnostics.

    Attributes
    ----------
    band : str
        Band used as the primary catalogue magnitude.
    color_name : str or None
        Colour of its colour term.
    color_term, color_term_err : float or None
        Fitted C and error (None if the fit failed).
    scatter : float or None
        Scatter beyond the errors (uncapped), mag.
    n_used : int
    error : str or None
        Why the fit failed, if it did.
    """

    band: str
    color_name: str | None
    color_term: float | None = None
    color_term_err: float | None = None
    scatter: float | None = None
    n_used: int = 0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("color_term", "color_term_err", "scatter"):
            data[key] = _plain(data[key], 5)
        return data


@dataclass
class ColorDiagnostics:
    """All trials and the suggested band (smallest |colour term|)."""

    trials: list[BandTrial] = field(default_factory=list)
    suggested_band: str | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "trials": [trial.to_dict() for trial in self.trials],
            "suggested_band": self.suggested_band,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ColorDiagnostics | None:
        if not data:
            return None
        trials = [BandTrial(**trial) for trial in data.get("trials", [])]
        return cls(trials, data.get("suggested_band"), data.get("reason", ""))

    def summary_lines(self) -> list[str]:
        """``"filter r: colour term 0.102 ± 0.004 (g-r), scatter 0.003, 1520 stars"`` lines."""
        lines = []
        for trial in self.trials:
            if trial.error:
                lines.append(f"filter {trial.band}: no fit ({trial.error})")
                continue
            lines.append(
                f"filter {trial.band}: colour term {trial.color_term:.3f} ± "
                f"{trial.color_term_err:.3f} ({trial.color_name}), scatter "
                f"{trial.scatter:.3f}, {trial.n_used} stars"
            )
        return lines


def diagnose_color_terms(
    bands: Iterable[str], fit_band: Callable[[str], BandTrial], reason: str = ""
) -> ColorDiagnostics:
    """Refit with each band and suggest the one with the smallest |colour term|.

    Parameters
    ----------
    bands : iterable of str
        Bands whose magnitude and colour columns the catalogue has.
    fit_band : callable
        ``fit_band(band) -> BandTrial``; failures are reported in the trial.
    reason : str
        Why the diagnostics ran, for the record.
    """
    trials = [fit_band(band) for band in bands]
    usable = [t for t in trials if t.error is None and t.color_term is not None]
    suggested = min(usable, key=lambda t: abs(t.color_term)).band if usable else None
    return ColorDiagnostics(trials, suggested, reason)
