"""Exception and warning types the core raises.

Their names and bases match scikit-learn's, because the names travel over the
wire and clients rebuild classes that are both a ``RemoteError`` and the
built-ins listed here.
"""

from __future__ import annotations


class NotFittedError(ValueError, AttributeError):
    """An estimator was used before it was fitted."""


class InvalidParameterError(ValueError, TypeError):
    """A constructor parameter or method argument failed its constraint."""


class ConvergenceWarning(UserWarning):
    """The algorithm did not converge as expected."""


class DataConversionWarning(UserWarning):
    """Input data was converted to another dtype or layout."""


class CallCancelled(Exception):
    """The call was cancelled between two steps (client cancel, dispose or shutdown)."""
