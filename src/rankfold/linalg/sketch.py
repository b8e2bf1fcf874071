"""Random sketching operators: Gaussian, SRHT, CountSketch and sparse sign.

A sketch is a random matrix ``S`` of shape ``(size, d)`` with ``E[S^T S] = I_d``: it maps
``d``-dimensional vectors to ``size`` dimensions while (with high probability) preserving
the norms of all vectors of a fixed low-dimensional subspace (a *subspace embedding*).

Conventions
-----------
``side="left"``
    ``A`` has shape ``(d, n)`` (or ``(*, d, n)`` for dense torch input) and the result is
    ``S @ A`` of shape ``(size, n)``: the rows of ``A`` are compressed.
``side="right"``
    ``A`` has shape ``(n, d)`` (or ``(*, n, d)``) and the result is ``A @ S.T`` of shape
    ``(n, size)``: the columns of ``A`` are compressed.

numpy in gives numpy out, torch in gives torch out (on the input's device and in its
dtype), scipy.sparse in gives a dense numpy array (sketches are small and dense).

The operator objects (:class:`GaussianSketch`, :class:`SRHTSketch`, :class:`CountSketch`,
:class:`SparseSignSketch`) draw their randomness once at construction, so the same ``S``
can be applied to many inputs (``S @ A``, ``S @ b``, ``X @ S.T``) without redrawing.
:func:`sketch` is the one-shot functional form.

References
----------
.. [1] N. Halko, P.-G. Martinsson, J. A. Tropp, "Finding structure with randomness",
   SIAM Review 53 (2011), Sec. 4.6 (Gaussian and SRFT test matrices).
.. [2] J. A. Tropp, "Improved analysis of the subsampled randomized Hadamard transform",
   Adv. Adapt. Data Anal. 3 (2011).
.. [3] K. L. Clarkson, D. P. Woodruff, "Low-rank approximation and regression in input
   sparsity time", J. ACM 63 (2017) (CountSketch).
.. [4] J. Nelson, H. L. Nguyen, "OSNAP: faster numerical linear algebra algorithms via
   sparser subspace embeddings", FOCS 2013 (sparse sign embeddings); P. Li, T. Hastie,
   K. Church, "Very sparse random projections", KDD 2006.
"""

from __future__ import annotations

import abc
import math
import warnings
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from .._array import as_tensor
from .._errors import ShapeError
from .._random import GeneratorLike, check_generator
from .._validation import check_int, check_option, param_error

__all__ = [
    "SketchOperator",
    "GaussianSketch",
    "SRHTSketch",
    "CountSketch",
    "SparseSignSketch",
    "SKETCHES",
    "make_sketch",
    "sketch",
    "fwht",
]

_SIDES = ("left", "right")


def fwht(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Unnormalised fast Walsh-Hadamard transform of ``x`` along ``dim``.

    Computes ``H @ x`` (for ``dim=0``) with the Sylvester-ordered Hadamard matrix ``H``
    of entries +-1, in ``O(N log N)`` per column (Kronecker factors of at most 64 x 64,
    each applied as one batched GEMM). The length along ``dim`` must be a power of two.
    Returns a new tensor.

    Examples
    --------
    >>> import torch
    >>> fwht(torch.tensor([1.0, 0.0, 0.0, 0.0]))
    tensor([1., 1., 1., 1.])
    """
    n = x.shape[dim]
    if n & (n - 1):
        raise ShapeError(f"fwht needs a power-of-two length along dim {dim}. Got {n}.")
    y = x.movedim(dim, 0).clone(memory_format=torch.contiguous_format)
    rest = y.shape[1:]
    return _fwht_inplace(y.reshape(n, -1)).reshape(n, *rest).movedim(0, dim)


_FWHT_BLOCK = 6  # Hadamard factors of at most 2^6 = 64: small dense GEMMs


def _hadamard(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    H = torch.ones((1, 1), dtype=dtype, device=device)
    while H.shape[0] < n:
        H = torch.cat([torch.cat([H, H], 1), torch.cat([H, -H], 1)], 0)
    return H


def _fwht_inplace(y: torch.Tensor) -> torch.Tensor:
    """Unnormalised FWHT along dim 0 of a contiguous 2-D tensor, written into ``y``.

    Uses the Kronecker factorisation ``H_N = H_{2^a1} (x) H_{2^a2} (x) ...`` with factors
    of at most 64 x 64: each factor is one batched GEMM over a reshaped view (a few passes
    over memory instead of ``log2 N`` butterfly passes), ``O(N k sum 2^aj)`` flops.
    """
    n, k = y.shape
    bits = n.bit_length() - 1
    sizes = []
    while bits > 0:
        take = min(_FWHT_BLOCK, bits)
        sizes.append(1 << take)
        bits -= take
    left = 1
    for size in sizes:
        right = n // (left * size)
        H = _hadamard(size, y.dtype, y.device)
        view = y.view(left, size, right * k)
        view.copy_(torch.matmul(H, view))
        left *= size
    return y


class SketchOperator(abc.ABC):
    """Base class of the sketching operators: a random ``(size, d)`` matrix ``S``.

    Subclasses draw their randomness in ``__init__`` and implement ``_left(X)`` for a
    dense 2-D tensor ``X`` of shape ``(d, k)`` (returning ``S @ X``), ``_dense()`` and,
    where it pays, ``_left_scipy(A)`` for scipy.sparse ``A``.

    Parameters
    ----------
    d : int
        Dimension being compressed (rows of ``A`` for ``side="left"``).
    size : int
        Sketch dimension (rows of ``S``).
    generator : int, torch.Generator, numpy.random.Generator or None
        Source of randomness (drawn once, here).
    dtype : torch.dtype, default torch.float64
        dtype ``to_dense`` returns; applications follow the input's dtype.
    device : torch.device or str, optional
        Device of the random state (default CPU); applications follow the input.
    """

    name: ClassVar[str] = ""
    __array_ufunc__ = None  # numpy defers operators to us

    def __init__(self, d: int, size: int, *, generator: GeneratorLike = None,
                 dtype: torch.dtype = torch.float64,
                 device: torch.device | str | None = None) -> None:
        func = type(self).__name__
        self.d = check_int(d, "d", func, low=1)
        self.size = check_int(size, "size", func, low=1)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise param_error("dtype", func, "a floating torch.dtype", dtype)
        self.dtype = dtype
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self._generator = check_generator(generator, self.device, func=func)

    # -- public API ------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        """``(size, d)``."""
        return (self.size, self.d)

    def apply(self, A: Any, *, side: str = "left") -> Any:
        """Apply the sketch: ``S @ A`` (``side="left"``) or ``A @ S.T`` (``side="right"``).

        Parameters
        ----------
        A : array-like, torch.Tensor or scipy.sparse matrix
            Shape ``(d, n)`` / ``(*, d, n)`` for ``side="left"``, ``(n, d)`` / ``(*, n, d)``
            for ``side="right"`` (batched input: dense torch or numpy only). A 1-D input
            of length ``d`` is treated as a vector.

        Returns
        -------
        Same kind as ``A`` (numpy for scipy.sparse), shape ``(size, n)`` / ``(n, size)``.
        """
        func = f"{type(self).__name__}.apply"
        check_option(side, "side", func, _SIDES)
        if sp.issparse(A):
            return self._apply_scipy(A, side, func)
        if isinstance(A, spla.LinearOperator):
            raise param_error("A", func, "a dense array, a torch tensor or a scipy.sparse "
                              "matrix", A)
        X, info = as_tensor(A, "A", func, ndim=1, batched=True)
        vector = X.ndim == 1
        if vector:
            X = X[:, None] if side == "left" else X[None, :]
        axis = -2 if side == "left" else -1
        if X.shape[axis] != self.d:
            want = "(d, n)" if side == "left" else "(n, d)"
            raise ShapeError(
                f"The 'A' parameter of {func} must have shape {want} with d={self.d} for "
                f"side={side!r}. Got shape {tuple(A.shape)}.")
        out = self._apply_tensor(X, side)
        if vector:
            out = out[:, 0] if side == "left" else out[0]
        return out.cpu().numpy() if info.returns_numpy else out

    def __matmul__(self, A: Any) -> Any:
        """``S @ A``: the left application."""
        return self.apply(A, side="left")

    @property
    def T(self) -> _TransposedSketch:  # noqa: N802 (numpy spelling)
        """Transposed view, so that ``A @ S.T`` applies the sketch on the right."""
        return _TransposedSketch(self)

    def to_dense(self) -> torch.Tensor:
        """The sketch as a dense ``(size, d)`` tensor (dtype and device of the operator)."""
        return self._dense().to(dtype=self.dtype)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(d={self.d}, size={self.size})"

    # -- internals -------------------------------------------------------------------------
    def _apply_tensor(self, X: torch.Tensor, side: str) -> torch.Tensor:
        if side == "left":
            batch = X.shape[:-2]
            n = X.shape[-1]
            X2 = X.movedim(-2, 0).reshape(self.d, -1)
            Y = self._left(X2)
            return Y.reshape(self.size, *batch, n).movedim(0, -2)
        batch = X.shape[:-1]
        X2 = X.reshape(-1, self.d)
        Y = self._left(X2.T).T
        return Y.reshape(*batch, self.size)

    def _apply_scipy(self, A: Any, side: str, func: str) -> np.ndarray:
        axis = 0 if side == "left" else 1
        if A.ndim != 2 or A.shape[axis] != self.d:
            want = "(d, n)" if side == "left" else "(n, d)"
            raise ShapeError(
                f"The 'A' parameter of {func} must have shape {want} with d={self.d} for "
                f"side={side!r}. Got shape {tuple(A.shape)}.")
        if 0 in A.shape:
            raise ShapeError(f"The 'A' parameter of {func} must be non-empty. "
                             f"Got shape {tuple(A.shape)}.")
        M = sp.csr_array(A) if side == "left" else sp.csr_array(A.T)
        if M.dtype.kind not in "f":
            M = M.astype(np.float64)
        if not np.isfinite(M.data).all():
            raise param_error("A", func, "free of NaN and infinity", A)
        Y = self._left_scipy(M)
        return Y if side == "left" else np.ascontiguousarray(Y.T)

    def _left_scipy(self, M: sp.csr_array) -> np.ndarray:
        """``S @ M`` for a scipy CSR ``M`` of shape (d, n); default: through ``M.T @ S.T``."""
        St = self._dense().to(dtype=torch.from_numpy(np.empty(0, M.dtype)).dtype).cpu()
        return np.asarray((M.T @ St.T.numpy()).T)

    @abc.abstractmethod
    def _left(self, X: torch.Tensor) -> torch.Tensor:
        """``S @ X`` for a dense 2-D tensor ``X`` of shape (d, k)."""

    def _dense(self) -> torch.Tensor:
        eye = torch.eye(self.d, dtype=self.dtype, device=self.device)
        return self._left(eye)


class _TransposedSketch:
    """``S.T``: supports ``A @ S.T`` (right application) and ``to_dense``."""

    __array_ufunc__ = None  # make numpy defer ``ndarray @ S.T`` to __rmatmul__

    def __init__(self, op: SketchOperator) -> None:
        self.op = op

    @property
    def shape(self) -> tuple[int, int]:
        return (self.op.d, self.op.size)

    def __rmatmul__(self, A: Any) -> Any:
        return self.op.apply(A, side="right")

    def to_dense(self) -> torch.Tensor:
        return self.op.to_dense().T


class GaussianSketch(SketchOperator):
    """Dense Gaussian sketch with i.i.d. ``N(0, 1/size)`` entries.

    Cost of ``S @ A``: one GEMM, ``O(size * d * n)``. The most robust embedding (needed
    e.g. for l_inf-guarantee regression) and the slowest to apply.

    Examples
    --------
    >>> import torch
    >>> S = GaussianSketch(1000, 50, generator=0)
    >>> (S @ torch.randn(1000, 3, dtype=torch.float64)).shape
    torch.Size([50, 3])
    """

    name = "gaussian"

    def __init__(self, d: int, size: int, **kw: Any) -> None:
        super().__init__(d, size, **kw)
        self._S = torch.randn(self.size, self.d, generator=self._generator,
                              dtype=torch.float64, device=self.device)
        self._S.mul_(1.0 / math.sqrt(self.size))
        self._cache: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}

    def _matrix(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        key = (dtype, device)
        if key not in self._cache:
            self._cache[key] = self._S.to(dtype=dtype, device=device)
        return self._cache[key]

    def _left(self, X: torch.Tensor) -> torch.Tensor:
        return self._matrix(X.dtype, X.device) @ X

    def _dense(self) -> torch.Tensor:
        return self._S


class SRHTSketch(SketchOperator):
    """Subsampled randomized Hadamard transform ``S = sqrt(1/size) P H D``.

    ``D`` holds random signs, ``H`` is the ``N x N`` Walsh-Hadamard matrix (entries +-1,
    ``N`` = next power of two >= d, the input is zero-padded), ``P`` picks ``size`` of
    the ``N`` rows uniformly without replacement. Then ``E[S^T S] = I``. Cost of ``S @ A``:
    ``O(N n log N)`` via :func:`fwht`; ``size`` must not exceed ``N``.

    References: Tropp (2011); Halko et al. (2011), Sec. 4.6.

    Examples
    --------
    >>> import torch
    >>> S = SRHTSketch(1000, 64, generator=0)
    >>> (S @ torch.randn(1000, 3)).shape
    torch.Size([64, 3])
    """

    name = "srht"

    def __init__(self, d: int, size: int, **kw: Any) -> None:
        super().__init__(d, size, **kw)
        self.n_padded = 1 << max(0, (self.d - 1).bit_length())
        if self.size > self.n_padded:
            raise param_error("size", "SRHTSketch",
                              f"an int in [1, n_padded={self.n_padded}] (the padded length)",
                              size)
        g = self._generator
        self._signs = torch.randint(0, 2, (self.d,), generator=g, device=self.device) * 2 - 1
        self._rows = torch.randperm(self.n_padded, generator=g, device=self.device)[:self.size]

    def _left(self, X: torch.Tensor) -> torch.Tensor:
        signs = self._signs.to(device=X.device, dtype=X.dtype)
        Y = torch.zeros((self.n_padded, X.shape[1]), dtype=X.dtype, device=X.device)
        Y[: self.d] = X * signs[:, None]
        _fwht_inplace(Y)
        return Y[self._rows.to(X.device)] * (1.0 / math.sqrt(self.size))


class _SparseSketch(SketchOperator):
    """A sketch with few nonzeros per column, stored as COO indices and values."""

    def _init_sparse(self, rows: torch.Tensor, vals: torch.Tensor) -> None:
        # rows, vals: (d, k) row index and value of the k nonzeros of each column
        self._rows = rows
        self._vals = vals
        self._cols = torch.arange(self.d, device=self.device).repeat_interleave(rows.shape[1])
        self._csr_cache: dict[tuple[Any, ...], Any] = {}

    def _csr(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        key = (dtype, device)
        if key not in self._csr_cache:
            # CSR directly: a stable sort by row keeps the columns ascending in each row
            rows = self._rows.reshape(-1)
            order = torch.sort(rows, stable=True).indices
            crow = torch.zeros(self.size + 1, dtype=torch.int64, device=self.device)
            crow[1:] = torch.cumsum(torch.bincount(rows, minlength=self.size), 0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                self._csr_cache[key] = torch.sparse_csr_tensor(
                    crow.to(device), self._cols[order].to(device),
                    self._vals.reshape(-1)[order].to(device=device, dtype=dtype),
                    (self.size, self.d))
        return self._csr_cache[key]

    def _blocks(self, bs: int, dtype: torch.dtype) -> list[tuple[int, torch.Tensor]]:
        """``S`` split into CSR column blocks ``S[:, i:i + bs]`` (int32 indices), cached."""
        key = ("blocks", bs, dtype)
        if key not in self._csr_cache:
            k = self._rows.shape[1]
            nb = -(-self.d // bs)
            rows = self._rows.reshape(-1)
            block = self._cols // bs
            order = torch.sort(block * self.size + rows, stable=True).indices
            counts = torch.bincount(block * self.size + rows,
                                    minlength=nb * self.size).reshape(nb, self.size)
            crow = torch.zeros(nb, self.size + 1, dtype=torch.int64)
            crow[:, 1:] = torch.cumsum(counts, 1)
            local = (self._cols - block * bs)[order].to(torch.int32)
            vals = self._vals.reshape(-1)[order].to(dtype)
            out = []
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                for b in range(nb):
                    lo, w = b * bs * k, min(bs, self.d - b * bs)
                    hi = lo + w * k
                    out.append((b * bs, torch.sparse_csr_tensor(
                        crow[b].to(torch.int32), local[lo:hi], vals[lo:hi], (self.size, w))))
            self._csr_cache[key] = out
        return self._csr_cache[key]

    def _left(self, X: torch.Tensor) -> torch.Tensor:
        if X.dtype in (torch.float32, torch.float64):
            on_cpu = X.device.type == "cpu" and self._rows.device.type == "cpu"
            blocks = next((v for key, v in self._csr_cache.items()
                           if key[0] == "blocks" and key[2] == X.dtype), None)
            if blocks is None and on_cpu and X.shape[1] >= 16:
                bs = max(256, (1 << 24) // (X.shape[1] * X.element_size()))
                if self.d >= 4 * bs:
                    blocks = self._blocks(bs, X.dtype)
            if blocks is not None and on_cpu:
                # column blocks of S against ~16 MB row blocks of X: X is streamed once
                # and the scattered updates hit the cached output, instead of gathering
                # every row of X nnz times from memory (1.8x faster for 100000 x 500)
                # (torch's sparse addmm already uses every thread: splitting the blocks
                # over our own threads, each with its own output, was 1.5x slower)
                X = X.contiguous()
                out = torch.zeros((self.size, X.shape[1]), dtype=X.dtype)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    for i, Sb in blocks:
                        out.addmm_(Sb, X[i:i + Sb.shape[1]])
                return out
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                return self._csr(X.dtype, X.device) @ X.contiguous()
        # low-precision dtypes: scatter-add one nonzero per column at a time, O(k nnz(X))
        out = torch.zeros((self.size, X.shape[1]), dtype=X.dtype, device=X.device)
        rows = self._rows.to(X.device)
        vals = self._vals.to(device=X.device, dtype=X.dtype)
        for t in range(rows.shape[1]):
            out.index_add_(0, rows[:, t], X * vals[:, t, None])
        return out

    def _left_scipy(self, M: sp.csr_array) -> np.ndarray:
        S = sp.csr_array(
            (self._vals.reshape(-1).cpu().numpy().astype(M.dtype),
             (self._rows.reshape(-1).cpu().numpy(), self._cols.cpu().numpy())),
            shape=(self.size, self.d))
        return np.asarray((S @ M).toarray())

    def _dense(self) -> torch.Tensor:
        out = torch.zeros((self.size, self.d), dtype=torch.float64, device=self.device)
        out.index_put_((self._rows.reshape(-1), self._cols), self._vals.reshape(-1).double(),
                       accumulate=True)
        return out


class CountSketch(_SparseSketch):
    """CountSketch: each column of ``S`` has one +-1 in a uniformly random row.

    ``S @ A`` costs ``O(nnz(A))`` (a sparse-dense product). ``E[S^T S] = I`` exactly on the
    diagonal. Needs ``size ~ d_sub^2`` rows to embed a ``d_sub``-dimensional subspace;
    prefer :class:`SparseSignSketch` with a few nonzeros for ``size ~ d_sub log d_sub``.

    Reference: Clarkson & Woodruff (2017).

    Examples
    --------
    >>> import numpy as np
    >>> S = CountSketch(1000, 40, generator=0)
    >>> (S @ np.ones((1000, 2))).shape
    (40, 2)
    """

    name = "countsketch"

    def __init__(self, d: int, size: int, **kw: Any) -> None:
        super().__init__(d, size, **kw)
        g = self._generator
        rows = torch.randint(0, self.size, (self.d, 1), generator=g, device=self.device)
        vals = (torch.randint(0, 2, (self.d, 1), generator=g, device=self.device) * 2 - 1)
        self._init_sparse(rows, vals.to(torch.float64))


class SparseSignSketch(_SparseSketch):
    """Sparse sign embedding: each column has ``nnz`` entries +-1/sqrt(nnz) in distinct rows.

    ``S @ A`` costs ``O(nnz * nnz(A))``. With ``nnz`` of about 8 and ``size`` of a few times
    the subspace dimension it embeds as well as a Gaussian sketch (Tropp et al.'s
    recommended default) at a fraction of the cost.

    Parameters
    ----------
    d, size : int
        See :class:`SketchOperator`.
    nnz : int, default min(8, size)
        Nonzeros per column, in ``[1, size]``.

    References: Nelson & Nguyen (2013); Li, Hastie & Church (2006).

    Examples
    --------
    >>> import torch
    >>> S = SparseSignSketch(1000, 40, nnz=4, generator=0)
    >>> int((S.to_dense() != 0).sum())
    4000
    """

    name = "sparse_sign"

    def __init__(self, d: int, size: int, *, nnz: int | None = None, **kw: Any) -> None:
        super().__init__(d, size, **kw)
        k = min(8, self.size) if nnz is None else check_int(
            nnz, "nnz", "SparseSignSketch", low=1, high=self.size, high_name="size")
        self.nnz = k
        g = self._generator
        rows = self._distinct_rows(k, g)
        signs = torch.randint(0, 2, (self.d, k), generator=g, device=self.device) * 2 - 1
        self._init_sparse(rows, signs.to(torch.float64) / math.sqrt(k))

    def _distinct_rows(self, k: int, g: torch.Generator) -> torch.Tensor:
        """``(d, k)`` row indices, distinct within each column (redraw colliding columns)."""
        if 2 * k > self.size:  # dense-ish: a random permutation per column is cheap enough
            keys = torch.rand((self.d, self.size), generator=g, device=self.device)
            return keys.argsort(dim=1)[:, :k]
        rows = torch.randint(0, self.size, (self.d, k), generator=g, device=self.device)
        while True:
            srt = rows.sort(dim=1).values
            bad = (srt[:, 1:] == srt[:, :-1]).any(dim=1).nonzero().reshape(-1)
            if bad.numel() == 0:
                return rows
            rows[bad] = torch.randint(0, self.size, (bad.numel(), k), generator=g,
                                      device=self.device)

    def __repr__(self) -> str:
        return f"SparseSignSketch(d={self.d}, size={self.size}, nnz={self.nnz})"


SKETCHES: dict[str, type[SketchOperator]] = {
    "gaussian": GaussianSketch,
    "srht": SRHTSketch,
    "countsketch": CountSketch,
    "sparse_sign": SparseSignSketch,
}


def make_sketch(kind: str, d: int, size: int, *, generator: GeneratorLike = None,
                dtype: torch.dtype = torch.float64, device: torch.device | str | None = None,
                func: str = "make_sketch", **options: Any) -> SketchOperator:
    """Build a sketch operator by registry name (see :data:`SKETCHES`).

    ``options`` go to the class (e.g. ``nnz=`` for ``"sparse_sign"``).

    Examples
    --------
    >>> make_sketch("srht", 100, 10, generator=0)
    SRHTSketch(d=100, size=10)
    """
    check_option(kind, "kind", func, SKETCHES)
    return SKETCHES[kind](d, size, generator=generator, dtype=dtype, device=device, **options)


def sketch(A: Any, size: int, *, kind: str = "gaussian", side: str = "left",
           generator: GeneratorLike = None, **options: Any) -> Any:
    """Compress ``A`` with a random sketch: ``S @ A`` or ``A @ S.T``.

    Parameters
    ----------
    A : numpy array, torch.Tensor (any device, may be batched) or scipy.sparse matrix
        ``(d, n)`` for ``side="left"``, ``(n, d)`` for ``side="right"``.
    size : int
        Sketch dimension, ``>= 1`` (``<=`` the padded length for ``"srht"``).
    kind : {"gaussian", "srht", "countsketch", "sparse_sign"}, default "gaussian"
        Which operator (see :data:`SKETCHES`).
    side : {"left", "right"}, default "left"
        ``"left"`` returns ``S @ A`` of shape ``(size, n)``; ``"right"`` returns
        ``A @ S.T`` of shape ``(n, size)``.
    generator : int, torch.Generator, numpy.random.Generator or None
        Randomness (see :func:`rankfold._random.check_generator`).
    **options
        Passed to the operator class (``nnz=`` for ``"sparse_sign"``).

    Returns
    -------
    Same kind as ``A`` (dense numpy for scipy.sparse input); torch outputs keep the
    input's device and dtype.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.random.default_rng(0).standard_normal((2000, 5))
    >>> SA = sketch(A, 100, kind="sparse_sign", generator=0)
    >>> SA.shape
    (100, 5)
    """
    func = "sketch"
    check_int(size, "size", func, low=1)
    check_option(kind, "kind", func, SKETCHES)
    check_option(side, "side", func, _SIDES)
    if sp.issparse(A):
        d = A.shape[0] if side == "left" else A.shape[1]
        device: torch.device | None = None
    elif isinstance(A, torch.Tensor):
        if A.ndim == 0:
            raise ShapeError(f"The 'A' parameter of {func} must have at least 1 dimension. "
                             f"Got shape {tuple(A.shape)}.")
        d = A.shape[0] if A.ndim == 1 else (A.shape[-2] if side == "left" else A.shape[-1])
        device = A.device
    else:
        arr_shape = np.shape(A) if not isinstance(A, spla.LinearOperator) else A.shape
        if len(arr_shape) == 0:
            raise param_error("A", func, "an array with at least 1 dimension", A)
        d = arr_shape[0] if len(arr_shape) == 1 else (
            arr_shape[-2] if side == "left" else arr_shape[-1])
        device = None
    if d == 0:
        raise ShapeError(f"The 'A' parameter of {func} must be non-empty. "
                         f"Got shape {tuple(np.shape(A)) if not sp.issparse(A) else A.shape}.")
    op = make_sketch(kind, int(d), size, generator=generator, device=device, func=func,
                     **options)
    return op.apply(A, side=side)
