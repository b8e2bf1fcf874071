"""Low-rank tensor formats: :class:`CPTensor`, :class:`TuckerTensor`, :class:`TTTensor`.

Each format is validated on construction and stores its parts as torch tensors; a format
built from numpy arrays hands numpy arrays back (``weights``, ``factors``, ``to_tensor()``,
``values_at()``), one built from torch tensors hands back torch tensors on the same device.
Every format can evaluate single entries without forming the full tensor
(:meth:`values_at`), which is what completion on huge sparse tensors needs.

References
----------
Kolda, T. G., & Bader, B. W. (2009). Tensor decompositions and applications.
SIAM Review 51(3), 455-500.
Oseledets, I. V. (2011). Tensor-train decomposition. SIAM J. Sci. Comput. 33(5).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from .._errors import ShapeError
from .._validation import check_finite, param_error
from ._unfold import khatri_rao, multi_mode_dot, unfold

__all__ = ["CPTensor", "TuckerTensor", "TTTensor", "check_indices"]

_INDEX_CHUNK = 1 << 16


def _to_torch(x: Any, name: str, func: str, ndim: int | None = None) -> tuple[torch.Tensor, bool]:
    """Convert one part to a floating torch tensor; also say whether it was numpy."""
    is_np = not isinstance(x, torch.Tensor)
    if is_np:
        try:
            arr = np.asarray(x)
        except Exception as exc:
            raise param_error(name, func, "an array-like of numbers", x) from exc
        if arr.dtype == object or arr.dtype.kind not in "biuf":
            raise param_error(name, func, "a real array-like of numbers", x)
        if arr.dtype.kind != "f" or arr.dtype == np.float16:
            arr = arr.astype(np.float64)
        t = torch.from_numpy(np.ascontiguousarray(arr))
    else:
        t = x
        if t.layout != torch.strided:
            raise param_error(name, func, "a dense (strided) tensor", x)
        if not t.is_floating_point():
            t = t.to(torch.get_default_dtype())
    if ndim is not None and t.ndim != ndim:
        raise ShapeError(
            f"The '{name}' parameter of {func} must have {ndim} dimensions. "
            f"Got shape {tuple(t.shape)}."
        )
    check_finite(t, name, func)
    return t, is_np


def _common(parts: Sequence[torch.Tensor], names: Sequence[str], func: str) -> None:
    dt, dev = parts[0].dtype, parts[0].device
    for p, n in zip(parts, names, strict=True):
        if p.device != dev:
            raise param_error(n, func, f"on the same device as the others ({dev})", p)
    for p, n in zip(parts, names, strict=True):
        if p.dtype != dt:
            raise param_error(n, func, f"of the same dtype as {names[0]} ({dt})", p)


def check_indices(indices: Any, shape: Sequence[int], func: str,
                  device: torch.device | None = None, name: str = "indices") -> torch.Tensor:
    """Validate an ``(N, order)`` integer index array against ``shape``; return int64."""
    if isinstance(indices, torch.Tensor):
        t = indices
    else:
        try:
            arr = np.asarray(indices)
        except Exception as exc:
            raise param_error(name, func, "an (N, order) integer array", indices) from exc
        if arr.dtype == object or (arr.size and arr.dtype.kind not in "iub"):
            raise param_error(name, func, "an (N, order) integer array", indices)
        t = torch.from_numpy(np.ascontiguousarray(arr.astype(np.int64, copy=False)))
    if t.is_floating_point() or t.is_complex():
        raise param_error(name, func, "an (N, order) integer array", indices)
    if t.ndim == 1 and t.numel() == len(shape):
        t = t[None, :]
    if t.ndim != 2 or t.shape[1] != len(shape):
        raise ShapeError(
            f"The '{name}' parameter of {func} must have shape (N, {len(shape)}). "
            f"Got shape {tuple(t.shape)}."
        )
    t = t.to(device=device if device is not None else t.device, dtype=torch.int64)
    if t.numel():
        lo = t.min(dim=0).values
        hi = t.max(dim=0).values
        dims = torch.tensor(list(shape), device=t.device)
        bad = (lo < 0) | (hi >= dims)
        if bool(bad.any()):
            k = int(torch.nonzero(bad)[0, 0])
            raise param_error(
                name, func, f"in range [0, {shape[k] - 1}] along mode {k}",
                f"values in [{int(lo[k])}, {int(hi[k])}]",
            )
    return t


def _out(t: torch.Tensor, as_numpy: bool) -> Any:
    return t.detach().cpu().numpy() if as_numpy else t


def _sign_fix(col: torch.Tensor) -> torch.Tensor:
    """+1/-1 per column making the largest-magnitude entry positive."""
    idx = col.abs().argmax(dim=0)
    s = torch.sign(col.gather(0, idx[None, :])[0])
    return torch.where(s == 0, torch.ones_like(s), s)


class _Format:
    _numpy: bool

    def _o(self, t: torch.Tensor) -> Any:
        return _out(t, self._numpy)

    @property
    def dtype(self) -> torch.dtype:
        return self._parts()[0].dtype

    @property
    def device(self) -> torch.device:
        return self._parts()[0].device

    @property
    def order(self) -> int:
        return len(self.shape)

    def _parts(self) -> list[torch.Tensor]:  # pragma: no cover - overridden
        raise TypeError

    @property
    def shape(self) -> tuple[int, ...]:  # pragma: no cover - overridden
        raise TypeError

    def norm(self) -> float:
        """Frobenius norm of the full tensor (computed without forming it)."""
        raise TypeError  # pragma: no cover - overridden

    def to_tensor(self) -> Any:  # pragma: no cover - overridden
        raise TypeError

    def values_at(self, indices: Any) -> Any:  # pragma: no cover - overridden
        raise TypeError

    @property
    def size(self) -> int:
        """Number of stored parameters."""
        return sum(p.numel() for p in self._parts())


class CPTensor(_Format):
    """A tensor in CP (CANDECOMP/PARAFAC) format: ``sum_r w_r a^1_r o ... o a^K_r``.

    Parameters
    ----------
    weights : array of shape (R,) or None
        Component weights (None: all ones).
    factors : sequence of K arrays of shape (I_k, R)
        Factor matrices; all must share ``R``, dtype and device.

    Examples
    --------
    >>> import numpy as np
    >>> from rankfold.tensor import CPTensor
    >>> cp = CPTensor(None, [np.ones((3, 2)), np.ones((4, 2)), np.ones((5, 2))])
    >>> cp.shape, cp.rank, float(cp.to_tensor()[0, 0, 0])
    ((3, 4, 5), 2, 2.0)
    """

    def __init__(self, weights: Any, factors: Sequence[Any]) -> None:
        func = "CPTensor"
        if isinstance(factors, np.ndarray | torch.Tensor) or not isinstance(
                factors, Sequence) or len(factors) == 0:
            raise param_error("factors", func, "a non-empty sequence of (I_k, R) matrices",
                              factors)
        fs, kinds = [], []
        for k, f in enumerate(factors):
            t, is_np = _to_torch(f, f"factors[{k}]", func, ndim=2)
            fs.append(t)
            kinds.append(is_np)
        R = fs[0].shape[1]
        for k, f in enumerate(fs):
            if f.shape[1] != R:
                raise ShapeError(
                    f"The 'factors' parameter of CPTensor must have matrices with the same "
                    f"number of columns. Got {R} columns in factors[0] and {f.shape[1]} in "
                    f"factors[{k}]."
                )
            if f.shape[0] == 0:
                raise ShapeError(f"The 'factors' parameter of CPTensor must have non-empty "
                                 f"matrices. Got shape {tuple(f.shape)} in factors[{k}].")
        if R == 0:
            raise param_error("factors", func, "matrices with at least one column (rank >= 1)",
                              factors)
        if weights is None:
            w = torch.ones(R, dtype=fs[0].dtype, device=fs[0].device)
        else:
            w, is_np = _to_torch(weights, "weights", func, ndim=1)
            kinds.append(is_np)
            if w.shape[0] != R:
                raise ShapeError(f"The 'weights' parameter of CPTensor must have shape ({R},) "
                                 f"to match the factors. Got shape {tuple(w.shape)}.")
        _common([w, *fs], ["weights", *[f"factors[{k}]" for k in range(len(fs))]], func)
        self._w = w
        self._f = fs
        self._numpy = all(kinds)

    @classmethod
    def _from_torch(cls, weights: torch.Tensor, factors: Sequence[torch.Tensor],
                    as_numpy: bool = False) -> CPTensor:
        obj = cls.__new__(cls)
        obj._w, obj._f, obj._numpy = weights, list(factors), as_numpy
        return obj

    def _parts(self) -> list[torch.Tensor]:
        return [self._w, *self._f]

    @property
    def weights(self) -> Any:
        """Weights, shape (R,)."""
        return self._o(self._w)

    @property
    def factors(self) -> list[Any]:
        """Factor matrices, shapes (I_k, R)."""
        return [self._o(f) for f in self._f]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(f.shape[0]) for f in self._f)

    @property
    def rank(self) -> int:
        return int(self._w.shape[0])

    def __iter__(self) -> Iterator[Any]:
        """Unpack as ``weights, factors = cp`` (as TensorLy)."""
        return iter((self.weights, self.factors))

    def __repr__(self) -> str:
        return f"CPTensor(shape={self.shape}, rank={self.rank}, dtype={self.dtype})"

    def as_torch(self) -> CPTensor:
        """The same tensor returning torch tensors (zero-copy)."""
        return CPTensor._from_torch(self._w, self._f, False)

    def to(self, dtype: torch.dtype | None = None, device: Any = None) -> CPTensor:
        """Copy with another dtype and/or device (torch outputs)."""
        return CPTensor._from_torch(self._w.to(device=device, dtype=dtype),
                                    [f.to(device=device, dtype=dtype) for f in self._f], False)

    def to_tensor(self) -> Any:
        """The full tensor, shape ``self.shape``."""
        f0 = self._f[0] * self._w
        if len(self._f) == 1:
            return self._o(f0.sum(1))
        full = f0 @ khatri_rao(self._f[1:]).T
        return self._o(full.reshape(self.shape))

    def _gram_hadamard(self) -> torch.Tensor:
        V = torch.ones(self.rank, self.rank, dtype=self.dtype, device=self.device)
        for f in self._f:
            V = V * (f.T @ f)
        return V

    def norm(self) -> float:
        v = self._w @ self._gram_hadamard() @ self._w
        return math.sqrt(max(float(v), 0.0))

    def normalize(self) -> CPTensor:
        """Unit-norm factor columns, norms moved into the weights."""
        w = self._w.clone()
        fs = []
        for f in self._f:
            n = torch.linalg.vector_norm(f, dim=0)
            safe = torch.where(n > 0, n, torch.ones_like(n))
            fs.append(f / safe)
            w = w * n
        return CPTensor._from_torch(w, fs, self._numpy)

    def arrange(self) -> CPTensor:
        """Normalized, components sorted by decreasing weight, signs fixed.

        Signs: weights are made non-negative and, in every factor but the last, the
        largest-magnitude entry of each column is made positive; the last factor absorbs
        the flips, so the tensor is unchanged.
        """
        n = self.normalize()
        w, fs = n._w, list(n._f)
        total = torch.sign(w)
        total = torch.where(total == 0, torch.ones_like(total), total)
        w = w.abs()
        for k in range(len(fs) - 1):
            s = _sign_fix(fs[k])
            fs[k] = fs[k] * s
            total = total * s
        fs[-1] = fs[-1] * total
        perm = torch.argsort(w, descending=True, stable=True)
        return CPTensor._from_torch(w[perm], [f[:, perm] for f in fs], self._numpy)

    def values_at(self, indices: Any) -> Any:
        """Entries at an ``(N, order)`` integer index array, shape (N,), without forming X."""
        idx = check_indices(indices, self.shape, "CPTensor.values_at", self.device)
        out = torch.empty(idx.shape[0], dtype=self.dtype, device=self.device)
        for s in range(0, idx.shape[0], _INDEX_CHUNK):
            ch = idx[s:s + _INDEX_CHUNK]
            prod = self._f[0][ch[:, 0]] * self._w
            for k in range(1, len(self._f)):
                prod = prod * self._f[k][ch[:, k]]
            out[s:s + _INDEX_CHUNK] = prod.sum(1)
        return self._o(out)

    def to_tucker(self) -> TuckerTensor:
        """Exact Tucker form: superdiagonal core holding the weights (core has R^K entries)."""
        K, R = len(self._f), self.rank
        core = torch.zeros((R,) * K, dtype=self.dtype, device=self.device)
        ar = torch.arange(R, device=self.device)
        core[(ar,) * K] = self._w
        return TuckerTensor._from_torch(core, list(self._f), self._numpy)

    def to_tt(self) -> TTTensor:
        """Exact tensor-train form with all inner TT ranks equal to R."""
        K, R = len(self._f), self.rank
        if K == 1:
            return TTTensor._from_torch([(self._f[0] @ self._w)[None, :, None]], self._numpy)
        cores = [(self._f[0] * self._w)[None, :, :]]
        eye = torch.eye(R, dtype=self.dtype, device=self.device)
        for f in self._f[1:-1]:
            cores.append(torch.einsum("ir,rs->ris", f, eye))
        cores.append(self._f[-1].T[:, :, None])
        return TTTensor._from_torch(cores, self._numpy)


class TuckerTensor(_Format):
    """A tensor in Tucker format: ``core x_1 U_1 x_2 ... x_K U_K``.

    Parameters
    ----------
    core : array of shape (R_1, ..., R_K)
    factors : sequence of K arrays of shape (I_k, R_k)

    Examples
    --------
    >>> import numpy as np
    >>> from rankfold.tensor import TuckerTensor
    >>> t = TuckerTensor(np.ones((2, 2)), [np.eye(3, 2), np.eye(4, 2)])
    >>> t.shape, t.ranks
    ((3, 4), (2, 2))
    """

    def __init__(self, core: Any, factors: Sequence[Any]) -> None:
        func = "TuckerTensor"
        c, c_np = _to_torch(core, "core", func)
        if c.ndim == 0 or c.numel() == 0:
            raise ShapeError(f"The 'core' parameter of TuckerTensor must be a non-empty array "
                             f"with at least one dimension. Got shape {tuple(c.shape)}.")
        if isinstance(factors, np.ndarray | torch.Tensor) or not isinstance(factors, Sequence):
            raise param_error("factors", func, "a sequence of (I_k, R_k) matrices", factors)
        if len(factors) != c.ndim:
            raise ShapeError(f"The 'factors' parameter of TuckerTensor must have one matrix per "
                             f"core mode ({c.ndim}). Got {len(factors)} matrices.")
        fs, kinds = [], [c_np]
        for k, f in enumerate(factors):
            t, is_np = _to_torch(f, f"factors[{k}]", func, ndim=2)
            if t.shape[1] != c.shape[k] or t.shape[0] == 0:
                raise ShapeError(
                    f"The 'factors' parameter of TuckerTensor must have factors[{k}] of shape "
                    f"(I_{k} >= 1, {c.shape[k]}) to match the core. Got shape {tuple(t.shape)}."
                )
            fs.append(t)
            kinds.append(is_np)
        _common([c, *fs], ["core", *[f"factors[{k}]" for k in range(len(fs))]], func)
        self._c, self._f, self._numpy = c, fs, all(kinds)

    @classmethod
    def _from_torch(cls, core: torch.Tensor, factors: Sequence[torch.Tensor],
                    as_numpy: bool = False) -> TuckerTensor:
        obj = cls.__new__(cls)
        obj._c, obj._f, obj._numpy = core, list(factors), as_numpy
        return obj

    def _parts(self) -> list[torch.Tensor]:
        return [self._c, *self._f]

    @property
    def core(self) -> Any:
        """Core tensor, shape ``ranks``."""
        return self._o(self._c)

    @property
    def factors(self) -> list[Any]:
        """Factor matrices, shapes (I_k, R_k)."""
        return [self._o(f) for f in self._f]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(f.shape[0]) for f in self._f)

    @property
    def ranks(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self._c.shape)

    def __iter__(self) -> Iterator[Any]:
        """Unpack as ``core, factors = tucker`` (as TensorLy)."""
        return iter((self.core, self.factors))

    def __repr__(self) -> str:
        return f"TuckerTensor(shape={self.shape}, ranks={self.ranks}, dtype={self.dtype})"

    def as_torch(self) -> TuckerTensor:
        """The same tensor returning torch tensors (zero-copy)."""
        return TuckerTensor._from_torch(self._c, self._f, False)

    def to(self, dtype: torch.dtype | None = None, device: Any = None) -> TuckerTensor:
        """Copy with another dtype and/or device (torch outputs)."""
        return TuckerTensor._from_torch(self._c.to(device=device, dtype=dtype),
                                        [f.to(device=device, dtype=dtype) for f in self._f])

    def to_tensor(self) -> Any:
        return self._o(multi_mode_dot(self._c, self._f))

    def norm(self) -> float:
        G = self._c
        grams = [f.T @ f for f in self._f]
        v = torch.sum(G * multi_mode_dot(G, grams))
        return math.sqrt(max(float(v), 0.0))

    def normalize(self) -> TuckerTensor:
        """Orthonormal factors (thin QR of each factor, R absorbed into the core)."""
        core, fs = self._c, []
        for k, f in enumerate(self._f):
            if f.shape[0] >= f.shape[1]:
                Q, Rm = torch.linalg.qr(f)
                fs.append(Q)
                core = multi_mode_dot(core, [Rm if j == k else None for j in range(len(self._f))])
            else:
                fs.append(f)
        return TuckerTensor._from_torch(core, fs, self._numpy)

    def arrange(self) -> TuckerTensor:
        """HOSVD form: orthonormal factors, all-orthogonal core with mode-wise singular
        values sorted decreasingly, and the largest entry of each factor column positive."""
        n = self.normalize()
        core, fs = n._c, list(n._f)
        K = len(fs)
        for k in range(K):
            P, _, _ = torch.linalg.svd(unfold(core, k), full_matrices=False)
            P = P * _sign_fix(fs[k] @ P)
            fs[k] = fs[k] @ P
            core = multi_mode_dot(core, [P if j == k else None for j in range(K)],
                                  transpose=True)
        return TuckerTensor._from_torch(core, fs, self._numpy)

    def values_at(self, indices: Any) -> Any:
        """Entries at an ``(N, order)`` integer index array, shape (N,), without forming X."""
        idx = check_indices(indices, self.shape, "TuckerTensor.values_at", self.device)
        out = torch.empty(idx.shape[0], dtype=self.dtype, device=self.device)
        ranks = self.ranks
        chunk = max(1, _INDEX_CHUNK * 16 // max(1, math.prod(ranks[1:])))
        for s in range(0, idx.shape[0], chunk):
            ch = idx[s:s + chunk]
            out[s:s + chunk] = _tucker_rows(self._c, [f[ch[:, k]] for k, f in
                                                     enumerate(self._f)])
        return self._o(out)

    def to_tt(self) -> TTTensor:
        """Exact tensor-train form (TT-SVD of the core, factors multiplied in)."""
        from .tt import _tt_svd

        cores = _tt_svd(self._c, max_ranks=None, eps=0.0)
        cores = [torch.einsum("aib,ji->ajb", g, f) for g, f in zip(cores, self._f, strict=True)]
        return TTTensor._from_torch(cores, self._numpy)


def _tucker_rows(core: torch.Tensor, rows: Sequence[torch.Tensor]) -> torch.Tensor:
    """``sum_r G[r] prod_k rows[k][n, r_k]`` for each n: shape (N,)."""
    N = rows[0].shape[0]
    T = rows[0] @ core.reshape(core.shape[0], -1)  # (N, R_2 ... R_K)
    for k in range(1, len(rows)):
        T = T.reshape(N, core.shape[k], -1)
        T = torch.einsum("nrs,nr->ns", T, rows[k])
    return T.reshape(N)


class TTTensor(_Format):
    """A tensor in tensor-train (matrix product state) format.

    ``X[i_1, ..., i_K] = G_1[:, i_1, :] @ G_2[:, i_2, :] @ ... @ G_K[:, i_K, :]``.

    Parameters
    ----------
    cores : sequence of K arrays of shape (r_{k-1}, I_k, r_k) with r_0 = r_K = 1

    Examples
    --------
    >>> import numpy as np
    >>> from rankfold.tensor import TTTensor
    >>> tt = TTTensor([np.ones((1, 3, 2)), np.ones((2, 4, 1))])
    >>> tt.shape, tt.ranks
    ((3, 4), (1, 2, 1))
    """

    def __init__(self, cores: Sequence[Any]) -> None:
        func = "TTTensor"
        if isinstance(cores, np.ndarray | torch.Tensor) or not isinstance(cores, Sequence) or \
                len(cores) == 0:
            raise param_error("cores", func, "a non-empty sequence of (r_prev, I_k, r_next) "
                              "arrays", cores)
        cs, kinds = [], []
        for k, c in enumerate(cores):
            t, is_np = _to_torch(c, f"cores[{k}]", func, ndim=3)
            if t.numel() == 0:
                raise ShapeError(f"The 'cores' parameter of TTTensor must have non-empty cores. "
                                 f"Got shape {tuple(t.shape)} in cores[{k}].")
            cs.append(t)
            kinds.append(is_np)
        if cs[0].shape[0] != 1 or cs[-1].shape[2] != 1:
            raise ShapeError(
                f"The 'cores' parameter of TTTensor must start and end with TT rank 1. "
                f"Got boundary ranks {cs[0].shape[0]} and {cs[-1].shape[2]}."
            )
        for k in range(1, len(cs)):
            if cs[k].shape[0] != cs[k - 1].shape[2]:
                raise ShapeError(
                    f"The 'cores' parameter of TTTensor must have matching ranks: cores[{k - 1}] "
                    f"ends with {cs[k - 1].shape[2]} but cores[{k}] starts with {cs[k].shape[0]}."
                )
        _common(cs, [f"cores[{k}]" for k in range(len(cs))], func)
        self._g, self._numpy = cs, all(kinds)

    @classmethod
    def _from_torch(cls, cores: Sequence[torch.Tensor], as_numpy: bool = False) -> TTTensor:
        obj = cls.__new__(cls)
        obj._g, obj._numpy = list(cores), as_numpy
        return obj

    def _parts(self) -> list[torch.Tensor]:
        return list(self._g)

    @property
    def cores(self) -> list[Any]:
        """TT cores, shapes (r_{k-1}, I_k, r_k)."""
        return [self._o(g) for g in self._g]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(g.shape[1]) for g in self._g)

    @property
    def ranks(self) -> tuple[int, ...]:
        """TT ranks ``(1, r_1, ..., r_{K-1}, 1)``."""
        return (1, *[int(g.shape[2]) for g in self._g])

    def __iter__(self) -> Iterator[Any]:
        return iter(self.cores)

    def __len__(self) -> int:
        return len(self._g)

    def __repr__(self) -> str:
        return f"TTTensor(shape={self.shape}, ranks={self.ranks}, dtype={self.dtype})"

    def as_torch(self) -> TTTensor:
        """The same tensor returning torch tensors (zero-copy)."""
        return TTTensor._from_torch(self._g, False)

    def to(self, dtype: torch.dtype | None = None, device: Any = None) -> TTTensor:
        """Copy with another dtype and/or device (torch outputs)."""
        return TTTensor._from_torch([g.to(device=device, dtype=dtype) for g in self._g])

    def to_tensor(self) -> Any:
        full = self._g[0].reshape(self._g[0].shape[1], -1)
        for g in self._g[1:]:
            full = (full @ g.reshape(g.shape[0], -1)).reshape(-1, g.shape[2])
        return self._o(full.reshape(self.shape))

    def norm(self) -> float:
        v = torch.ones(1, 1, dtype=self.dtype, device=self.device)
        for g in self._g:
            v = torch.einsum("ab,aic,bid->cd", v, g, g)
        return math.sqrt(max(float(v.reshape(())), 0.0))

    def normalize(self) -> TTTensor:
        """Left-orthogonal form: every core but the last has orthonormal unfoldings."""
        cs = list(self._g)
        for k in range(len(cs) - 1):
            r0, n, r1 = cs[k].shape
            Q, Rm = torch.linalg.qr(cs[k].reshape(r0 * n, r1))
            s = torch.sign(torch.diagonal(Rm))
            s = torch.where(s == 0, torch.ones_like(s), s)
            Q, Rm = Q * s, Rm * s[:, None]
            cs[k] = Q.reshape(r0, n, Q.shape[1])
            cs[k + 1] = torch.einsum("ab,bic->aic", Rm, cs[k + 1])
        return TTTensor._from_torch(cs, self._numpy)

    def arrange(self) -> TTTensor:
        """Canonical left-orthogonal form with positive diagonal QR factors."""
        return self.normalize()

    def values_at(self, indices: Any) -> Any:
        """Entries at an ``(N, order)`` integer index array, shape (N,), without forming X."""
        idx = check_indices(indices, self.shape, "TTTensor.values_at", self.device)
        out = torch.empty(idx.shape[0], dtype=self.dtype, device=self.device)
        for s in range(0, idx.shape[0], _INDEX_CHUNK):
            ch = idx[s:s + _INDEX_CHUNK]
            v = self._g[0][0, ch[:, 0], :]
            for k in range(1, len(self._g)):
                v = torch.einsum("nr,rns->ns", v, self._g[k][:, ch[:, k], :])
            out[s:s + _INDEX_CHUNK] = v[:, 0]
        return self._o(out)
