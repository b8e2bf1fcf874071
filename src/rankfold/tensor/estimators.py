"""Thin estimator classes over the tensor decomposition functions.

Each class stores its arguments in ``__init__``, calls the function in ``fit`` and keeps
the result in attributes ending with ``_``; ``fit`` returns ``self``.
"""

from __future__ import annotations

from typing import Any

from .._errors import NotFittedError
from .complete import _cp_complete, _tucker_complete
from .cp import cp
from .tt import tensor_train
from .tucker import tucker

__all__ = ["CP", "Tucker", "TensorTrain", "CPCompletion", "TuckerCompletion"]


class _Base:
    _attr = "decomposition_"

    def _check_fitted(self) -> Any:
        if not hasattr(self, self._attr):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet; "
                                 f"call fit() first.")
        return getattr(self, self._attr)

    def to_tensor(self) -> Any:
        """The fitted low-rank tensor in full."""
        return self._check_fitted().to_tensor()

    def predict(self, indices: Any) -> Any:
        """Entries of the fitted tensor at an ``(N, order)`` index array."""
        return self._check_fitted().values_at(indices)


class CP(_Base):
    """CP-ALS estimator: see :func:`rankfold.tensor.cp` for the parameters.

    Attributes
    ----------
    decomposition_ : CPTensor
    history_ : list of float
    n_iter_ : int
    converged_ : bool

    Examples
    --------
    >>> import numpy as np
    >>> from rankfold.tensor import CP
    >>> X = np.random.default_rng(0).standard_normal((5, 6, 7))
    >>> CP(2, generator=0).fit(X).decomposition_.rank
    2
    """

    def __init__(self, rank: int, *, init: Any = "svd", n_iter_max: int = 100,
                 tol: float = 1e-8, l2_reg: float = 0.0, nonneg: bool = False,
                 line_search: bool = False, missing: str = "als", generator: Any = None) -> None:
        self.rank = rank
        self.init = init
        self.n_iter_max = n_iter_max
        self.tol = tol
        self.l2_reg = l2_reg
        self.nonneg = nonneg
        self.line_search = line_search
        self.missing = missing
        self.generator = generator

    def fit(self, X: Any, mask: Any = None) -> CP:
        res = cp(X, self.rank, mask=mask, init=self.init, n_iter_max=self.n_iter_max,
                 tol=self.tol, l2_reg=self.l2_reg, nonneg=self.nonneg,
                 line_search=self.line_search, missing=self.missing, generator=self.generator)
        self.decomposition_, self.history_ = res.cp, res.history
        self.n_iter_, self.converged_ = res.n_iter, res.converged
        return self


class Tucker(_Base):
    """Tucker estimator: see :func:`rankfold.tensor.tucker` for the parameters.

    Attributes
    ----------
    decomposition_ : TuckerTensor
    history_ : list of float
    n_iter_ : int
    converged_ : bool
    """

    def __init__(self, ranks: Any = None, *, tol: float | None = None, method: str = "hooi",
                 n_iter_max: int = 50, conv_tol: float = 1e-8, init: Any = "auto",
                 missing: str = "als", generator: Any = None) -> None:
        self.ranks = ranks
        self.tol = tol
        self.method = method
        self.n_iter_max = n_iter_max
        self.conv_tol = conv_tol
        self.init = init
        self.missing = missing
        self.generator = generator

    def fit(self, X: Any, mask: Any = None) -> Tucker:
        res = tucker(X, self.ranks, tol=self.tol, method=self.method, mask=mask,
                     n_iter_max=self.n_iter_max, conv_tol=self.conv_tol, init=self.init,
                     missing=self.missing, generator=self.generator)
        self.decomposition_, self.history_ = res.tucker, res.history
        self.n_iter_, self.converged_ = res.n_iter, res.converged
        return self


class TensorTrain(_Base):
    """TT-SVD estimator: see :func:`rankfold.tensor.tensor_train`.

    Attributes
    ----------
    decomposition_ : TTTensor
    """

    def __init__(self, ranks: Any = None, *, tol: float | None = None) -> None:
        self.ranks = ranks
        self.tol = tol

    def fit(self, X: Any) -> TensorTrain:
        self.decomposition_ = tensor_train(X, self.ranks, tol=self.tol)
        return self


class CPCompletion(_Base):
    """CP completion from observed entries: see :func:`rankfold.tensor.cp_complete`.

    Attributes
    ----------
    decomposition_ : CPTensor
    history_ : list of float
        Training fit on the observed entries per sweep.
    n_iter_ : int
    converged_ : bool
    """

    def __init__(self, rank: int, *, n_iter_max: int = 100, tol: float = 1e-6,
                 l2_reg: float = 0.0, nonneg: bool = False, init: Any = "svd",
                 generator: Any = None) -> None:
        self.rank = rank
        self.n_iter_max = n_iter_max
        self.tol = tol
        self.l2_reg = l2_reg
        self.nonneg = nonneg
        self.init = init
        self.generator = generator

    def fit(self, indices: Any, values: Any, shape: Any) -> CPCompletion:
        res = _cp_complete(indices, values, shape, self.rank, n_iter_max=self.n_iter_max,
                           tol=self.tol, l2_reg=self.l2_reg, nonneg=self.nonneg,
                           init=self.init, generator=self.generator)
        self.decomposition_, self.history_ = res.tensor, res.history
        self.n_iter_, self.converged_ = res.n_iter, res.converged
        return self


class TuckerCompletion(_Base):
    """Tucker completion from observed entries: see :func:`rankfold.tensor.tucker_complete`.

    Attributes
    ----------
    decomposition_ : TuckerTensor
    history_ : list of float
    n_iter_ : int
    converged_ : bool
    """

    def __init__(self, ranks: Any, *, n_iter_max: int = 50, tol: float = 1e-6,
                 l2_reg: float = 0.0, init: Any = "svd", generator: Any = None) -> None:
        self.ranks = ranks
        self.n_iter_max = n_iter_max
        self.tol = tol
        self.l2_reg = l2_reg
        self.init = init
        self.generator = generator

    def fit(self, indices: Any, values: Any, shape: Any) -> TuckerCompletion:
        res = _tucker_complete(indices, values, shape, self.ranks, n_iter_max=self.n_iter_max,
                               tol=self.tol, l2_reg=self.l2_reg, init=self.init,
                               generator=self.generator)
        self.decomposition_, self.history_ = res.tensor, res.history
        self.n_iter_, self.converged_ = res.n_iter, res.converged
        return self
