"""Turn what users hold (ratings tables, sparse or dense matrices) into one internal form.

Every completion routine works on :class:`Ratings`: three flat arrays (row index, column
index, value) over a ``(n_users, n_items)`` grid, plus the user and item ids that the
integer indexes stand for. Accepted inputs:

* a :class:`pandas.DataFrame` of ``(user, item, rating)`` rows: the columns named
  ``"user"``, ``"item"``, ``"rating"`` when present, otherwise the first three columns in
  that order, or the names given in ``columns=``; ids may be strings or ints;
* a :mod:`scipy.sparse` matrix or array (every stored entry is an observation, also a
  stored zero);
* a tuple ``(rows, cols, values)`` of COO arrays (integer indexes), optionally with a
  fourth element, the shape;
* a dense numpy array or torch tensor with ``NaN`` marking the missing entries.

Duplicate ``(user, item)`` pairs follow ``duplicates=``: ``"mean"`` (default) averages
them and warns with :class:`DuplicateRatingsWarning`, ``"last"`` keeps the last one
(also with a warning), ``"error"`` raises.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from .._errors import InvalidParameterError, RankfoldWarning, ShapeError
from .._validation import check_option, param_error

__all__ = [
    "Ratings",
    "to_ratings",
    "DuplicateRatingsWarning",
    "UnknownIdWarning",
    "DUPLICATE_POLICIES",
    "DEFAULT_COLUMNS",
]

DEFAULT_COLUMNS = ("user", "item", "rating")
DUPLICATE_POLICIES = ("mean", "last", "error")


class DuplicateRatingsWarning(RankfoldWarning):
    """The input held the same (user, item) pair more than once."""


class UnknownIdWarning(RankfoldWarning):
    """Predictions were asked for users or items the model never saw."""


@dataclass
class Ratings:
    """Observed entries of a partially observed ``(n_users, n_items)`` matrix.

    Attributes
    ----------
    rows, cols : numpy.ndarray of int64, shape (nnz,)
        User and item indexes of each observation (no duplicate pairs).
    values : numpy.ndarray of float, shape (nnz,)
        The observed values (finite).
    user_ids, item_ids : numpy.ndarray
        The id each index stands for (``arange`` for matrix inputs).
    kind : str
        ``"frame"``, ``"sparse"``, ``"coo"``, ``"dense"`` or ``"torch"``.
    dtype : torch.dtype
        Floating dtype the values came in (float32 stays float32).
    device : torch.device
        Device of a torch input (CPU otherwise).
    """

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    kind: str
    dtype: torch.dtype
    device: torch.device
    columns: tuple[str, str, str] = DEFAULT_COLUMNS

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.user_ids), len(self.item_ids))

    @property
    def nnz(self) -> int:
        return int(self.values.shape[0])

    def subset(self, mask_or_index: np.ndarray) -> Ratings:
        """The observations selected by a boolean mask or index array (same id maps)."""
        return Ratings(self.rows[mask_or_index], self.cols[mask_or_index],
                       self.values[mask_or_index], self.user_ids, self.item_ids, self.kind,
                       self.dtype, self.device, self.columns)

    def like_input(self, index: np.ndarray) -> Any:
        """The selected observations in the kind of object the user passed."""
        r, c, v = self.rows[index], self.cols[index], self.values[index]
        if self.kind == "frame":
            import pandas as pd

            return pd.DataFrame({self.columns[0]: self.user_ids[r],
                                 self.columns[1]: self.item_ids[c],
                                 self.columns[2]: v})
        if self.kind == "sparse":
            return sp.coo_matrix((v, (r, c)), shape=self.shape).tocsr()
        if self.kind == "coo":
            return (r.copy(), c.copy(), v.copy(), self.shape)
        dense = np.full(self.shape, np.nan, dtype=v.dtype)
        dense[r, c] = v
        if self.kind == "torch":
            return torch.from_numpy(dense).to(self.device)
        return dense


def _np_float(dtype: torch.dtype) -> type:
    return np.float32 if dtype == torch.float32 else np.float64


def _torch_float(np_dtype: np.dtype) -> torch.dtype:
    if np_dtype == np.float32:
        return torch.float32
    if np.issubdtype(np_dtype, np.floating):
        return torch.float64
    return torch.float64


def _factorize(values: Any) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    try:
        codes, uniques = pd.factorize(values, sort=True)
    except TypeError:  # mixed, unorderable ids
        codes, uniques = pd.factorize(values, sort=False)
    uniques = np.asarray(uniques)
    if uniques.dtype == object:
        uniques = uniques.astype(str)
    return codes.astype(np.int64), uniques


def _pick_columns(frame: Any, columns: Sequence[str] | None, func: str) -> tuple[str, str, str]:
    available = [str(c) for c in frame.columns]
    if columns is None:
        if all(c in frame.columns for c in DEFAULT_COLUMNS):
            return DEFAULT_COLUMNS
        if frame.shape[1] < 3:
            raise InvalidParameterError(
                f"The 'X' parameter of {func} must be a DataFrame with (user, item, rating) "
                f"columns. Got a DataFrame with columns {available} instead."
            )
        return tuple(frame.columns[:3])  # type: ignore[return-value]
    if (isinstance(columns, str) or not isinstance(columns, Sequence)
            or len(columns) != 3):
        raise param_error("columns", func, "a sequence of 3 column names (user, item, rating)",
                          columns)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InvalidParameterError(
            f"The 'columns' parameter of {func} names columns {missing} that are not in the "
            f"DataFrame. Got columns={list(columns)!r}; available columns: {available}."
        )
    return tuple(columns)  # type: ignore[return-value]


def _dedupe(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, n_cols: int,
            duplicates: str, func: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    key = rows * np.int64(max(n_cols, 1)) + cols
    # "last" needs input order among equal keys (stable); otherwise the faster sort
    order = np.argsort(key, kind="stable" if duplicates == "last" else None)
    key_sorted = key[order]
    dup = np.empty(key_sorted.shape, dtype=bool)
    dup[:1] = False
    dup[1:] = key_sorted[1:] == key_sorted[:-1]
    n_dup = int(dup.sum())
    if n_dup == 0:
        return rows, cols, values
    if duplicates == "error":
        first = order[np.flatnonzero(dup)[0]]
        raise InvalidParameterError(
            f"The 'X' parameter of {func} holds {n_dup} duplicate (user, item) pairs "
            f"(the first at row {int(first)}) and duplicates='error'. Pass "
            f"duplicates='mean' or 'last' to merge them."
        )
    warnings.warn(
        f"{n_dup} duplicate (user, item) pairs were merged with duplicates={duplicates!r}.",
        DuplicateRatingsWarning, stacklevel=4,
    )
    starts = np.flatnonzero(~dup)
    uniq = order[starts]
    if duplicates == "mean":
        sums = np.add.reduceat(values[order].astype(np.float64), starts)
        counts = np.diff(np.append(starts, len(order)))
        merged = (sums / counts).astype(values.dtype)
    else:  # last: the last occurrence in input order (stable sort keeps input order)
        ends = np.append(starts[1:], len(order)) - 1
        merged = values[order[ends]]
    return rows[uniq], cols[uniq], merged


def _check_values(values: np.ndarray, func: str) -> None:
    if values.size and not np.isfinite(values).all():
        bad = int((~np.isfinite(values)).sum())
        raise InvalidParameterError(
            f"The 'X' parameter of {func} must not contain NaN or infinite ratings. "
            f"Got {bad} non-finite values instead."
        )


def to_ratings(X: Any, *, columns: Sequence[str] | None = None, duplicates: str = "mean",
               func: str = "fit") -> Ratings:
    """Convert a supported input to :class:`Ratings` (validated, duplicates merged).

    Parameters
    ----------
    X : DataFrame, scipy.sparse matrix, (rows, cols, values[, shape]) tuple, or dense array
        The observations; see the module docstring.
    columns : sequence of 3 str, optional
        ``(user, item, rating)`` column names of a DataFrame.
    duplicates : {"mean", "last", "error"}, default "mean"
        What to do with repeated (user, item) pairs.
    func : str
        Name used in error messages.

    Raises
    ------
    InvalidParameterError
        Non-finite ratings, wrong column names, unsupported input, duplicates with
        ``duplicates="error"``.
    ShapeError
        No observations.
    """
    check_option(duplicates, "duplicates", func, DUPLICATE_POLICIES)
    device = torch.device("cpu")
    used_columns = DEFAULT_COLUMNS
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        pd = None
    if pd is not None and isinstance(X, pd.DataFrame):
        used_columns = _pick_columns(X, columns, func)
        ucol, icol, rcol = used_columns
        values = X[rcol].to_numpy()
        if not np.issubdtype(values.dtype, np.number) or values.dtype == bool:
            raise InvalidParameterError(
                f"The 'X' parameter of {func} must have a numeric rating column. "
                f"Column {rcol!r} has dtype {X[rcol].dtype} instead."
            )
        if X[ucol].isna().any() or X[icol].isna().any():
            raise InvalidParameterError(
                f"The 'X' parameter of {func} must not have missing user or item ids. "
                f"Got missing values in columns {ucol!r}/{icol!r}."
            )
        values = values.astype(np.float32 if values.dtype == np.float32 else np.float64)
        _check_values(values, func)
        if len(values) == 0:
            raise ShapeError(f"The 'X' parameter of {func} must hold at least one rating. "
                             f"Got an empty DataFrame.")
        rows, user_ids = _factorize(X[ucol].to_numpy())
        cols, item_ids = _factorize(X[icol].to_numpy())
        kind = "frame"
    elif sp.issparse(X):
        coo = sp.coo_matrix(X)
        if coo.ndim != 2:
            raise ShapeError(f"The 'X' parameter of {func} must be 2-D. Got {coo.shape}.")
        rows, cols = coo.row.astype(np.int64), coo.col.astype(np.int64)
        values = np.asarray(coo.data)
        if not np.issubdtype(values.dtype, np.floating):
            values = values.astype(np.float64)
        _check_values(values, func)
        user_ids, item_ids = np.arange(coo.shape[0]), np.arange(coo.shape[1])
        kind = "sparse"
    elif isinstance(X, tuple) and len(X) in (3, 4):
        rows = np.asarray(X[0])
        cols = np.asarray(X[1])
        values = np.asarray(X[2])
        if not (rows.ndim == cols.ndim == values.ndim == 1
                and len(rows) == len(cols) == len(values)):
            raise ShapeError(
                f"The 'X' parameter of {func} given as (rows, cols, values) needs three 1-D "
                f"arrays of equal length. Got shapes {rows.shape}, {cols.shape}, "
                f"{values.shape}."
            )
        if len(rows) and not (np.issubdtype(rows.dtype, np.integer)
                              and np.issubdtype(cols.dtype, np.integer)):
            raise param_error("X", func, "(rows, cols, values) with integer rows and cols",
                              f"dtypes {rows.dtype}, {cols.dtype}")
        if len(rows) and (rows.min() < 0 or cols.min() < 0):
            raise param_error("X", func, "(rows, cols, values) with non-negative indexes",
                              "negative indexes")
        if not np.issubdtype(values.dtype, np.floating):
            values = values.astype(np.float64)
        _check_values(values, func)
        if len(values) == 0:
            raise ShapeError(f"The 'X' parameter of {func} must hold at least one rating. "
                             f"Got empty COO arrays.")
        if len(X) == 4:
            shape = tuple(int(s) for s in X[3])
            if len(shape) != 2 or rows.max() >= shape[0] or cols.max() >= shape[1]:
                raise ShapeError(f"The 'X' parameter of {func} has indexes outside its shape "
                                 f"{shape}.")
        else:
            shape = (int(rows.max()) + 1, int(cols.max()) + 1)
        rows, cols = rows.astype(np.int64), cols.astype(np.int64)
        user_ids, item_ids = np.arange(shape[0]), np.arange(shape[1])
        kind = "coo"
    elif isinstance(X, np.ndarray | torch.Tensor):
        if isinstance(X, torch.Tensor):
            device = X.device
            arr = X.detach().cpu().numpy()
            kind = "torch"
        else:
            arr = X
            kind = "dense"
        if arr.ndim != 2:
            raise ShapeError(f"The 'X' parameter of {func} must be a 2-D matrix with NaN for "
                             f"missing entries. Got shape {arr.shape}.")
        if not np.issubdtype(arr.dtype, np.number) or arr.dtype == bool:
            raise param_error("X", func, "a numeric matrix", f"dtype {arr.dtype}")
        if not np.issubdtype(arr.dtype, np.floating):
            arr = arr.astype(np.float64)
        if np.isinf(arr).any():
            raise InvalidParameterError(
                f"The 'X' parameter of {func} must not contain infinite ratings (NaN marks "
                f"a missing entry). Got {int(np.isinf(arr).sum())} infinite values instead."
            )
        r, c = np.nonzero(~np.isnan(arr))
        rows, cols = r.astype(np.int64), c.astype(np.int64)
        values = arr[r, c]
        user_ids, item_ids = np.arange(arr.shape[0]), np.arange(arr.shape[1])
    else:
        raise param_error(
            "X", func,
            "a pandas DataFrame, a scipy.sparse matrix, a (rows, cols, values) tuple or a "
            "dense array with NaN for missing entries", type(X).__name__)
    if len(values) == 0:
        raise ShapeError(f"The 'X' parameter of {func} must hold at least one observed "
                         f"rating. Got none.")
    dtype = _torch_float(values.dtype)
    rows, cols, values = _dedupe(rows, cols, values, len(item_ids), duplicates, func)
    return Ratings(rows, cols, values.astype(_np_float(dtype)), np.asarray(user_ids),
                   np.asarray(item_ids), kind, dtype, device, used_columns)


def encode_ids(ids: Any, index: dict[Any, int]) -> tuple[np.ndarray, np.ndarray]:
    """Map ids to indexes; unknown ids get -1. Returns (indexes, known mask)."""
    arr = np.asarray(ids)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    out = np.fromiter((index.get(_key(v), -1) for v in arr.tolist()), dtype=np.int64,
                      count=arr.size)
    return out, out >= 0


def _key(v: Any) -> Any:
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def id_index(ids: np.ndarray) -> dict[Any, int]:
    """Dictionary id -> index (numpy scalars turned into Python scalars)."""
    return {_key(v): i for i, v in enumerate(ids.tolist())}
