"""rankfold.completion: low-rank matrix completion (ALS with biases, robust alternating
minimization, SoftImpute); ratings tables in, predictions and recommendations out.

>>> from rankfold.completion import ALS, train_test_split
>>> # train, test = train_test_split(df, 0.2, generator=0)
>>> # model = ALS().fit(train); model.predict(test.user, test.item)
"""

from __future__ import annotations

from ._base import CompletionEstimator, FoldIn, Recommendations
from ._data import DuplicateRatingsWarning, Ratings, UnknownIdWarning, to_ratings
from ._solvers import SOLVERS
from .estimators import ALS, SOLVER_NAMES, AltMin, SoftImpute
from .model_selection import (
    CVResult,
    Score,
    cross_validate,
    mae,
    rmse,
    score,
    train_test_split,
)

__all__: list[str] = [
    "ALS",
    "AltMin",
    "SoftImpute",
    "CompletionEstimator",
    "Recommendations",
    "FoldIn",
    "Ratings",
    "to_ratings",
    "DuplicateRatingsWarning",
    "UnknownIdWarning",
    "SOLVERS",
    "SOLVER_NAMES",
    "train_test_split",
    "cross_validate",
    "score",
    "rmse",
    "mae",
    "CVResult",
    "Score",
]
