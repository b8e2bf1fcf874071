"""The interface every completion estimator shares: fit, predict, recommend, fold_in, save.

Subclasses store their arguments in ``__init__`` and implement ``_check_params``,
``_fit_model`` (returning a :class:`~rankfold.completion._model.CompletionModel`) and
``_fold_in_ridge``. Everything else (input parsing, id maps, unknown ids, persistence)
lives here once.
"""

from __future__ import annotations

import abc
import inspect
import json
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from .._errors import DataFileError, InvalidParameterError, NotFittedError
from .._io import save_npz_atomic
from .._random import check_generator
from .._validation import check_int, check_option, param_error
from ._als import Problem, Validation, prepare_problem
from ._data import (
    DEFAULT_COLUMNS,
    DUPLICATE_POLICIES,
    Ratings,
    UnknownIdWarning,
    encode_ids,
    id_index,
    to_ratings,
)
from ._model import CompletionModel, predict_indices, rmse_mae
from ._neighbors import N_STORED, ItemNeighbors, item_neighbors, neighbor_correction
from ._solvers import SolverOptions, build_layout, solve_side
from ._threads import thread_limit, threads_for

__all__ = ["CompletionEstimator", "Recommendations", "FoldIn"]

_FORMAT = "rankfold.completion/1"
Callback = Callable[[int, dict[str, Any]], None]


class Recommendations(NamedTuple):
    """Top-n items for one user, best first."""

    items: np.ndarray
    scores: np.ndarray


class FoldIn(NamedTuple):
    """Factors and bias of a user folded into a fitted model (item side fixed)."""

    factors: np.ndarray
    bias: float


def _resolve_dtype(dtype: Any, func: str) -> torch.dtype | None:
    if dtype is None:
        return None
    table = {"float32": torch.float32, "float64": torch.float64,
             torch.float32: torch.float32, torch.float64: torch.float64,
             np.float32: torch.float32, np.float64: torch.float64}
    try:
        return table[dtype]
    except (KeyError, TypeError):
        raise param_error("dtype", func, "None, 'float32' or 'float64'", dtype) from None


class CompletionEstimator(abc.ABC):
    """Base class of :class:`ALS`, :class:`AltMin` and :class:`SoftImpute`."""

    _registry: dict[str, type[CompletionEstimator]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        CompletionEstimator._registry[cls.__name__] = cls

    # ---- parameters ------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """The constructor arguments as a dict (used by cloning and ``save``)."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {n: getattr(self, n) for n in names}

    def clone(self) -> CompletionEstimator:
        """An unfitted copy with the same parameters."""
        return type(self)(**self.get_params())

    def __repr__(self) -> str:
        sig = inspect.signature(type(self).__init__).parameters
        shown = [f"{k}={v!r}" for k, v in self.get_params().items()
                 if sig[k].default is inspect.Parameter.empty or v is not sig[k].default
                 and v != sig[k].default]
        return f"{type(self).__name__}({', '.join(shown)})"

    def _check_common(self) -> None:
        name = type(self).__name__
        check_option(self.duplicates, "duplicates", name, DUPLICATE_POLICIES)
        _resolve_dtype(self.dtype, name)
        check_int(self.n_threads, "n_threads", name, low=1, allow_none=True)
        if self.device is not None and not isinstance(self.device, str | torch.device):
            raise param_error("device", name, "None, a str or a torch.device", self.device)
        if not isinstance(self.generator, torch.Generator | np.random.Generator):
            check_generator(self.generator, func=name)  # type check only; fit draws

    def _check_rank(self, rank: int, shape: tuple[int, int]) -> int:
        name = type(self).__name__
        high = min(shape) - 1
        if high < 1:
            raise InvalidParameterError(
                f"The 'X' parameter of {name} must have at least 2 users and 2 items. "
                f"Got shape {shape}."
            )
        return int(check_int(rank, "rank", name, low=1, high=high,
                             high_name="min(n_users, n_items) - 1"))

    # ---- hooks -----------------------------------------------------------------------
    @abc.abstractmethod
    def _check_params(self) -> None:
        """Validate the constructor arguments (called by :meth:`fit` before any work)."""

    @abc.abstractmethod
    def _fit_model(self, problem: Problem, validation: Validation | None,
                   generator: torch.Generator, callback: Callback | None) -> CompletionModel:
        """Fit the factors and biases on the prepared problem."""

    @abc.abstractmethod
    def _fold_in_ridge(self, d: int) -> tuple[torch.Tensor, float]:
        """(ridge per coordinate, row-weight exponent) used by :meth:`fold_in`."""

    def _neighbor_config(self) -> tuple[int, float, float] | None:
        """(k, reg, scale) of the item-neighbourhood correction, or None (off)."""
        return None

    # ---- fit -------------------------------------------------------------------------
    def fit(self, X: Any, *, columns: Sequence[str] | None = None,
            validation: Any = None, callback: Callback | None = None) -> CompletionEstimator:
        """Fit the model to the observed ratings.

        Parameters
        ----------
        X : DataFrame, scipy.sparse matrix, (rows, cols, values[, shape]) or dense array
            The observations (see :func:`rankfold.completion.to_ratings`).
        columns : sequence of 3 str, optional
            ``(user, item, rating)`` column names of a DataFrame.
        validation : same kind as ``X``, optional
            Held-out ratings; their RMSE is recorded in ``history_["val_rmse"]``.
        callback : callable, optional
            ``callback(iteration, record)`` after each iteration (record holds ``loss``,
            ``time`` and ``val_rmse`` when validation is given).

        Returns
        -------
        self
        """
        name = type(self).__name__
        self._check_common()
        self._check_params()
        if callback is not None and not callable(callback):
            raise param_error("callback", name, "a callable or None", callback)
        ratings = to_ratings(X, columns=columns, duplicates=self.duplicates, func=name)
        self._check_rank(self.rank, ratings.shape)
        dtype = _resolve_dtype(self.dtype, name) or ratings.dtype
        device = torch.device(self.device) if self.device is not None else ratings.device
        val = None
        if validation is not None:
            vr = to_ratings(validation, columns=columns, duplicates="mean", func=name)
            val = self._validation(ratings, vr, dtype, device)
        generator = check_generator(self.generator, device, func=name)
        n_threads = threads_for(self.n_threads, ratings.nnz, self.rank)
        with thread_limit(n_threads if device.type == "cpu" else None):
            problem = prepare_problem(ratings, dtype=dtype, device=device)
            model = self._fit_model(problem, val, generator, callback)
        order = self._store(model, ratings, problem)
        self._fit_neighbors(ratings, problem, order, generator)
        if val is not None and self.neighbors_ is not None:
            pred = self._predict_indices(val.rows.cpu().numpy(), val.cols.cpu().numpy(),
                                         clip=True)
            model.history["val_rmse_neighbors"] = [rmse_mae(pred, val.values)[0]]
        return self

    def _fit_neighbors(self, ratings: Ratings, problem: Problem, order: np.ndarray,
                       generator: torch.Generator) -> None:
        """Item neighbours and the factor model's training residuals (when enabled)."""
        self.neighbors_: ItemNeighbors | None = None
        self._seen_resid: np.ndarray | None = None
        cfg = self._neighbor_config()
        if cfg is None:
            return
        k = cfg[0]
        fitted = predict_indices(self.model_, problem.rows, problem.cols)
        resid = ratings.values - fitted.double().cpu().numpy()
        values = ratings.values.astype(np.float64)
        z = values - values.mean()
        # a numpy stream from the fit's generator (used only on large data, to pick the
        # users behind the similarities)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator,
                                 device=generator.device))
        self.neighbors_ = item_neighbors(ratings.rows, ratings.cols, z, ratings.shape,
                                         n_neighbors=max(N_STORED, 4 * k),
                                         rng=np.random.default_rng(seed))
        self._seen_resid = resid[order]

    def _validation(self, train: Ratings, val: Ratings, dtype: torch.dtype,
                    device: torch.device) -> Validation:
        if train.kind == "frame":
            r, _ = encode_ids(val.user_ids[val.rows], id_index(train.user_ids))
            c, _ = encode_ids(val.item_ids[val.cols], id_index(train.item_ids))
        else:
            r = np.where(val.rows < train.shape[0], val.rows, -1)
            c = np.where(val.cols < train.shape[1], val.cols, -1)
        return Validation(torch.from_numpy(r).to(device), torch.from_numpy(c).to(device),
                          torch.from_numpy(val.values).to(device, dtype))

    def _store(self, model: CompletionModel, ratings: Ratings, problem: Problem,
               ) -> np.ndarray:
        self.model_ = model
        self.user_ids_ = ratings.user_ids
        self.item_ids_ = ratings.item_ids
        self.columns_ = tuple(ratings.columns)
        self.input_kind_ = ratings.kind
        self.rating_range_ = problem.bounds
        # (row, col) order: the keys are unique (duplicates merged), so the unstable
        # sort is deterministic, and several times faster than lexsort on 1e7 pairs
        key = ratings.rows.astype(np.int64) * max(ratings.shape[1], 1) + ratings.cols
        order = np.argsort(key)
        counts = np.bincount(ratings.rows, minlength=ratings.shape[0])
        self._seen_indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._seen_indices = ratings.cols[order].astype(np.int64)
        self._user_index = id_index(self.user_ids_)
        self._item_index = id_index(self.item_ids_)
        self.history_ = model.history
        return order

    # ---- fitted state ----------------------------------------------------------------
    def _check_fitted(self, method: str) -> CompletionModel:
        if not hasattr(self, "model_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet; call fit before "
                f"{method}."
            )
        return self.model_

    @property
    def user_factors_(self) -> torch.Tensor:
        """Tensor (n_users, rank)."""
        return self._check_fitted("user_factors_").user_factors

    @property
    def item_factors_(self) -> torch.Tensor:
        """Tensor (n_items, rank)."""
        return self._check_fitted("item_factors_").item_factors

    @property
    def user_bias_(self) -> torch.Tensor:
        return self._check_fitted("user_bias_").user_bias

    @property
    def item_bias_(self) -> torch.Tensor:
        return self._check_fitted("item_bias_").item_bias

    @property
    def global_mean_(self) -> float:
        return self._check_fitted("global_mean_").global_mean

    @property
    def n_users_(self) -> int:
        self._check_fitted("n_users_")
        return len(self.user_ids_)

    @property
    def n_items_(self) -> int:
        self._check_fitted("n_items_")
        return len(self.item_ids_)

    # ---- prediction ------------------------------------------------------------------
    def _encode(self, users: Any, items: Any) -> tuple[np.ndarray, np.ndarray]:
        u, _ = encode_ids(users, self._user_index)
        i, _ = encode_ids(items, self._item_index)
        if u.shape != i.shape:
            raise InvalidParameterError(
                f"The 'users' and 'items' parameters of predict must have the same length. "
                f"Got {u.shape[0]} users and {i.shape[0]} items."
            )
        return u, i

    def predict(self, users: Any, items: Any = None, *, clip: bool = True,
                on_unknown: str = "warn") -> np.ndarray:
        """Predicted ratings for (user, item) pairs.

        Parameters
        ----------
        users : array-like of ids, or DataFrame
            User ids; a DataFrame supplies both columns (the training column names, or the
            first two columns) and ``items`` must be None.
        items : array-like of ids
            Item ids, same length as ``users``.
        clip : bool, default True
            Clip to the range of the training ratings.
        on_unknown : {"warn", "ignore", "error"}, default "warn"
            Pairs with an unknown user or item get the bias-only prediction (global mean
            plus the known side's bias), never NaN; "warn" issues an
            :class:`UnknownIdWarning` with their count, "error" raises instead.

        Returns
        -------
        numpy.ndarray, shape (n_pairs,)
        """
        self._check_fitted("predict")
        check_option(on_unknown, "on_unknown", "predict", ("warn", "ignore", "error"))
        import pandas as pd

        if isinstance(users, pd.DataFrame):
            if items is not None:
                raise InvalidParameterError(
                    "The 'items' parameter of predict must be None when 'users' is a "
                    "DataFrame. Got an items argument too.")
            frame = users
            cols = self.columns_[:2] if all(c in frame.columns for c in self.columns_[:2]) \
                else tuple(frame.columns[:2])
            if frame.shape[1] < 2:
                raise InvalidParameterError(
                    "The 'users' DataFrame of predict must have user and item columns. Got "
                    f"columns {list(frame.columns)}.")
            users, items = frame[cols[0]].to_numpy(), frame[cols[1]].to_numpy()
        elif items is None:
            raise param_error("items", "predict", "an array of item ids", None)
        u, i = self._encode(users, items)
        unknown = int(((u < 0) | (i < 0)).sum())
        if unknown:
            msg = (f"{unknown} of {u.shape[0]} pairs have a user or item unknown to the "
                   f"model; they get the bias-only prediction.")
            if on_unknown == "error":
                raise InvalidParameterError(
                    f"The 'users'/'items' parameters of predict must be known ids "
                    f"(on_unknown='error'). Got {unknown} pairs with unknown ids.")
            if on_unknown == "warn":
                warnings.warn(msg, UnknownIdWarning, stacklevel=2)
        return self._predict_indices(u, i, clip=clip).cpu().numpy()

    def _predict_indices(self, u: np.ndarray, i: np.ndarray, *, clip: bool) -> torch.Tensor:
        """Predictions at index pairs (-1 = unknown), with the neighbourhood correction."""
        model = self.model_
        dev = model.user_factors.device
        rows, cols = torch.from_numpy(u).to(dev), torch.from_numpy(i).to(dev)
        nb = getattr(self, "neighbors_", None)
        if nb is None:
            return predict_indices(model, rows, cols,
                                   bounds=self.rating_range_ if clip else None)
        pred = predict_indices(model, rows, cols)
        pred = pred + torch.from_numpy(self._correction(u, i)).to(dev, pred.dtype)
        return pred.clamp(*self.rating_range_) if clip else pred

    def _correction(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        k, reg, scale = self._neighbor_config() or (0, 0.0, 0.0)
        return neighbor_correction(self.neighbors_, self._seen_indptr, self._seen_indices,
                                   self._seen_resid, u, i, k=k, reg=reg, scale=scale)

    def reconstruct(self) -> np.ndarray | torch.Tensor:
        """The completed dense matrix (n_users, n_items), in training index order.

        Torch in, torch out; numpy otherwise. Memory is ``n_users * n_items``. This is
        the low-rank model only: ALS's item-neighbourhood correction (``neighbors > 0``)
        is applied by :meth:`predict` and :meth:`recommend`, not here.
        """
        model = self._check_fitted("reconstruct")
        full = (model.user_factors @ model.item_factors.T + model.global_mean
                + model.user_bias[:, None] + model.item_bias[None, :])
        return full if self.input_kind_ == "torch" else full.cpu().numpy()

    def recommend(self, user: Any, n: int = 10, *, exclude_seen: bool = True,
                  ) -> Recommendations:
        """The ``n`` items with the highest predicted rating for a known ``user``.

        Parameters
        ----------
        user : id
            A user id seen in fit (or added by :meth:`fold_in`).
        n : int, default 10
        exclude_seen : bool, default True
            Leave out the items the user rated in the training data.
        """
        model = self._check_fitted("recommend")
        n_items = len(self.item_ids_)
        check_int(n, "n", "recommend", low=1, high=n_items, high_name="n_items")
        idx, known = encode_ids(user, self._user_index)
        if idx.shape[0] != 1 or not known[0]:
            raise InvalidParameterError(
                f"The 'user' parameter of recommend must be a user id known to the model. "
                f"Got {user!r} instead (fold it in with fold_in(ratings, user=...)).")
        u = int(idx[0])
        scores = (model.item_factors @ model.user_factors[u] + model.item_bias
                  + model.user_bias[u] + model.global_mean)
        if getattr(self, "neighbors_", None) is not None:
            every = np.arange(n_items, dtype=np.int64)
            corr = self._correction(np.full(n_items, u, dtype=np.int64), every)
            scores = scores + torch.from_numpy(corr).to(scores.device, scores.dtype)
        if exclude_seen and u < len(self._seen_indptr) - 1:
            seen = self._seen_indices[self._seen_indptr[u]:self._seen_indptr[u + 1]]
            scores = scores.clone()
            scores[torch.from_numpy(seen).to(scores.device)] = -torch.inf
        k = min(n, int(torch.isfinite(scores).sum()))
        top = torch.topk(scores, k).indices.cpu().numpy()
        return Recommendations(self.item_ids_[top], scores[top].cpu().numpy())

    # ---- fold in ---------------------------------------------------------------------
    def fold_in(self, ratings: Any, *, user: Any = None) -> FoldIn:
        """Factors of a new user from their ratings, the item side kept fixed.

        Solves the same regularised least-squares problem as one user half step of the
        fit, so a user folded in gets (nearly) the factors a refit would give.

        Parameters
        ----------
        ratings : Mapping item -> rating, DataFrame (item, rating), or (items, values)
            The new user's ratings of known items (unknown items are ignored with a
            warning).
        user : id, optional
            When given, the user is added to the model so that :meth:`predict` and
            :meth:`recommend` know them. Must not be a known id.
        """
        model = self._check_fitted("fold_in")
        import pandas as pd

        if isinstance(ratings, Mapping):
            items, values = list(ratings.keys()), list(ratings.values())
        elif isinstance(ratings, pd.DataFrame):
            cols = [self.columns_[1], self.columns_[2]]
            if not all(c in ratings.columns for c in cols):
                cols = list(ratings.columns[-2:])
            items, values = ratings[cols[0]].to_numpy(), ratings[cols[1]].to_numpy()
        elif isinstance(ratings, tuple) and len(ratings) == 2:
            items, values = ratings
        else:
            raise param_error("ratings", "fold_in",
                              "a mapping item -> rating, a DataFrame or an (items, values) "
                              "tuple", type(ratings).__name__)
        values = np.asarray(values, dtype=np.float64)
        if values.size == 0:
            raise InvalidParameterError("The 'ratings' parameter of fold_in must hold at "
                                        "least one rating. Got none.")
        if not np.isfinite(values).all():
            raise InvalidParameterError("The 'ratings' parameter of fold_in must not contain "
                                        "NaN or infinite ratings.")
        if user is not None and encode_ids(user, self._user_index)[1][0]:
            raise InvalidParameterError(
                f"The 'user' parameter of fold_in must be a new user id. Got {user!r}, "
                f"which the model already knows.")
        new_id = None
        if user is not None:
            try:
                new_id = np.asarray([user]).astype(self.user_ids_.dtype, casting="same_kind")
            except (TypeError, ValueError):
                new_id = None
            if new_id is None or new_id.tolist()[0] != user:
                raise InvalidParameterError(
                    f"The 'user' parameter of fold_in must be an id of the same type as the "
                    f"training ids ({self.user_ids_.dtype}). Got {user!r} instead.")
        idx, known = encode_ids(items, self._item_index)
        if not known.all():
            warnings.warn(f"{int((~known).sum())} rated items are unknown to the model and "
                          f"were ignored.", UnknownIdWarning, stacklevel=2)
        idx, values = idx[known], values[known]
        if idx.size == 0:
            raise InvalidParameterError("The 'ratings' parameter of fold_in must rate at "
                                        "least one known item. Got none.")
        dt, dev = model.item_factors.dtype, model.item_factors.device
        k = model.item_factors.shape[1]
        biased = self._has_biases()
        d = k + 1 if biased else k
        ridge, exponent = self._fold_in_ridge(d)
        design = model.item_factors
        if biased:
            design = torch.cat([design, torch.ones(design.shape[0], 1, dtype=dt, device=dev)],
                               1)
        offset = model.global_mean + model.item_bias
        layout = build_layout(np.zeros(idx.size, dtype=np.int64), idx, values, 1,
                              design.shape[0], dtype=dt, device=dev)
        weight = layout.counts.to(dt).pow(exponent)
        x = solve_side(layout, design, offset, weight, ridge.to(dev, dt), None,
                       SolverOptions(solver="cholesky"))[0]
        factors, bias = (x[:k], x[k]) if biased else (x, torch.zeros((), dtype=dt, device=dev))
        if user is not None:
            model.user_factors = torch.cat([model.user_factors, factors[None]], 0)
            model.user_bias = torch.cat([model.user_bias, bias.reshape(1)], 0)
            if self.user_ids_.dtype.kind == "U":
                self.user_ids_ = np.append(self.user_ids_.astype(str), str(user))
            else:
                self.user_ids_ = np.append(self.user_ids_, new_id)
            self._user_index[user] = len(self.user_ids_) - 1
            self._seen_indptr = np.append(self._seen_indptr, self._seen_indptr[-1] + idx.size)
            order = np.argsort(idx)
            self._seen_indices = np.concatenate([self._seen_indices, idx[order]])
            if getattr(self, "neighbors_", None) is not None:
                # the new user's residuals under the folded-in factors
                sel = torch.from_numpy(idx).to(dev)
                fitted = (model.global_mean + float(bias) + model.item_bias[sel]
                          + model.item_factors[sel] @ factors).double().cpu().numpy()
                self._seen_resid = np.concatenate([self._seen_resid,
                                                   (values - fitted)[order]])
        return FoldIn(factors.cpu().numpy(), float(bias))

    def _has_biases(self) -> bool:
        return bool(getattr(self, "biases", False))

    # ---- persistence -----------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the fitted model to ``path`` atomically (an ``.npz``: arrays + JSON).

        No pickled objects: ids are stored as numeric or unicode arrays and the
        parameters, history and metadata as JSON.
        """
        model = self._check_fitted("save")
        params = {k: (v if isinstance(v, str | int | float | bool | type(None)) else
                      (str(v) if isinstance(v, torch.dtype | torch.device) else None))
                  for k, v in self.get_params().items()}
        if isinstance(self.dtype, torch.dtype):
            params["dtype"] = str(self.dtype).replace("torch.", "")
        meta = {
            "format": _FORMAT, "class": type(self).__name__, "params": params,
            "global_mean": model.global_mean, "rating_range": list(self.rating_range_),
            "columns": list(self.columns_), "input_kind": self.input_kind_,
            "history": model.history,
        }
        for name, ids in (("user_ids", self.user_ids_), ("item_ids", self.item_ids_)):
            if ids.dtype == object:
                raise DataFileError(f"Cannot save {name} of dtype object without pickle.")
        save_npz_atomic(
            path,
            meta=np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8),
            user_factors=model.user_factors.cpu().numpy(),
            item_factors=model.item_factors.cpu().numpy(),
            user_bias=model.user_bias.cpu().numpy(), item_bias=model.item_bias.cpu().numpy(),
            user_ids=self.user_ids_, item_ids=self.item_ids_,
            seen_indptr=self._seen_indptr, seen_indices=self._seen_indices,
            **self._neighbor_arrays(),
        )

    def _neighbor_arrays(self) -> dict[str, np.ndarray]:
        nb = getattr(self, "neighbors_", None)
        if nb is None:
            return {}
        return {"neighbor_index": nb.index, "neighbor_sim": nb.sim,
                "seen_resid": self._seen_resid}

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, device: Any = None) -> CompletionEstimator:
        """Read a model written by :meth:`save` (``ALS.load(path)`` or the base class)."""
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            meta = json.loads(arrays.pop("meta").tobytes().decode("utf-8"))
        except FileNotFoundError:
            raise DataFileError(f"No model file at {os.fspath(path)!r}.") from None
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
            raise DataFileError(f"{os.fspath(path)!r} is not a rankfold completion model "
                                f"file ({exc}).") from None
        if meta.get("format") != _FORMAT or meta.get("class") not in cls._registry:
            raise DataFileError(f"{os.fspath(path)!r} is not a rankfold completion model "
                                f"file (format {meta.get('format')!r}).")
        klass = cls._registry[meta["class"]]
        if cls is not CompletionEstimator and not issubclass(klass, cls):
            raise DataFileError(f"{os.fspath(path)!r} holds a {meta['class']} model, not a "
                                f"{cls.__name__}.")
        est = klass(**meta["params"])
        dev = torch.device(device) if device is not None else torch.device("cpu")
        model = CompletionModel(
            torch.from_numpy(arrays["user_factors"]).to(dev),
            torch.from_numpy(arrays["item_factors"]).to(dev),
            torch.from_numpy(arrays["user_bias"]).to(dev),
            torch.from_numpy(arrays["item_bias"]).to(dev),
            float(meta["global_mean"]), meta["history"])
        est.model_ = model
        est.user_ids_, est.item_ids_ = arrays["user_ids"], arrays["item_ids"]
        est.columns_ = tuple(meta.get("columns", DEFAULT_COLUMNS))
        est.input_kind_ = meta["input_kind"]
        est.rating_range_ = tuple(meta["rating_range"])
        est._seen_indptr, est._seen_indices = arrays["seen_indptr"], arrays["seen_indices"]
        est.neighbors_, est._seen_resid = None, None
        if "neighbor_index" in arrays and est._neighbor_config() is not None:
            est.neighbors_ = ItemNeighbors(arrays["neighbor_index"], arrays["neighbor_sim"])
            est._seen_resid = arrays["seen_resid"]
        est._user_index = id_index(est.user_ids_)
        est._item_index = id_index(est.item_ids_)
        est.history_ = model.history
        return est
