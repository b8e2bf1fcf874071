"""The rankfold error hierarchy.

Every error rankfold raises on purpose is a :class:`RankfoldError`. Subclasses also
inherit the builtin exception a user would expect, so ``except ValueError`` keeps
working for code written against scikit-learn or torch.
"""

from __future__ import annotations

__all__ = [
    "RankfoldError",
    "InvalidParameterError",
    "ShapeError",
    "NotFittedError",
    "ConvergenceError",
    "DataFileError",
    "RankfoldWarning",
    "ConvergenceWarning",
]


class RankfoldError(Exception):
    """Base class of every error raised by rankfold."""


class InvalidParameterError(RankfoldError, ValueError, TypeError):
    """A parameter has the wrong type, value or combination with other parameters."""


class ShapeError(RankfoldError, ValueError):
    """Array shapes do not match what the routine needs."""


class NotFittedError(RankfoldError, AttributeError):
    """An estimator was used before ``fit``."""


class ConvergenceError(RankfoldError, ArithmeticError):
    """An iterative method produced non-finite values or failed to converge."""


class DataFileError(RankfoldError, OSError):
    """A data or model file is missing, unreadable or corrupt."""


class RankfoldWarning(UserWarning):
    """Base class of rankfold's warnings."""


class ConvergenceWarning(RankfoldWarning):
    """An iterative method stopped before reaching its tolerance."""
