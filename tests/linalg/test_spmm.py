"""Compiled sparse x dense kernels (``_spmm.SparseRows``) against scipy, and rsvd's
tall-sparse subspace path (``_subspace_tall_sparse``) against float64 dense SVDs."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from rankfold._parallel import thread_limit
from rankfold.linalg import _range, _spmm, rsvd
from rankfold.linalg._range import as_linear_map
from rankfold.linalg._spmm import SparseRows, _column_chunks, have_kernels

# rankfold.linalg.rsvd is the function; the module is reached through importlib
rsvd_mod = importlib.import_module("rankfold.linalg.rsvd")

needs_kernels = pytest.mark.skipif(not have_kernels(), reason="numba is not installed")

WIDTHS = [1, 7, 16, 60, 64, 100]
NP_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}
# max |kernel - scipy| relative to the scale of |A| @ |X|
PROD_TOL = {np.float32: 1e-5, np.float64: 1e-13}


# --- helpers ---------------------------------------------------------------------------------

def _random_csr(m: int, n: int, nnz: int, *, dtype: type = np.float64,
                index_dtype: type = np.int32, power: float | None = None,
                empty_rows: int = 0, seed: int = 0) -> sp.csr_array:
    """Canonical CSR with ``~nnz`` nonzeros; ``power``: column popularity ~ (j+1)^-power
    (a few heavy columns, an empty tail); ``empty_rows``: that many rows zeroed."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, m, nnz)
    if power is None:
        cols = rng.integers(0, n, nnz)
    else:
        p = (np.arange(n) + 1.0) ** -power
        cols = rng.choice(n, size=nnz, p=p / p.sum())
    if empty_rows:
        dead = rng.choice(m, size=min(empty_rows, m), replace=False)
        keep = ~np.isin(rows, dead)
        rows, cols = rows[keep], cols[keep]
    vals = rng.standard_normal(len(rows))
    A = sp.coo_array((vals, (rows, cols)), shape=(m, n)).tocsr()
    A.sum_duplicates()
    A = A.astype(dtype)
    # set the index arrays directly: the constructor would downcast int64 to int32
    A.indptr = A.indptr.astype(index_dtype)
    A.indices = A.indices.astype(index_dtype)
    assert A.has_canonical_format
    return A


def _dense(rng: np.random.Generator, rows: int, cols: int, dtype: type) -> torch.Tensor:
    return torch.from_numpy(rng.standard_normal((rows, cols)).astype(dtype))


def _assert_products(A: sp.csr_array, S: SparseRows, width: int, seed: int = 1) -> None:
    """``S.mm``/``S.rmm`` (fresh and ``out=`` results) against scipy in float64."""
    rng = np.random.default_rng(seed)
    dt = A.dtype.type
    m, n = A.shape
    A64 = A.astype(np.float64)
    absA = abs(A64)
    X = _dense(rng, n, width, dt)
    Y = _dense(rng, m, width, dt)
    for got_fn, M, Z in ((S.mm, A64, X), (S.rmm, A64.T, Y)):
        z64 = Z.numpy().astype(np.float64)
        ref = M @ z64
        scale = (abs(M) if M is A64 else absA.T) @ np.abs(z64) + 1e-300
        got = got_fn(Z)
        assert isinstance(got, torch.Tensor)
        assert got.dtype == Z.dtype and tuple(got.shape) == ref.shape
        err = np.abs(got.numpy().astype(np.float64) - ref) / scale.max(initial=1.0)
        assert err.max(initial=0.0) <= PROD_TOL[dt]
        # out=: every entry is written (NaN garbage beforehand), the buffer is returned
        buf = torch.full(ref.shape, float("nan"), dtype=Z.dtype)
        res = got_fn(Z, out=buf)
        assert res is buf
        np.testing.assert_array_equal(buf.numpy(), got.numpy())


@pytest.fixture
def two_threads() -> object:
    with thread_limit(2):
        yield


@pytest.fixture
def small_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    # 256 bytes: every product wider than two SIMD registers runs in column chunks
    monkeypatch.setattr(_spmm, "_table_budget", lambda: 256)


@pytest.fixture
def spy_fast(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple[int, int], int, bool]]:
    """Records ``(shape of A, ell, finished with Cholesky-QR)`` for every call of
    _subspace_tall_sparse (False: Householder fallback inside it, or None)."""
    calls: list[tuple[tuple[int, int], int, bool]] = []
    orig = rsvd_mod._subspace_tall_sparse

    def spy(A, rank, ell, n_iter, generator):  # noqa: ANN001, ANN202
        out = orig(A, rank, ell, n_iter, generator)
        calls.append((tuple(A.shape), ell, out is not None and len(out) == 4))
        return out

    monkeypatch.setattr(rsvd_mod, "_subspace_tall_sparse", spy)
    return calls


# --- SparseRows against scipy ----------------------------------------------------------------

def test_have_kernels_matches_numba_import() -> None:
    try:
        import numba  # noqa: F401
    except ImportError:
        assert not have_kernels()
    else:
        assert have_kernels()


@needs_kernels
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_products_match_scipy(dtype: type, index_dtype: type, width: int) -> None:
    A = _random_csr(90, 70, 900, dtype=dtype, index_dtype=index_dtype, power=1.2,
                    empty_rows=10, seed=width)
    assert (np.diff(A.indptr) == 0).any() and (np.bincount(A.indices, minlength=70) == 0).any()
    S = SparseRows(A)
    assert S.indices.dtype == index_dtype and S.indptr.dtype == index_dtype
    assert S.nnz == A.nnz and S.shape == A.shape
    _assert_products(A, S, width)


@needs_kernels
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_products_in_column_chunks(small_budget: None, dtype: type, width: int) -> None:
    A = _random_csr(80, 50, 700, dtype=dtype, power=1.0, empty_rows=5, seed=width)
    S = SparseRows(A)
    lanes = 64 // np.dtype(dtype).itemsize
    chunks = _column_chunks(width, A.shape[1] * np.dtype(dtype).itemsize,
                            _spmm._table_budget(), np.dtype(dtype).itemsize)
    assert len(chunks) == (1 if width <= 2 * lanes else -(-width // (2 * lanes)))
    _assert_products(A, S, width)
    # chunked and whole products perform the same additions in the same order
    rng = np.random.default_rng(3)
    X, Y = _dense(rng, 50, width, dtype), _dense(rng, 80, width, dtype)
    whole = SparseRows(A)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_spmm, "_table_budget", lambda: 1 << 30)
        ref_mm, ref_rmm = whole.mm(X), whole.rmm(Y)
    np.testing.assert_array_equal(S.mm(X).numpy(), ref_mm.numpy())
    np.testing.assert_array_equal(S.rmm(Y).numpy(), ref_rmm.numpy())


@needs_kernels
@pytest.mark.parametrize("shape", [(1, 40), (40, 1), (1, 1), (30, 20)],
                         ids=["one-row", "one-col", "1x1", "no-nonzeros"])
@pytest.mark.parametrize("width", [1, 7, 64])
def test_degenerate_shapes(shape: tuple[int, int], width: int) -> None:
    m, n = shape
    nnz = 0 if shape == (30, 20) else max(m, n) // 2 + 1
    for dtype in (np.float32, np.float64):
        A = _random_csr(m, n, nnz, dtype=dtype, seed=width)
        _assert_products(A, SparseRows(A), width)


@needs_kernels
def test_noncontiguous_and_grad_inputs() -> None:
    A = _random_csr(60, 40, 400, power=1.0)
    S = SparseRows(A)
    rng = np.random.default_rng(0)
    Xt = _dense(rng, 16, 40, np.float64).T  # (40, 16), not contiguous
    Yg = _dense(rng, 60, 16, np.float64).requires_grad_(True)
    np.testing.assert_allclose(S.mm(Xt).numpy(), A @ Xt.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(S.rmm(Yg).numpy(), A.T @ Yg.detach().numpy(), rtol=1e-12,
                               atol=1e-12)


@needs_kernels
@pytest.mark.parametrize("width", [16, 60, 100])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_products_on_two_threads(two_threads: None, dtype: type, width: int) -> None:
    # nnz * width > 1e6: SparseRows._workers gives 2 threads
    A = _random_csr(4000, 800, 100_000, dtype=dtype, power=1.1, empty_rows=100,
                    seed=width)
    S = SparseRows(A)
    assert S._workers(width) == 2
    _assert_products(A, S, width)
    cuts, _ = S._column_segments(2)
    assert len(cuts) == 3  # the scatter really ran in two parts
    # every output entry is summed by one thread in row order: same bits as on one thread
    rng = np.random.default_rng(5)
    X, Y = _dense(rng, 800, width, dtype), _dense(rng, 4000, width, dtype)
    two = S.mm(X), S.rmm(Y)
    torch.set_num_threads(1)
    one = SparseRows(A)
    assert one._workers(width) == 1
    np.testing.assert_array_equal(one.mm(X).numpy(), two[0].numpy())
    np.testing.assert_array_equal(one.rmm(Y).numpy(), two[1].numpy())


@needs_kernels
@pytest.mark.parametrize("workers", [3, 5, 13])
def test_products_with_many_uneven_parts(monkeypatch: pytest.MonkeyPatch, small_budget: None,
                                         workers: int) -> None:
    # more row ranges and column cuts than cores (capped at _SCATTER_THREADS for A^T Y),
    # column cuts made uneven by a few very popular columns, plus column chunks
    monkeypatch.setattr(SparseRows, "_workers", lambda self, width: workers)
    for dtype in (np.float32, np.float64):
        A = _random_csr(200, 90, 3000, dtype=dtype, power=1.5, empty_rows=20, seed=workers)
        S = SparseRows(A)
        for width in (7, 64, 100):
            _assert_products(A, S, width, seed=width)
        parts = min(workers, _spmm._SCATTER_THREADS)
        assert set(S._segments) == {parts}
        cuts, _ = S._segments[parts]
        widths = np.diff(cuts)
        assert widths.max() >= 4 * widths.min()  # a few heavy columns: uneven cuts


# --- partitions ------------------------------------------------------------------------------

@needs_kernels
@pytest.mark.parametrize("parts", [1, 2, 3, 5, 8, 40])
@pytest.mark.parametrize("power", [None, 1.5, 3.0], ids=["uniform", "power1.5", "power3"])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_column_segments_invariants(parts: int, power: float | None, index_dtype: type,
                                    ) -> None:
    m, n = 150, 60
    A = _random_csr(m, n, 1500, index_dtype=index_dtype, power=power, empty_rows=15)
    S = SparseRows(A)
    cuts, starts = S._column_segments(parts)
    assert S._column_segments(parts)[1] is starts  # cached
    assert cuts[0] == 0 and cuts[-1] == n
    assert all(a < b for a, b in zip(cuts[:-1], cuts[1:], strict=True))
    assert len(cuts) - 1 <= parts
    assert starts.shape == (len(cuts), m)
    np.testing.assert_array_equal(starts[0], A.indptr[:-1])
    np.testing.assert_array_equal(starts[-1], A.indptr[1:])
    assert (np.diff(starts, axis=0) >= 0).all()  # non-decreasing per row
    owner = np.full(A.nnz, -1)
    for t in range(len(cuts) - 1):
        for i in range(m):
            seg = slice(int(starts[t, i]), int(starts[t + 1, i]))
            assert (owner[seg] == -1).all()  # no nonzero in two parts
            owner[seg] = t
            cols = A.indices[seg]
            assert ((cols >= cuts[t]) & (cols < cuts[t + 1])).all()
    assert (owner >= 0).all()  # every nonzero in some part
    if power is None and parts in (2, 3):  # balanced when no column dominates
        sizes = np.bincount(owner, minlength=len(cuts) - 1)
        assert len(sizes) == parts
        assert sizes.max() <= 1.3 * A.nnz / parts


@pytest.mark.parametrize("itemsize", [4, 8])
@pytest.mark.parametrize("width", [1, 7, 16, 31, 32, 33, 60, 64, 100, 1000])
@pytest.mark.parametrize("budget", [1, 256, 4096, 40_000, 1 << 30])
def test_column_chunks_invariants(itemsize: int, width: int, budget: int) -> None:
    bytes_per_column = 50 * itemsize
    lanes = 64 // itemsize
    chunks = _column_chunks(width, bytes_per_column, budget, itemsize)
    assert chunks[0][0] == 0 and chunks[-1][1] == width
    for (_, a1), (b0, _) in zip(chunks[:-1], chunks[1:], strict=True):
        assert a1 == b0  # contiguous, no overlap
    assert all(c1 > c0 for c0, c1 in chunks)
    if len(chunks) > 1:
        w = chunks[0][1] - chunks[0][0]
        assert w % lanes == 0 and w >= 2 * lanes
        assert all(c1 - c0 == w for c0, c1 in chunks[:-1])
        assert all(c0 % lanes == 0 for c0, _ in chunks)
    fits = budget // bytes_per_column
    if fits >= 2 * lanes:  # the budget is respected when it holds two registers
        assert all((c1 - c0) * bytes_per_column <= budget for c0, c1 in chunks)
    if width <= max(2 * lanes, fits // lanes * lanes):
        assert chunks == [(0, width)]


@needs_kernels
def test_zero_width_operand() -> None:
    A = _random_csr(20, 10, 40)
    S = SparseRows(A)
    assert tuple(S.mm(torch.zeros(10, 0, dtype=torch.float64)).shape) == (20, 0)
    assert tuple(S.rmm(torch.zeros(20, 0, dtype=torch.float64)).shape) == (10, 0)


# --- as_linear_map on non-canonical scipy input ---------------------------------------------

def _messy(fmt: str, dtype: type) -> sp.sparray:
    """A 40 x 25 matrix with unsorted indices and duplicate entries in format ``fmt``."""
    rng = np.random.default_rng(11)
    nnz = 300
    rows, cols = rng.integers(0, 40, nnz), rng.integers(0, 25, nnz)
    rows[:20], cols[:20] = 3, 7  # many duplicates of one entry
    vals = rng.standard_normal(nnz).astype(dtype)
    if fmt == "coo":
        return sp.coo_array((vals, (rows, cols)), shape=(40, 25))
    major, minor, size = (rows, cols, 40) if fmt == "csr" else (cols, rows, 25)
    order = np.argsort(major, kind="stable")  # grouped by row/column, minor unsorted
    indptr = np.concatenate([[0], np.cumsum(np.bincount(major, minlength=size))])
    cls = sp.csr_array if fmt == "csr" else sp.csc_array
    M = cls((vals[order], minor[order].astype(np.int32), indptr.astype(np.int32)),
            shape=(40, 25))
    assert not M.has_sorted_indices and not M.has_canonical_format
    return M


@pytest.mark.parametrize("kernels", [True, False], ids=["numba", "torch-csr"])
@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_as_linear_map_noncanonical_input(monkeypatch: pytest.MonkeyPatch, fmt: str,
                                          dtype: type, kernels: bool) -> None:
    if kernels and not have_kernels():
        pytest.skip("numba is not installed")
    if not kernels:
        monkeypatch.setattr(_range, "have_kernels", lambda: False)
    A = _messy(fmt, dtype)
    arrays = {"coo": ("data", "coords"), "csr": ("data", "indices", "indptr"),
              "csc": ("data", "indices", "indptr")}[fmt]

    def snapshot() -> list[np.ndarray]:
        out = []
        for name in arrays:
            val = getattr(A, name)
            out.extend(np.array(v, copy=True) for v in (val if name == "coords" else [val]))
        return out

    before = snapshot()
    Amap = as_linear_map(A, "A", "test")
    assert (Amap.sparse_rows is not None) == kernels
    rng = np.random.default_rng(0)
    X, Y = _dense(rng, 25, 9, dtype), _dense(rng, 40, 9, dtype)
    got_mm, got_rmm = Amap.mm(X), Amap.rmm(Y)
    ref_mm = A.astype(np.float64) @ X.numpy().astype(np.float64)
    ref_rmm = A.astype(np.float64).T @ Y.numpy().astype(np.float64)
    tol = PROD_TOL[dtype] * 10
    np.testing.assert_allclose(got_mm.numpy(), ref_mm, rtol=tol, atol=tol)
    np.testing.assert_allclose(got_rmm.numpy(), ref_rmm, rtol=tol, atol=tol)
    after = snapshot()
    assert len(before) == len(after)
    for b, a in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)  # the caller's arrays are untouched
    if fmt != "coo":
        assert not A.has_sorted_indices


@needs_kernels
def test_as_linear_map_canonical_input_is_not_modified() -> None:
    A = sp.csr_matrix(_random_csr(50, 30, 300, dtype=np.float32))
    before = [A.data.copy(), A.indices.copy(), A.indptr.copy()]
    Amap = as_linear_map(A, "A", "test")
    assert Amap.sparse_rows is not None and Amap.dtype == torch.float32
    rng = np.random.default_rng(2)
    Amap.mm(_dense(rng, 30, 5, np.float32))
    Amap.rmm(_dense(rng, 50, 5, np.float32))
    for b, a in zip(before, [A.data, A.indices, A.indptr], strict=True):
        np.testing.assert_array_equal(a, b)


# --- rsvd on sparse input --------------------------------------------------------------------

def _planted_sparse(m: int, n: int, *, rank: int = 5, noise: float = 3e-3,
                    dtype: type = np.float64, seed: int = 0) -> sp.csr_array:
    """Sparse rank-``rank`` part (product of sparse factors, singular values ~1 .. 0.2)
    plus sparse Gaussian noise of spectral norm ~``noise``."""
    rng = np.random.default_rng(seed)
    L = sp.random_array((m, rank), density=0.3, random_state=rng, format="csr",
                        data_sampler=rng.standard_normal)
    R = sp.random_array((rank, n), density=0.3, random_state=rng, format="csr",
                        data_sampler=rng.standard_normal)
    s = sp.diags_array(10.0 ** (-np.arange(rank) / (rank * 1.5)))
    low = L @ s @ R
    low = low / np.linalg.norm(low.toarray(), 2)
    density = 0.05
    N = sp.random_array((m, n), density=density, random_state=rng, format="csr",
                        data_sampler=rng.standard_normal)
    N = N * (noise / (np.sqrt(density) * (np.sqrt(m) + np.sqrt(n))))
    A = sp.csr_array(low + N).astype(dtype)
    A.sum_duplicates()
    return A


def _svd64(A: sp.csr_array) -> tuple[torch.Tensor, ...]:
    return torch.linalg.svd(torch.from_numpy(A.toarray()).to(torch.float64),
                            full_matrices=False)


def _t64(x: object) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=torch.float64)


# singular values (relative to s_1) and orthonormality per dtype
S_TOL = {np.float32: 2e-5, np.float64: 1e-11}
ORTH_TOL = {np.float32: 1e-5, np.float64: 1e-12}


def _check_result(A: sp.csr_array, res: object, k: int, *, n_iter: int) -> None:
    dt = A.dtype.type
    U, S, Vh = (_t64(x) for x in res)
    assert tuple(U.shape) == (A.shape[0], k) and tuple(S.shape) == (k,)
    assert tuple(Vh.shape) == (k, A.shape[1])
    assert all(np.asarray(x).dtype == A.dtype for x in res)
    _, s0, _ = _svd64(A)
    eye = torch.eye(k, dtype=torch.float64)
    assert float((U.T @ U - eye).abs().max()) <= ORTH_TOL[dt]
    assert float((Vh @ Vh.T - eye).abs().max()) <= ORTH_TOL[dt]
    assert bool((S[:-1] >= S[1:]).all())
    # n_iter = 0: a single sketch, the noise tail perturbs the leading values
    stol = S_TOL[dt] if n_iter > 0 else max(S_TOL[dt], 1e-3)
    assert float((S - s0[:k]).abs().max() / s0[0]) <= stol
    D = torch.from_numpy(A.toarray()).to(torch.float64)
    err = float(torch.linalg.matrix_norm(D - (U * S) @ Vh))
    opt = float(s0[k:].norm())
    assert err <= (1.5 if n_iter == 0 else 1.01) * opt + 10 * S_TOL[dt] * float(s0[0])


@needs_kernels
@pytest.mark.parametrize("n_iter", [0, 1, 4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape", [(300, 80), (150, 150), (80, 300)],
                         ids=["tall", "square", "wide"])
def test_rsvd_sparse_planted(spy_fast: list, shape: tuple[int, int], dtype: type,
                             n_iter: int) -> None:
    m, n = shape
    A = _planted_sparse(m, n, dtype=dtype, seed=n_iter)
    k = 5
    res = rsvd(A, k, n_iter=n_iter, generator=4)
    _check_result(A, res, k, n_iter=n_iter)
    if m >= n:
        assert spy_fast == [((m, n), 16, True)]  # rank + 10 rounded up to 16, accepted
    else:
        # wide: the general path (or, when the tall-side path runs on A^H, that path
        # on the transposed map)
        assert spy_fast in ([], [((n, m), 16, True)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_rsvd_sparse_deterministic(dtype: type) -> None:
    A = _planted_sparse(250, 60, dtype=dtype, seed=3)
    r1 = rsvd(A, 4, n_iter=2, generator=9)
    r2 = rsvd(A, 4, n_iter=2, generator=torch.Generator().manual_seed(9))
    for a, b in zip(r1, r2, strict=True):
        np.testing.assert_array_equal(a, b)
    r3 = rsvd(A, 4, n_iter=2, generator=10)
    assert not np.array_equal(r1.U, r3.U)
    np.testing.assert_allclose(r1.S, r3.S, rtol=S_TOL[dtype] * 10)


@needs_kernels
@pytest.mark.parametrize("n_iter", [0, 2])
def test_rsvd_ill_conditioned_falls_back(spy_fast: list, monkeypatch: pytest.MonkeyPatch,
                                         n_iter: int) -> None:
    # float32, column scales over 1e6: the final 16-column block is far too ill conditioned
    # for Cholesky-QR in float32, so the fast path finishes with Householder QR and one
    # more pass (2 n_iter + 3 passes in all) instead of starting over on the general path
    general: list[int] = []
    orig = rsvd_mod._subspace_range

    def spy_range(A, ell, n_iter, generator):  # noqa: ANN001, ANN202
        general.append(ell)
        return orig(A, ell, n_iter, generator)

    passes: list[str] = []
    for name in ("mm", "rmm"):
        orig_pass = getattr(_spmm.SparseRows, name)

        def counted(self, X, out=None, _f=orig_pass, _n=name):  # noqa: ANN001, ANN202
            passes.append(_n)
            return _f(self, X, out=out)

        monkeypatch.setattr(_spmm.SparseRows, name, counted)
    monkeypatch.setattr(rsvd_mod, "_subspace_range", spy_range)
    m, n, k = 300, 20, 4
    B = _random_csr(m, n, 3000, seed=1)
    A = sp.csr_array(B @ sp.diags_array(10.0 ** np.linspace(0, 6, n))).astype(np.float32)
    res = rsvd(A, k, n_iter=n_iter, generator=0)
    assert spy_fast == [((m, n), 16, False)]
    assert general == []
    assert len(passes) == 2 * n_iter + 3
    U, S, Vh = (_t64(x) for x in res)
    _, s0, _ = _svd64(A)
    np.testing.assert_allclose(S.numpy(), s0[:k].numpy(), rtol=1e-4)
    eye = torch.eye(k, dtype=torch.float64)
    assert float((U.T @ U - eye).abs().max()) <= 1e-5
    assert float((Vh @ Vh.T - eye).abs().max()) <= 1e-5
    D = torch.from_numpy(A.toarray()).to(torch.float64)
    err = float(torch.linalg.matrix_norm(D - (U * S) @ Vh))
    assert err <= 1.01 * float(s0[k:].norm()) + 1e-4 * float(s0[0])


@needs_kernels
@pytest.mark.parametrize("rank,oversample", [(1, 0), (3, 5), (5, 10), (7, 9), (17, 3),
                                             (20, 13), (30, 0)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_rsvd_rounded_oversampling_keeps_shapes(spy_fast: list, rank: int, oversample: int,
                                                dtype: type) -> None:
    m, n = 200, 45
    A = _random_csr(m, n, 3000, dtype=dtype, seed=rank)
    res = rsvd(A, rank, n_iter=1, oversample=oversample, generator=1)
    assert res.U.shape == (m, rank) and res.S.shape == (rank,) and res.Vh.shape == (rank, n)
    lanes = 64 // np.dtype(dtype).itemsize
    [(shape, ell, _)] = spy_fast
    assert shape == (m, n)
    ell0 = min(rank + oversample, n)
    assert ell >= ell0 and (ell % lanes == 0 or ell == n) and ell - ell0 < lanes
    _, s0, _ = _svd64(A)
    # a random sparse matrix has a flat spectrum: only loose agreement is expected
    np.testing.assert_allclose(np.asarray(res.S, dtype=np.float64), s0[:rank].numpy(),
                               rtol=0.15)


@needs_kernels
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("deficient", [False, True], ids=["full-rank", "empty-column"])
def test_rsvd_sparse_full_rank(spy_fast: list, dtype: type, deficient: bool) -> None:
    m, n = 60, 12
    A = _random_csr(m, n, 300, dtype=dtype, seed=2)
    if deficient:
        A = sp.csr_array(A @ sp.diags_array((np.arange(n) != 5).astype(dtype)))
        A.eliminate_zeros()
        assert (np.bincount(A.indices, minlength=n) == 0).any()
    res = rsvd(A, n, n_iter=1, generator=0)
    U, S, Vh = (_t64(x) for x in res)
    assert tuple(U.shape) == (m, n) and tuple(S.shape) == (n,) and tuple(Vh.shape) == (n, n)
    _, s0, _ = _svd64(A)
    tol = S_TOL[dtype]
    np.testing.assert_allclose(S.numpy(), s0.numpy(), atol=tol * float(s0[0]), rtol=0)
    D = torch.from_numpy(A.toarray()).to(torch.float64)
    assert float(torch.linalg.matrix_norm(D - (U * S) @ Vh)) <= 10 * tol * float(s0[0])
    assert float((Vh @ Vh.T - torch.eye(n, dtype=torch.float64)).abs().max()) <= \
        ORTH_TOL[dtype]
    if not deficient:
        assert spy_fast == [((m, n), 12, True)]
        assert float((U.T @ U - torch.eye(n, dtype=torch.float64)).abs().max()) <= \
            ORTH_TOL[dtype]
    else:
        # the zero singular value has no well-defined left vector; the rest are orthonormal
        assert spy_fast == [((m, n), 12, False)]
        Uk = U[:, :-1]
        assert float((Uk.T @ Uk - torch.eye(n - 1, dtype=torch.float64)).abs().max()) <= \
            ORTH_TOL[dtype]


@pytest.mark.parametrize("n_iter", [0, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_rsvd_without_kernels_uses_torch_csr(monkeypatch: pytest.MonkeyPatch,
                                             spy_fast: list, dtype: type,
                                             n_iter: int) -> None:
    monkeypatch.setattr(_range, "have_kernels", lambda: False)
    A = _planted_sparse(250, 70, dtype=dtype, seed=5)
    assert as_linear_map(A, "A", "test").sparse_rows is None
    k = 5
    res = rsvd(A, k, n_iter=n_iter, generator=4)
    _check_result(A, res, k, n_iter=n_iter)
    assert spy_fast == []  # no SparseRows: the general path
    monkeypatch.setattr(_range, "have_kernels", have_kernels)
    if have_kernels():
        fast = rsvd(A, k, n_iter=n_iter, generator=4)
        np.testing.assert_allclose(np.asarray(fast.S), np.asarray(res.S),
                                   rtol=S_TOL[dtype] * 10 if n_iter else 1e-3)


@needs_kernels
def test_rsvd_torch_sparse_input(spy_fast: list) -> None:
    A = _planted_sparse(200, 50, seed=6)
    C = A.tocoo()
    T = torch.sparse_coo_tensor(np.vstack([C.row, C.col]), C.data, size=A.shape,
                                check_invariants=True)
    res = rsvd(T, 5, n_iter=2, generator=1)
    assert isinstance(res.U, torch.Tensor) and res.U.dtype == torch.float64
    assert spy_fast == [((200, 50), 16, True)]
    _check_result(A, tuple(x.numpy() for x in res), 5, n_iter=2)


def test_random_signs_are_signs_and_independent_of_threads() -> None:
    draw = rsvd_mod._random_signs
    a = draw(50_001, 64, torch.Generator().manual_seed(3))
    assert a.dtype == torch.int8 and tuple(a.shape) == (50_001, 64)
    assert set(a.unique().tolist()) == {-1, 1}
    assert abs(float(a.float().mean())) < 0.01
    with thread_limit(1):
        b = draw(50_001, 64, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert not torch.equal(a, draw(50_001, 64, torch.Generator().manual_seed(4)))


@needs_kernels
def test_tall_workspace_is_reused_and_never_returned() -> None:
    from rankfold.linalg import free_workspace

    A = _random_csr(400, 60, 4000, dtype=np.float32, seed=5)
    free_workspace()
    r1 = rsvd(A, 5, n_iter=1, generator=0)
    block = _spmm._WORKSPACE.block
    assert block is not None and tuple(block.shape) == (400, 16)
    r2 = rsvd(A, 5, n_iter=1, generator=0)
    assert _spmm._WORKSPACE.block is block  # same shape: reused
    for x, y in zip(r1, r2, strict=True):
        np.testing.assert_array_equal(x, y)
        assert not np.shares_memory(np.asarray(x), block.numpy())
    free_workspace()
    assert _spmm._WORKSPACE.block is None
    r3 = rsvd(A, 5, n_iter=1, generator=0)
    for x, y in zip(r1, r3, strict=True):
        np.testing.assert_array_equal(x, y)
    free_workspace()


@needs_kernels
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_matrix_operator_uses_kernels_and_keeps_input(dtype: type) -> None:
    from rankfold._array import MatrixOperator

    rng = np.random.default_rng(7)
    rows = rng.integers(0, 300, 2000)
    cols = rng.integers(0, 120, 2000)
    vals = rng.standard_normal(2000).astype(dtype)
    A = sp.coo_array((vals, (rows, cols)), shape=(300, 120)).tocsr()  # duplicates summed
    A = sp.csr_array((A.data[::-1].copy(), A.indices[::-1].copy(),  # unsorted rows
                      A.indptr.copy()), shape=A.shape)
    A.has_sorted_indices = False
    before = (A.indptr.copy(), A.indices.copy(), A.data.copy())
    op = MatrixOperator(A)
    assert op._rows is not None
    X = torch.randn(120, 9, dtype=op.dtype)
    Y = torch.randn(300, 9, dtype=op.dtype)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(op.mm(X).numpy(), A @ X.numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(op.rmm(Y).numpy(), A.T @ Y.numpy(), rtol=tol, atol=tol)
    for a, b in zip(before, (A.indptr, A.indices, A.data), strict=True):
        np.testing.assert_array_equal(a, b)
