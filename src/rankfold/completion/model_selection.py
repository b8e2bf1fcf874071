"""Splits and cross-validation for completion estimators, scored by RMSE and MAE."""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from .._errors import InvalidParameterError
from .._random import GeneratorLike, numpy_generator
from .._validation import check_float, check_instance, check_int
from ._base import CompletionEstimator
from ._data import Ratings, UnknownIdWarning, to_ratings

__all__ = ["train_test_split", "cross_validate", "CVResult", "Score", "score", "rmse", "mae"]


class Score(NamedTuple):
    """Root-mean-square and mean absolute error of predictions on held-out ratings."""

    rmse: float
    mae: float


class CVResult(NamedTuple):
    """Per-fold scores and fit times of :func:`cross_validate` (arrays of length folds)."""

    rmse: np.ndarray
    mae: np.ndarray
    fit_time: np.ndarray

    @property
    def mean_rmse(self) -> float:
        return float(self.rmse.mean())

    @property
    def mean_mae(self) -> float:
        return float(self.mae.mean())


def rmse(pred: Any, truth: Any) -> float:
    """Root-mean-square error."""
    err = np.asarray(pred, dtype=np.float64) - np.asarray(truth, dtype=np.float64)
    return float(np.sqrt(np.mean(err**2)))


def mae(pred: Any, truth: Any) -> float:
    """Mean absolute error."""
    err = np.asarray(pred, dtype=np.float64) - np.asarray(truth, dtype=np.float64)
    return float(np.mean(np.abs(err)))


def _rng(generator: GeneratorLike, func: str) -> np.random.Generator:
    if isinstance(generator, int) and not isinstance(generator, bool) and generator >= 0:
        return np.random.default_rng(generator)
    return numpy_generator(generator, func=func)


def _pairs(r: Ratings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return r.user_ids[r.rows], r.item_ids[r.cols], r.values


def score(estimator: CompletionEstimator, X: Any, *,
          columns: Sequence[str] | None = None) -> Score:
    """RMSE and MAE of a fitted estimator on held-out ratings ``X`` (any input kind).

    Unknown users or items get their bias-only prediction (no warning here).
    """
    held = to_ratings(X, columns=columns, func="score")
    users, items, truth = _pairs(held)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnknownIdWarning)
        pred = estimator.predict(users, items)
    return Score(rmse(pred, truth), mae(pred, truth))


def train_test_split(X: Any, test_size: float = 0.2, *, columns: Sequence[str] | None = None,
                     generator: GeneratorLike = None) -> tuple[Any, Any]:
    """Split the observed ratings at random into a training and a test part.

    Parameters
    ----------
    X : DataFrame, scipy.sparse, (rows, cols, values[, shape]) or dense array with NaN
    test_size : float in (0, 1), default 0.2
        Fraction of ratings held out.
    columns : sequence of 3 str, optional
        Column names of a DataFrame.
    generator : int, numpy or torch Generator, or None
        An int gives the same split every time; a ``numpy.random.Generator`` is used as
        is (``np.random.default_rng(0)``: the permutation ``rng.permutation(nnz)``).

    Returns
    -------
    (train, test)
        The same kind as ``X`` (a DataFrame keeps only the three rating columns;
        matrices keep their shape).
    """
    check_float(test_size, "test_size", "train_test_split", low=0.0, high=1.0,
                closed_low=False, closed_high=False)
    ratings = to_ratings(X, columns=columns, func="train_test_split")
    rng = _rng(generator, "train_test_split")
    perm = rng.permutation(ratings.nnz)
    n_test = int(round(test_size * ratings.nnz))
    if n_test == 0 or n_test == ratings.nnz:
        raise InvalidParameterError(
            f"The 'test_size' parameter of train_test_split must leave at least one rating "
            f"in each part. Got {test_size} for {ratings.nnz} ratings instead.")
    return ratings.like_input(np.sort(perm[n_test:])), ratings.like_input(np.sort(perm[:n_test]))


def cross_validate(estimator: CompletionEstimator, X: Any, folds: int = 5, *,
                   columns: Sequence[str] | None = None,
                   generator: GeneratorLike = None) -> CVResult:
    """K-fold cross-validation of ``estimator`` on the observed ratings.

    Each fold fits a fresh clone on the other folds and scores RMSE and MAE on the fold.

    Parameters
    ----------
    estimator : ALS, AltMin or SoftImpute
        Unfitted or fitted (it is cloned, never modified).
    X : ratings in any supported input kind
    folds : int, default 5
    columns : sequence of 3 str, optional
    generator : seed of the fold assignment (an int gives the same folds every time)

    Returns
    -------
    CVResult
        ``rmse``, ``mae`` and ``fit_time`` per fold.

    Examples
    --------
    >>> from rankfold.completion import ALS, cross_validate
    >>> # res = cross_validate(ALS(), df, folds=5, generator=0); res.mean_rmse
    """
    check_instance(estimator, "estimator", "cross_validate", CompletionEstimator,
                   "a rankfold completion estimator (ALS, AltMin, SoftImpute)")
    ratings = to_ratings(X, columns=columns, func="cross_validate")
    check_int(folds, "folds", "cross_validate", low=2, high=ratings.nnz, high_name="n_ratings")
    rng = _rng(generator, "cross_validate")
    assign = rng.permutation(ratings.nnz) % folds
    out_r, out_m, out_t = [], [], []
    for f in range(folds):
        train = ratings.like_input(np.flatnonzero(assign != f))
        test = ratings.like_input(np.flatnonzero(assign == f))
        est = estimator.clone()
        t0 = time.perf_counter()
        est.fit(train, columns=ratings.columns if ratings.kind == "frame" else None)
        out_t.append(time.perf_counter() - t0)
        s = score(est, test, columns=ratings.columns if ratings.kind == "frame" else None)
        out_r.append(s.rmse)
        out_m.append(s.mae)
    return CVResult(np.array(out_r), np.array(out_m), np.array(out_t))
