"""Conversion between what users hold and what the numerical core computes on.

The core computes on :mod:`torch` tensors. Users hand in numpy arrays, torch tensors on
any device, scipy.sparse matrices, :class:`scipy.sparse.linalg.LinearOperator` objects or
pandas objects. :func:`as_tensor` turns dense inputs into tensors (zero-copy where
possible) and records what came in, :func:`to_output` gives results back in the same
kind, and :class:`MatrixOperator` gives matrix-free access (``A @ X`` and ``A.T @ X``)
to dense, sparse and operator inputs alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from ._errors import ShapeError
from ._validation import check_finite, check_matrix_shape, param_error

__all__ = [
    "empty_prefaulted", "torch_dtype_of", "canonical_csr",
    "InputInfo",
    "as_tensor",
    "to_output",
    "to_numpy",
    "MatrixOperator",
    "as_operator",
    "is_sparse",
]

_FLOAT_TYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@dataclass(frozen=True)
class InputInfo:
    """What kind of object the user passed, so results can be returned in the same kind."""

    kind: str  # "numpy", "torch", "sparse", "operator", "pandas", "other"
    dtype: torch.dtype
    device: torch.device

    @property
    def returns_numpy(self) -> bool:
        return self.kind != "torch"


def is_sparse(x: Any) -> bool:
    """True for scipy.sparse matrices/arrays and sparse torch tensors."""
    if sp.issparse(x):
        return True
    return isinstance(x, torch.Tensor) and x.layout != torch.strided


def _float_dtype(dtype: torch.dtype, from_numpy: bool) -> torch.dtype:
    if dtype in _FLOAT_TYPES or dtype.is_complex:
        return dtype
    # integers and booleans: numpy users expect float64, torch users the default dtype
    return torch.float64 if from_numpy else torch.get_default_dtype()


def as_tensor(
    x: Any,
    name: str,
    func: str,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    ndim: int | None = 2,
    batched: bool = False,
    finite: bool = True,
    allow_empty: bool = False,
) -> tuple[torch.Tensor, InputInfo]:
    """Convert a dense array-like to a floating torch tensor.

    Parameters
    ----------
    x : array-like
        numpy array, torch tensor, pandas DataFrame/Series, or nested sequence.
    name, func : str
        Parameter and routine names for error messages.
    dtype : torch.dtype, optional
        Target dtype; by default floating inputs keep theirs and integers become float.
    device : optional
        Target device; by default the input's (CPU for non-torch inputs).
    ndim : int or None
        Required number of dimensions (with ``batched``: at least ``ndim``).
    finite : bool
        Reject NaN and infinity.

    Returns
    -------
    tensor : torch.Tensor
    info : InputInfo
    """
    if sp.issparse(x) or isinstance(x, spla.LinearOperator):
        raise param_error(name, func, "a dense array or tensor", x)
    kind = "other"
    if isinstance(x, torch.Tensor):
        kind = "torch"
        if x.layout != torch.strided:
            raise param_error(name, func, "a dense (strided) tensor", x)
        t = x
        from_numpy = False
    else:
        if type(x).__module__.startswith("pandas"):
            kind = "pandas"
            x = x.to_numpy()
        elif isinstance(x, np.ndarray):
            kind = "numpy"
        try:
            arr = np.asarray(x)
        except Exception as exc:  # ragged lists and other junk
            raise param_error(name, func, "an array-like of numbers", x) from exc
        if arr.dtype == object or arr.dtype.kind not in "biufc":
            raise param_error(name, func, "an array-like of numbers", x)
        if not arr.flags.writeable:
            arr = arr.copy()
        t = torch.from_numpy(arr)
        from_numpy = True
    target = dtype if dtype is not None else _float_dtype(t.dtype, from_numpy)
    t = t.to(device=device if device is not None else t.device, dtype=target)
    if ndim is not None:
        if batched:
            if t.ndim < ndim:
                raise ShapeError(
                    f"The '{name}' parameter of {func} must have at least {ndim} dimensions. "
                    f"Got shape {tuple(t.shape)}."
                )
        elif t.ndim != ndim:
            raise ShapeError(
                f"The '{name}' parameter of {func} must have {ndim} dimensions. "
                f"Got shape {tuple(t.shape)}."
            )
    if not allow_empty and t.numel() == 0:
        raise ShapeError(
            f"The '{name}' parameter of {func} must be non-empty. Got shape {tuple(t.shape)}."
        )
    if finite:
        check_finite(t, name, func)
    return t, InputInfo(kind=kind, dtype=t.dtype, device=t.device)


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """Detach, move to CPU and convert to numpy."""
    return t.detach().cpu().numpy()


def to_output(t: Any, info: InputInfo) -> Any:
    """Return ``t`` (a tensor, or a tuple/NamedTuple of tensors) in the kind the user gave."""
    if isinstance(t, tuple):
        vals = [to_output(v, info) for v in t]
        return type(t)(*vals) if hasattr(t, "_fields") else tuple(vals)
    if isinstance(t, torch.Tensor) and info.returns_numpy:
        return to_numpy(t)
    return t


_NUMPY_STORAGE = {torch.float32: np.float32, torch.float64: np.float64,
                  torch.bfloat16: np.int16, torch.float16: np.float16}


def empty_prefaulted(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """A new CPU tensor for a large result, its pages faulted in on the calling thread.

    numpy's allocator asks for transparent huge pages on large blocks and one thread
    faults them in fast (200 MB: 10 ms), while page faults taken inside a multithreaded
    kernel were slow and erratic on this machine (torch's allocator, 4 KB pages: 58 ms
    for the same cast to bfloat16; a numpy block faulted by the kernel's threads: up to
    220 ms). The contents are zeros (the faulting is a fill), but callers overwrite them.
    """
    np_dtype = _NUMPY_STORAGE.get(dtype)
    if np_dtype is None:
        return torch.empty(shape, dtype=dtype)
    arr = np.empty(shape, dtype=np_dtype)
    arr.fill(0)
    t = torch.from_numpy(arr)
    return t.view(dtype) if t.dtype != dtype else t


def torch_dtype_of(np_dtype: Any) -> torch.dtype:
    """The torch dtype matching a numpy dtype."""
    return torch.from_numpy(np.empty(0, dtype=np_dtype)).dtype


def canonical_csr(csr: sp.csr_array, source: Any = None) -> sp.csr_array:
    """``csr`` with sorted indices and no duplicates, never reordering the caller's arrays
    (``sum_duplicates`` works in place, so a non-canonical matrix is copied first).
    ``source``: the caller's CSR matrix ``csr`` was made from, whose cached flag spares the
    O(nnz) scan of a fresh wrapper."""
    flagged = source if getattr(source, "format", None) == "csr" else csr
    if flagged.has_canonical_format:
        return csr
    csr = csr.copy()
    csr.sum_duplicates()
    return csr


def _compiled_rows(csr: sp.csr_array) -> Any:
    """rankfold's compiled CSR kernels for a real float ``csr`` when numba is installed
    (multithreaded, no transposed copy; scipy's products run on one thread), else None."""
    if csr.dtype not in (np.float32, np.float64):
        return None
    from .linalg._spmm import SparseRows, have_kernels  # here: linalg imports this module

    if not have_kernels():
        return None
    return SparseRows(canonical_csr(csr))


class MatrixOperator:
    """Matrix-free view of a 2-D matrix: ``mm(X) = A @ X`` and ``rmm(X) = A.T @ X``.

    Wraps a dense tensor, a scipy.sparse matrix or a scipy LinearOperator. Inputs and
    outputs of ``mm``/``rmm`` are torch tensors on :attr:`device` with :attr:`dtype`.
    """

    def __init__(self, A: Any, name: str = "A", func: str = "rankfold", *,
                 dtype: torch.dtype | None = None, finite: bool = True) -> None:
        self._dense: torch.Tensor | None = None
        self._sparse: sp.csr_array | None = None
        self._sparse_t: sp.csr_array | None = None
        self._linop: spla.LinearOperator | None = None
        self._rows: Any = None  # rankfold.linalg._spmm.SparseRows for real sparse input
        if sp.issparse(A):
            check_matrix_shape(A.shape, name, func)
            csr = sp.csr_array(A)
            if csr.dtype.kind not in "fc":
                csr = csr.astype(np.float64)
            if dtype is not None:
                csr = csr.astype(torch.empty(0, dtype=dtype).numpy().dtype)
            if finite:
                check_finite(csr.data, name, func)
            self._sparse = csr
            self.shape = csr.shape
            self.dtype = torch_dtype_of(csr.dtype)
            self.device = torch.device("cpu")
            self.info = InputInfo("sparse", self.dtype, self.device)
            self._rows = _compiled_rows(csr)
        elif isinstance(A, spla.LinearOperator):
            check_matrix_shape(A.shape, name, func)
            self._linop = A
            self.shape = tuple(A.shape)
            npdt = np.dtype(A.dtype) if A.dtype is not None else np.dtype(np.float64)
            if npdt.kind not in "fc":
                npdt = np.dtype(np.float64)
            self.dtype = dtype or torch_dtype_of(npdt)
            self.device = torch.device("cpu")
            self.info = InputInfo("operator", self.dtype, self.device)
        else:
            t, info = as_tensor(A, name, func, dtype=dtype, finite=finite)
            check_matrix_shape(t.shape, name, func)
            self._dense = t
            self.shape = tuple(t.shape)
            self.dtype = t.dtype
            self.device = t.device
            self.info = info

    @property
    def is_dense(self) -> bool:
        return self._dense is not None

    @property
    def dense(self) -> torch.Tensor:
        if self._dense is None:
            raise TypeError("operator is not dense")
        return self._dense

    def mm(self, X: torch.Tensor) -> torch.Tensor:
        """``A @ X`` for ``X`` of shape (n, k)."""
        if self._dense is not None:
            return self._dense @ X
        if self._rows is not None and X.device.type == "cpu":
            return self._rows.mm(X.to(self.dtype))
        xn = to_numpy(X)
        if self._sparse is not None:
            out = self._sparse @ xn
        else:
            out = self._linop.matmat(xn)  # type: ignore[union-attr]
        return torch.as_tensor(np.asarray(out), dtype=self.dtype, device=self.device)

    def rmm(self, X: torch.Tensor) -> torch.Tensor:
        """``A.T @ X`` (conjugate transpose for complex) for ``X`` of shape (m, k)."""
        if self._dense is not None:
            return self._dense.mH @ X
        if self._rows is not None and X.device.type == "cpu":
            return self._rows.rmm(X.to(self.dtype))
        xn = to_numpy(X)
        if self._sparse is not None:
            if self._sparse_t is None:
                self._sparse_t = sp.csr_array(self._sparse.T.conj())
            out = self._sparse_t @ xn
        else:
            out = self._linop.rmatmat(xn)  # type: ignore[union-attr]
        return torch.as_tensor(np.asarray(out), dtype=self.dtype, device=self.device)

    def to_dense(self) -> torch.Tensor:
        """The full matrix as a dense tensor (forms it for sparse/operator inputs)."""
        if self._dense is not None:
            return self._dense
        if self._sparse is not None:
            return torch.from_numpy(self._sparse.toarray())
        eye = torch.eye(self.shape[1], dtype=self.dtype)
        return self.mm(eye)

    def fro_norm_sq(self) -> float | None:
        """Squared Frobenius norm in float64, or None when it is not cheaply known."""
        if self._dense is not None:
            return float(torch.linalg.matrix_norm(self._dense.to(torch.float64)) ** 2)
        if self._sparse is not None:
            d = self._sparse.data.astype(np.float64) if self._sparse.dtype.kind == "f" else \
                self._sparse.data
            return float(np.vdot(d, d).real)
        return None


def as_operator(A: Any, name: str = "A", func: str = "rankfold", **kw: Any) -> MatrixOperator:
    """Wrap ``A`` in a :class:`MatrixOperator` (validating shape and finiteness)."""
    if isinstance(A, MatrixOperator):
        return A
    return MatrixOperator(A, name, func, **kw)
