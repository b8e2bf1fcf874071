"""Thin estimator classes over the functional cores :func:`als`, :func:`altmin`,
:func:`soft_impute`. They share :class:`~rankfold.completion._base.CompletionEstimator`
(fit / predict / recommend / fold_in / history_ / save / load)."""

from __future__ import annotations

from typing import Any

import torch

from .._errors import InvalidParameterError
from .._random import GeneratorLike
from .._validation import check_bool, check_float, check_int, check_option
from ._als import Callback, Problem, Validation, als
from ._altmin import altmin
from ._base import CompletionEstimator
from ._model import CompletionModel
from ._softimpute import soft_impute
from ._solvers import SOLVERS, SolverOptions

__all__ = ["ALS", "AltMin", "SoftImpute", "SOLVER_NAMES"]

#: values accepted by ``solver=``: the registry plus the automatic choice
SOLVER_NAMES = ("auto", *SOLVERS)

# Defaults of ALS, chosen by 5-fold cross-validation on the training part of the
# MovieLens-100K 80/20 split (benchmarks/completion_tune.py; docs/benchmarks/completion.md):
# best rank-50 setting reg 1.9 / reg_bias 0.95 / exponent 0.4 / 5 sweeps (CV RMSE 0.9147,
# the earlier 1.2 / 1.2 / 0.5 gave 0.9161); rank 100 with the same settings is 0.0007
# better at twice the cost per sweep, so rank 50 is the default. Checked on held-out
# data: ML-100K 5-fold CV and ml-latest-small (80/20 and 5-fold) improved as well.
_ALS_RANK = 50
_ALS_REG = 1.9
_ALS_REG_BIAS = 0.95
_ALS_EXPONENT = 0.4
_ALS_ITER = 5
# item-neighbourhood correction (rankfold.completion._neighbors): k = 50 rated neighbours,
# denominator damping 0.5, scale 1.25, chosen by the same 5-fold CV on the ML-100K
# training part (CV RMSE 0.9147 -> 0.9060; benchmarks/completion_tune.py --neighbors)
_ALS_NEIGHBORS = 50
_ALS_NEIGHBOR_REG = 0.5
_ALS_NEIGHBOR_SCALE = 1.25


class ALS(CompletionEstimator):
    """Explicit-feedback alternating least squares with biases (ALS-WR).

    Fits ``r_ui ~ mu + b_u + c_i + x_u . y_i`` by exact (or approximate) alternating
    ridge solves, every row's regularisation scaled by ``n_u ** reg_exponent`` (its
    number of ratings; ALS-WR when 1). Rows are solved in batches bucketed by their
    number of ratings. Predictions add an item-neighbourhood correction from the
    user's residuals on similar items (``neighbors``; Koren 2008). The defaults were
    chosen by cross-validation on MovieLens-100K, so ``ALS().fit(df)`` is the intended
    use for explicit ratings.

    Parameters
    ----------
    rank : int, default 50
        Number of latent factors.
    reg : float, default 1.9
        Regularisation of the factors (times ``n_u ** reg_exponent``).
    biases : bool, default True
        Fit the global mean and user/item biases (off: plain ``X Y^T``).
    reg_bias : float, default 0.95
        Regularisation of the biases (same row scaling); half of ``reg`` cross-validated
        better than equal to it.
    reg_exponent : float, default 0.4
        Exponent of the per-row scaling (1 = ALS-WR of Zhou et al., 0 = plain ridge;
        0.4 cross-validated best on MovieLens-100K, ALS-WR's 1 was worst).
    solver : {"auto", "cholesky", "cholesky_bf16", "sketch", "cg"}, default "auto"
        Row solver (see :mod:`rankfold.completion._solvers`). "auto" uses batched
        Cholesky except where the sketched solve was measured faster (rank >= 1024 and
        rows with >= max(65536, 64 k log n) ratings; in practice always Cholesky).
    n_iter : int, default 5
        Maximum number of sweeps (5 cross-validated best on MovieLens-100K: more sweeps
        fit the training ratings more closely and the held-out error rises slightly).
    tol : float, default 1e-5
        Stop when the objective decreases by less than this fraction in a sweep.
    neighbors : int, default 50
        Item-neighbourhood correction of the predictions (0 = off): ``predict`` and
        ``recommend`` add ``neighbor_scale * sum_j s_ij e_uj / (sum_j |s_ij| +
        neighbor_reg)`` over the ``neighbors`` items ``j`` rated by ``u`` most similar
        to ``i`` (among the ``max(50, 4 neighbors)`` stored per item), where ``e_uj``
        are the factor model's training residuals and ``s_ij`` shrunk cosines of the
        centred ratings (:mod:`rankfold.completion._neighbors`). Cross-validated on
        MovieLens-100K (CV RMSE 0.9147 -> 0.9060); costs ``|Omega| n_items``
        multiply-adds once per fit (above 4e9, a random subset of users is used for
        the similarities), and ``max(50, 4 neighbors)`` lookups per predicted pair.
        ``history_``'s ``val_rmse`` is the factor model's; ``val_rmse_neighbors`` the
        corrected one.
    neighbor_reg : float, default 0.5
        Added to the sum of absolute similarities (> 0; damps pairs with few or weakly
        similar rated neighbours).
    neighbor_scale : float, default 1.25
        Multiplies the interpolated residual (above 1 because training residuals are
        smaller than held-out ones).
    dtype : {None, "float32", "float64"}, default None
        None follows the input (float32 stays float32; DataFrames of float64 ratings
        compute in float64).
    device : str or torch.device, optional
        Where to compute (default: the input's device, CPU for numpy / pandas). The
        neighbourhood step runs on the CPU (scipy / numpy) and its correction is moved
        to this device.
    duplicates : {"mean", "last", "error"}, default "mean"
        Policy for repeated (user, item) pairs (merged with a warning, or an error).
    n_threads : int, optional
        Torch threads during fit; None uses one thread for small problems
        (``|Omega| (rank + 1) < 2e7``, where the thread pool costs more than it saves)
        and torch's setting otherwise.
    generator : int, torch.Generator, numpy Generator or None
        Seeds the initial item factors and the sketches.

    Attributes
    ----------
    user_factors_, item_factors_ : Tensor (n_users, rank), (n_items, rank)
    user_bias_, item_bias_ : Tensor
    global_mean_ : float
    user_ids_, item_ids_ : numpy.ndarray
        Ids in index order.
    history_ : dict
        ``loss`` (objective / |Omega|, never increases), ``time``, ``val_rmse``.

    References
    ----------
    Zhou et al. Large-scale parallel collaborative filtering for the Netflix Prize. AAIM
    2008. Koren, Bell, Volinsky. Matrix factorization techniques for recommender
    systems. Computer 42(8), 2009. Gu et al. Low Rank Matrix Completion via Robust
    Alternating Minimization in Nearly Linear Time. ICLR 2024 (sketched solver).
    Koren. Factorization meets the neighborhood. KDD 2008 (neighbourhood correction).

    Examples
    --------
    >>> import pandas as pd
    >>> from rankfold.completion import ALS
    >>> df = pd.DataFrame({"user": [1, 1, 2, 2, 3], "item": ["a", "b", "a", "c", "b"],
    ...                    "rating": [5.0, 3.0, 4.0, 2.0, 1.0]})
    >>> model = ALS(rank=1, generator=0).fit(df)
    >>> model.predict([1], ["c"]).shape
    (1,)
    """

    def __init__(self, rank: int = _ALS_RANK, *, reg: float = _ALS_REG, biases: bool = True,
                 reg_bias: float = _ALS_REG_BIAS, reg_exponent: float = _ALS_EXPONENT,
                 solver: str = "auto", n_iter: int = _ALS_ITER, tol: float = 1e-5,
                 neighbors: int = _ALS_NEIGHBORS, neighbor_reg: float = _ALS_NEIGHBOR_REG,
                 neighbor_scale: float = _ALS_NEIGHBOR_SCALE,
                 dtype: Any = None, device: Any = None, duplicates: str = "mean",
                 n_threads: int | None = None, generator: GeneratorLike = None) -> None:
        self.rank = rank
        self.reg = reg
        self.biases = biases
        self.reg_bias = reg_bias
        self.reg_exponent = reg_exponent
        self.solver = solver
        self.n_iter = n_iter
        self.tol = tol
        self.neighbors = neighbors
        self.neighbor_reg = neighbor_reg
        self.neighbor_scale = neighbor_scale
        self.dtype = dtype
        self.device = device
        self.duplicates = duplicates
        self.n_threads = n_threads
        self.generator = generator

    def _check_params(self) -> None:
        check_int(self.neighbors, "neighbors", "ALS", low=0)
        check_float(self.neighbor_reg, "neighbor_reg", "ALS", low=0.0)
        check_float(self.neighbor_scale, "neighbor_scale", "ALS", low=0.0)
        if self.neighbors > 0 and self.neighbor_reg == 0:
            raise InvalidParameterError(
                "The 'neighbor_reg' parameter of ALS must be > 0 when neighbors > 0. Got 0.")
        check_float(self.reg, "reg", "ALS", low=0.0)
        check_float(self.reg_bias, "reg_bias", "ALS", low=0.0)
        check_float(self.reg_exponent, "reg_exponent", "ALS", low=0.0, high=2.0)
        check_bool(self.biases, "biases", "ALS")
        check_option(self.solver, "solver", "ALS", SOLVER_NAMES)
        check_int(self.n_iter, "n_iter", "ALS", low=1)
        check_float(self.tol, "tol", "ALS", low=0.0)

    def _fit_model(self, problem: Problem, validation: Validation | None,
                   generator: torch.Generator, callback: Callback | None) -> CompletionModel:
        return als(problem, self.rank, reg=self.reg, reg_bias=self.reg_bias,
                   reg_exponent=self.reg_exponent, biases=self.biases, n_iter=self.n_iter,
                   tol=self.tol, opts=SolverOptions(solver=self.solver), generator=generator,
                   validation=validation, callback=callback)

    def _fold_in_ridge(self, d: int) -> tuple[torch.Tensor, float]:
        ridge = torch.full((d,), float(self.reg), dtype=torch.float64)
        if self.biases:
            ridge[-1] = self.reg_bias
        return ridge, float(self.reg_exponent)

    def _neighbor_config(self) -> tuple[int, float, float] | None:
        if not self.neighbors:
            return None
        return int(self.neighbors), float(self.neighbor_reg), float(self.neighbor_scale)


class AltMin(CompletionEstimator):
    """Robust alternating minimization for incoherent low-rank matrices (no biases).

    Spectral initialisation from ``P_Omega(M) / p``, row clipping for incoherence, then
    alternating least-squares updates (exact or sketch-preconditioned) with a QR between
    half steps. Recovers an incoherent rank-``k`` matrix exactly from enough samples.
    Use :class:`ALS` for noisy ratings.

    Parameters
    ----------
    rank : int
        Target rank ``k``.
    n_iter : int, default 50
        Number of (V, U) update pairs.
    tol : float, default 1e-12
        Stop when the RMSE on the observed entries falls below ``tol`` times their RMS.
    clip : bool, default True
        Clip rows of the initial factor whose norm exceeds ``clip_factor sqrt(k/m)``.
    clip_factor : float, default 4.0
        Row-norm bound (``2 sqrt(mu)`` with incoherence ``mu = 4``).
    sample_splitting : bool, default False
        Fresh samples per half step (as in the analysis; costs accuracy in practice).
    solver : {"auto", "cholesky", "cholesky_bf16", "sketch", "cg"}, default "auto"
        Row solver; "sketch" is the paper's nearly-linear-time approximate solve.
    reg : float, default 0.0
        Ridge on every row problem (0 as published).
    dtype, device, duplicates, n_threads, generator
        As in :class:`ALS`.

    Attributes
    ----------
    history_ : dict
        ``loss`` (mean squared residual on Omega), ``incoherence_u``, ``incoherence_v``
        (``m/k max ||U_i||^2`` per iteration), ``incoherence_init``, ``time``.

    References
    ----------
    Jain, Netrapalli, Sanghavi. STOC 2013, Algorithm 2. Gu, Song, Yin, Zhang. ICLR 2024
    (arXiv:2302.11068), Algorithm 1.

    Examples
    --------
    >>> import numpy as np
    >>> from rankfold.completion import AltMin
    >>> rng = np.random.default_rng(0)
    >>> M = rng.standard_normal((60, 2)) @ rng.standard_normal((2, 50))
    >>> M_obs = np.where(rng.random(M.shape) < 0.5, M, np.nan)
    >>> est = AltMin(2, generator=0).fit(M_obs)
    >>> bool(np.abs(est.reconstruct() - M).max() < 1e-6)
    True
    """

    def __init__(self, rank: int, *, n_iter: int = 50, tol: float = 1e-12, clip: bool = True,
                 clip_factor: float = 4.0, sample_splitting: bool = False,
                 solver: str = "auto", reg: float = 0.0, dtype: Any = None,
                 device: Any = None, duplicates: str = "mean", n_threads: int | None = None,
                 generator: GeneratorLike = None) -> None:
        self.rank = rank
        self.n_iter = n_iter
        self.tol = tol
        self.clip = clip
        self.clip_factor = clip_factor
        self.sample_splitting = sample_splitting
        self.solver = solver
        self.reg = reg
        self.dtype = dtype
        self.device = device
        self.duplicates = duplicates
        self.n_threads = n_threads
        self.generator = generator

    def _check_params(self) -> None:
        check_int(self.n_iter, "n_iter", "AltMin", low=1)
        check_float(self.tol, "tol", "AltMin", low=0.0)
        check_bool(self.clip, "clip", "AltMin")
        check_float(self.clip_factor, "clip_factor", "AltMin", low=1.0)
        check_bool(self.sample_splitting, "sample_splitting", "AltMin")
        check_option(self.solver, "solver", "AltMin", SOLVER_NAMES)
        check_float(self.reg, "reg", "AltMin", low=0.0)

    def _fit_model(self, problem: Problem, validation: Validation | None,
                   generator: torch.Generator, callback: Callback | None) -> CompletionModel:
        return altmin(problem, self.rank, n_iter=self.n_iter, tol=self.tol, clip=self.clip,
                      clip_factor=self.clip_factor, sample_splitting=self.sample_splitting,
                      opts=SolverOptions(solver=self.solver), reg=self.reg,
                      generator=generator, validation=validation, callback=callback)

    def _fold_in_ridge(self, d: int) -> tuple[torch.Tensor, float]:
        return torch.full((d,), float(self.reg), dtype=torch.float64), 0.0


class SoftImpute(CompletionEstimator):
    """Nuclear-norm regularised completion (sparse-plus-low-rank SVDs, never dense).

    Parameters
    ----------
    rank : int, default 50
        Largest rank of the iterate.
    shrinkage : float, optional
        Singular-value threshold ``lambda``; None uses ``0.3 sigma_1`` of the observed
        centred matrix.
    n_iter : int, default 100
    tol : float, default 1e-4
        Relative change ``||Z_new - Z||_F^2 / ||Z||_F^2`` at which to stop.
    biases : bool, default True
        Remove the global mean and damped biases first.
    reg_bias : float, default 5.0
        Damping of the biases (added to each count).
    svd_iter : int, default 2
        Power iterations per warm-started SVD.
    dtype, device, duplicates, n_threads, generator
        As in :class:`ALS`.

    References
    ----------
    Mazumder, Hastie, Tibshirani. Spectral Regularization Algorithms for Learning Large
    Incomplete Matrices. JMLR 2010, Algorithm 1.

    Examples
    --------
    >>> import numpy as np
    >>> from rankfold.completion import SoftImpute
    >>> rng = np.random.default_rng(0)
    >>> M = rng.standard_normal((40, 3)) @ rng.standard_normal((3, 30))
    >>> est = SoftImpute(5, shrinkage=0.1, generator=0).fit(
    ...     np.where(rng.random(M.shape) < 0.6, M, np.nan))
    >>> est.reconstruct().shape
    (40, 30)
    """

    def __init__(self, rank: int = 50, *, shrinkage: float | None = None, n_iter: int = 100,
                 tol: float = 1e-4, biases: bool = True, reg_bias: float = 5.0,
                 svd_iter: int = 2, dtype: Any = None, device: Any = None,
                 duplicates: str = "mean", n_threads: int | None = None,
                 generator: GeneratorLike = None) -> None:
        self.rank = rank
        self.shrinkage = shrinkage
        self.n_iter = n_iter
        self.tol = tol
        self.biases = biases
        self.reg_bias = reg_bias
        self.svd_iter = svd_iter
        self.dtype = dtype
        self.device = device
        self.duplicates = duplicates
        self.n_threads = n_threads
        self.generator = generator

    def _check_params(self) -> None:
        check_float(self.shrinkage, "shrinkage", "SoftImpute", low=0.0, allow_none=True)
        check_int(self.n_iter, "n_iter", "SoftImpute", low=1)
        check_float(self.tol, "tol", "SoftImpute", low=0.0)
        check_bool(self.biases, "biases", "SoftImpute")
        check_float(self.reg_bias, "reg_bias", "SoftImpute", low=0.0)
        check_int(self.svd_iter, "svd_iter", "SoftImpute", low=0)

    def _fit_model(self, problem: Problem, validation: Validation | None,
                   generator: torch.Generator, callback: Callback | None) -> CompletionModel:
        return soft_impute(problem, self.rank, shrinkage=self.shrinkage, n_iter=self.n_iter,
                           tol=self.tol, biases=self.biases, reg_bias=self.reg_bias,
                           svd_iter=self.svd_iter, generator=generator,
                           validation=validation, callback=callback)

    def _fold_in_ridge(self, d: int) -> tuple[torch.Tensor, float]:
        # the user half step of the equivalent factored problem (Hastie et al. 2015):
        # ridge = lambda on the factors scaled by sqrt(s), none on the bias coordinate
        shrink = float(self.model_.history.get("shrinkage", self.shrinkage or 0.0))
        ridge = torch.full((d,), shrink, dtype=torch.float64)
        if d > self.model_.item_factors.shape[1]:
            ridge[-1] = float(self.reg_bias)
        return ridge, 0.0
