"""Early stopping decided from batch inertias known to within a proven bound.

scikit-learn stops a fit once the smoothed (EWA) mean batch inertia has not
improved for ``max_no_improvement`` steps. A batch inertia is a sum of
squared differences whose last bits depend on the order of its additions
(scikit-learn's own on its OpenMP thread count), and summing it in
scikit-learn's order costs a minibatch step several NumPy passes. The
comparisons that steer the fit are almost never that close: in the
benchmark fits the smallest relative gap between two compared values was
about 1e-8, where the bounds below are at most about 1e-11
(``benchmarks/core_vs_sklearn.py --stops``).

So a fit may sum each batch inertia in the fastest order, carry a rigorous
bound on its distance from any other order's value (:class:`Bounded`)
through the smoothing, and decide each comparison from the bounds
(:func:`less`). A comparison the bounds cannot decide raises
:class:`Undecided`; the caller then reruns the steps from the same random
state with the inertia in scikit-learn's order, so the result is the same
either way.

The bounds. A sum of ``m`` terms, each a rounded product or square, in any
order and with or without fused multiply-adds, is within
``gamma_(m + 1) * M`` of the exact sum, where ``M`` is the sum of the terms'
absolute values and ``gamma_j = j u / (1 - j u)``; two evaluations are within
twice that (plus ``m`` subnormals each for underflow). Each later operation
(the mean's division, the smoothing's products and sum) is applied to both
evaluations and rounds each once: :class:`Bounded` adds those roundings to
the propagated difference, plus a few smallest subnormals (the absolute
error of a rounding in the subnormal range). A value whose bound reaches
past the largest float is never compared: either side may have overflowed.
Values summed in scikit-learn's order carry no error, and the same
operations on them give the same results.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np

#: float64's unit roundoff (the smoothing is computed in Python floats).
_U = 2.0**-53

#: Slack on each new rounding term, for the rounding of the bound's own arithmetic.
_SLACK = 1.01

#: Added to each new rounding term: a rounding in float64's subnormal range is
#: off by up to half the smallest subnormal, whatever the value's size.
_TINY = 4 * 2.0**-1074

#: Factor on a bound carried from step to step: covers the few roundings of
#: carrying it (computed products and sums may fall short by about 3u), and
#: compounds to only 1 + 1e-11 over 20,000 steps.
_CARRY = 1 + 4 * _U


class Undecided(Exception):
    """A comparison the bounds cannot decide: rerun with scikit-learn's order."""


class Bounded(NamedTuple):
    """A computed value and a bound on its distance from scikit-learn's value.

    (A named tuple: a fit makes a few per step, and tuples are the cheapest
    objects to make.)
    """

    value: float
    error: float

    @classmethod
    def sum_of(cls, total: float, magnitude: float, n_terms: int, dtype: np.dtype) -> Bounded:
        """A sum of ``n_terms`` rounded products in ``dtype``, summed in any order.

        ``magnitude`` bounds the sum of the terms' absolute values (the
        total itself when no term is negative).
        """
        total, magnitude = float(total), float(magnitude)  # Python floats overflow quietly
        u, tiny = _unit_and_tiny(np.dtype(dtype))
        m = n_terms + 1
        gamma = m * u / (1 - m * u)
        error = 2 * gamma * abs(magnitude) * _SLACK + 2 * n_terms * tiny
        if not math.isfinite(abs(total) + error):
            # Near the largest float another order may overflow (or ours did).
            error = math.inf
        return cls(total, error)

    def divided(self, divisor: float) -> Bounded:
        """``self / divisor`` (a positive count), rounded once on either side."""
        value = self.value / divisor
        if self.error == 0.0:  # the same value, divided the same way
            return Bounded(value, 0.0)
        error = self.error / divisor * _CARRY + (2 * _U * abs(value) * _SLACK + _TINY)
        return Bounded(value, error)

    def smoothed(self, new: Bounded, alpha: float) -> Bounded:
        """``self * (1 - alpha) + new * alpha``, as scikit-learn evaluates it."""
        keep = 1 - alpha
        old_part = self.value * keep
        new_part = new.value * alpha
        value = old_part + new_part
        if self.error == 0.0 and new.error == 0.0:  # the same values, the same operations
            return Bounded(value, 0.0)
        # The differences carried through (scaled, not inflated: a fit takes
        # up to thousands of steps), then each product's rounding on either
        # side, then the sum's.
        carried = (self.error * keep + new.error * alpha) * _CARRY
        rounding = keep * (2 * abs(self.value) + self.error)
        rounding += alpha * (2 * abs(new.value) + new.error)
        rounding += 2 * abs(value) + carried
        return Bounded(value, carried + (_U * rounding * _SLACK + 3 * _TINY))


def less(a: Bounded, b: Bounded) -> bool:
    """Whether scikit-learn's ``a < b`` holds, or :class:`Undecided`.

    Rounding is monotonic, so a floating-point ``a + ea < b - eb`` implies the
    exact one.
    """
    if a.error == 0.0 and b.error == 0.0:
        return a.value < b.value
    if not (math.isfinite(abs(a.value) + a.error) and math.isfinite(abs(b.value) + b.error)):
        raise Undecided  # within the bounds of overflow: either value may be infinite
    if a.value + a.error < b.value - b.error:
        return True
    if a.value - a.error > b.value + b.error:
        return False
    raise Undecided


@functools.cache
def _unit_and_tiny(dtype: np.dtype) -> tuple[float, float]:
    """``dtype``'s unit roundoff and smallest subnormal, as Python floats."""
    info = np.finfo(dtype)
    return float(info.eps) / 2, float(info.smallest_subnormal)
