"""Randomized SVD: rankfold.linalg.rsvd against scikit-learn, torch, fbpca and scipy svds.

Usage: python benchmarks/linalg_rsvd.py [--quick] [--repeats R] [--threads T]
                                       [--parts dense,sparse,spmm,tol,guard]

Parts, one process, the same inputs for every method:

dense  m x n float32 with singular values s_i = (1 + i)^(-1/2) (slow decay), rank k.
       Every method is tuned (its iteration count; rankfold also picks subspace or Krylov)
       to the cheapest setting whose Frobenius error is within 1% of the optimal rank-k
       error; then the median time of that setting is compared. A bare GEMM pass
       ``A @ Omega`` (Omega with k + 10 columns) is timed too, so the time of the passes
       rankfold cannot avoid is known.
sparse m x n with nnz nonzeros (power-law row/column popularity, a rank-8 signal plus
       noise), rank k: rsvd vs scipy svds (ARPACK, PROPACK) and scikit-learn
       randomized_svd, each at the cheapest setting within 1% of the best error found.
spmm   one pass over the sparse matrix: rankfold's compiled kernels vs torch CSR vs scipy CSR.
tol    tolerance mode on the dense matrix: tol = 1.01 x the optimal rank-k error; the
       rank found vs the optimal rank, and the time vs a fixed-rank run at that rank.
guard  precision='auto' vs 'full' on a fast-decaying dense matrix, where the bfloat16
       rounding bound exceeds 1% of the error and the guard adds a float32 iteration.

Writes benchmarks/results/linalg_rsvd.json and docs/benchmarks/linalg_rsvd.md (--quick
adds _quick to the names, --threads T other than 2 adds _threadsT). Running some --parts keeps the
other parts already in the results file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.fft
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from rankfold._io import atomic_write_text  # noqa: E402
from rankfold.linalg import rsvd  # noqa: E402

THREADS = 2


# --- data ----------------------------------------------------------------------------------

def _orthonormal_columns(rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """rows x cols orthonormal columns: random signs + orthonormal DCT + row permutation."""
    X = np.zeros((rows, cols), dtype=np.float32)
    X[np.arange(cols), np.arange(cols)] = 1.0
    X *= rng.choice(np.array([-1.0, 1.0], dtype=np.float32), rows)[:, None]
    X = scipy.fft.dct(X, axis=0, norm="ortho", workers=THREADS)
    return X[rng.permutation(rows)]


def dense_matrix(m: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A = U diag(s) V^T with s_i = (1 + i)^(-1/2); returns (A float32, s float64)."""
    rng = np.random.default_rng(seed)
    s = (1.0 + np.arange(n)) ** -0.5
    Vt = _orthonormal_columns(n, n, rng).T  # n x n orthogonal
    top = np.zeros((m, n), dtype=np.float32)
    top[:n] = (s[:, None] * Vt).astype(np.float32)
    top *= rng.choice(np.array([-1.0, 1.0], dtype=np.float32), m)[:, None]
    A = scipy.fft.dct(top, axis=0, norm="ortho", workers=THREADS)
    return np.ascontiguousarray(A[rng.permutation(m)], dtype=np.float32), s


def sparse_matrix(m: int, n: int, nnz: int, seed: int = 0) -> sp.csr_array:
    rng = np.random.default_rng(seed)
    pr = (1.0 + np.arange(m)) ** -0.6
    pc = (1.0 + np.arange(n)) ** -0.6
    rows = rng.choice(m, size=nnz, p=pr / pr.sum())
    cols = rng.choice(n, size=nnz, p=pc / pc.sum())
    U = rng.standard_normal((m, 8)).astype(np.float32)
    V = rng.standard_normal((n, 8)).astype(np.float32)
    vals = np.einsum("ij,ij->i", U[rows], V[cols]) + rng.standard_normal(nnz).astype(np.float32)
    A = sp.csr_array((vals.astype(np.float32), (rows, cols)), shape=(m, n))
    A.sum_duplicates()
    return A


# --- helpers -------------------------------------------------------------------------------

def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def frob_err_dense(A: torch.Tensor, U: Any, S: Any, Vh: Any, chunk: int = 4096) -> float:
    U, S, Vh = (torch.as_tensor(np.asarray(x), dtype=torch.float32) for x in (U, S, Vh))
    total = 0.0
    for i in range(0, A.shape[0], chunk):
        r = A[i:i + chunk] - (U[i:i + chunk] * S) @ Vh
        total += float(r.to(torch.float64).square().sum())
    return math.sqrt(total)


def frob_err_sparse(A: sp.csr_array, norm_sq: float, U: Any, S: Any, Vh: Any) -> float:
    """||A - U S Vh||_F for orthonormal U, Vh: ||A||^2 - 2 <A, U S Vh> + ||S||^2."""
    U, S, Vh = (np.asarray(x, dtype=np.float64) for x in (U, S, Vh))
    inner = float(np.sum((U.T @ (A @ Vh.T).astype(np.float64)) * np.diag(S)))
    return math.sqrt(max(norm_sq - 2 * inner + float(S @ S), 0.0))


# --- method runners: (name, setting) -> callable returning (U, S, Vh) ------------------------

def rankfold_runner(A: Any, k: int, method: str, n_iter: int, block: int | None = None,
                    precision: str = "full") -> Callable[[], Any]:
    return lambda: rsvd(A, k, method=method, n_iter=n_iter, block_size=block,
                        precision=precision, generator=0)


def sklearn_runner(A: Any, k: int, n_iter: int) -> Callable[[], Any]:
    from sklearn.utils.extmath import randomized_svd

    return lambda: randomized_svd(A, k, n_iter=n_iter, random_state=0)


def torch_runner(A: torch.Tensor, k: int, n_iter: int) -> Callable[[], Any]:
    def run() -> Any:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            U, S, V = torch.svd_lowrank(A, q=k + 10, niter=n_iter)
        return U[:, :k], S[:k], V[:, :k].mT
    return run


def fbpca_runner(A: np.ndarray, k: int, n_iter: int) -> Callable[[], Any]:
    import fbpca

    def run() -> Any:
        state = np.random.get_state()  # noqa: NPY002 - fbpca draws from the global RNG
        np.random.seed(0)  # noqa: NPY002
        try:
            return fbpca.pca(A, k, raw=True, n_iter=n_iter)
        finally:
            np.random.set_state(state)  # noqa: NPY002
    return run


def tune(name: str, make: Callable[[int], Callable[[], Any]], iters: list[int],
         err_of: Callable[[Any], float], target: float, log: list[str]) -> tuple[int, float]:
    """Smallest iteration count whose error is <= target (or the last one tried)."""
    err = math.inf
    for it in iters:
        err = err_of(make(it)())
        log.append(f"  tune {name} n_iter={it}: error {err:.6g} (target {target:.6g})")
        print(log[-1], flush=True)
        if err <= target:
            return it, err
    return iters[-1], err


# --- parts ---------------------------------------------------------------------------------

def run_dense(m: int, n: int, k: int, repeats: int, log: list[str]) -> dict[str, Any]:
    A_np, s = dense_matrix(m, n)
    A = torch.from_numpy(A_np)
    opt = math.sqrt(float((s[k:] ** 2).sum()))
    target = 1.01 * opt

    def err_of(res: Any) -> float:
        return frob_err_dense(A, *res)

    gemm_cache: dict[tuple[int, bool], tuple[float, float]] = {}
    A_bf16 = A.to(torch.bfloat16)

    def gemm_pass(width: int, bf16: bool = False) -> tuple[float, float]:
        """Bare ``A @ X`` and ``A^T Y`` of that width, the latter as the faster of ``Y^T A``
        and ``A^T @ Y`` (float32 prefers the first, bfloat16 the second here)."""
        if (width, bf16) not in gemm_cache:
            X = torch.randn(n, width, generator=torch.Generator().manual_seed(0))
            Y = torch.randn(m, width, generator=torch.Generator().manual_seed(1))
            M = A
            if bf16:
                M, X, Y = A_bf16, X.to(torch.bfloat16), Y.to(torch.bfloat16)
            gemm_cache[width, bf16] = (timed(lambda: M @ X, max(repeats, 3))[0],
                                       min(timed(lambda: Y.mT @ M, max(repeats, 3))[0],
                                           timed(lambda: M.mT @ Y, max(repeats, 3))[0]))
        return gemm_cache[width, bf16]

    t_gemm, t_gemm_t = gemm_pass(k + 10)
    t_cast = timed(lambda: A.to(torch.bfloat16), max(repeats, 3))[0]
    narrow = max(1, round(0.4 * k))
    rows = []
    # (name, runner(n_iter), n_iter ladder, passes(n_iter), block width, mixed precision)
    candidates: list[tuple[str, Callable[[int], Callable[[], Any]], list[int], Any,
                           int | None, bool]] = [
        ("rankfold rsvd subspace, precision='auto' (default; bf16 passes here)",
         lambda it: rankfold_runner(A, k, "subspace", it, precision="auto"),
         list(range(2, 7)), lambda it: 2 * it + 2, k + 10, True),
        ("rankfold rsvd krylov, precision='mixed'",
         lambda it: rankfold_runner(A, k, "krylov", it, precision="mixed"),
         list(range(1, 6)), lambda it: 2 * it + 2, k + 10, True),
        ("rankfold rsvd subspace, precision='full'",
         lambda it: rankfold_runner(A, k, "subspace", it), list(range(0, 7)),
         lambda it: 2 * it + 2, k + 10, False),
        ("rankfold rsvd krylov (default block size k + 10), precision='full'",
         lambda it: rankfold_runner(A, k, "krylov", it),
         list(range(1, 6)), lambda it: 2 * it + 1, k + 10, False),
        ("rankfold rsvd krylov block_size=k, precision='full'",
         lambda it: rankfold_runner(A, k, "krylov", it, block=k), list(range(1, 6)),
         lambda it: 2 * it + 1, k, False),
        (f"rankfold rsvd krylov block_size={narrow} (0.4 k; not for flat spectra), "
         "precision='full'",
         lambda it: rankfold_runner(A, k, "krylov", it, block=narrow),
         list(range(2, 8)), lambda it: 2 * it + 1, narrow, False),
        ("torch.svd_lowrank", lambda it: torch_runner(A, k, it), list(range(0, 7)), None,
         None, False),
        ("sklearn randomized_svd", lambda it: sklearn_runner(A_np, k, it), list(range(0, 8)),
         None, None, False),
    ]
    try:
        import fbpca  # noqa: F401

        candidates.append(("fbpca.pca", lambda it: fbpca_runner(A_np, k, it),
                           list(range(0, 8)), None, None, False))
    except ImportError:
        log.append("fbpca not installed: skipped")
    for name, make, iters, passes, width, mixed in candidates:
        it, err = tune(name, make, iters, err_of, target, log)
        t, res = timed(make(it), repeats)
        row = {"method": name, "n_iter": it, "seconds": t, "error_over_optimal": err / opt,
               "reached": err <= target}
        if passes is not None:
            p = passes(it)
            row["passes"], row["width"] = p, width
            if mixed:
                # all passes but the last (A^T Q in float32) read the bf16 copy; the
                # cast to bf16 is not a GEMM and is left out of the floor
                tg, tgt = gemm_pass(width, bf16=True)
                tfull = gemm_pass(width)[1]
                row["gemm_floor_seconds"] = ((p - 1) - (p - 1) // 2) * tg + \
                    ((p - 1) // 2) * tgt + tfull
                row["cast_seconds"] = t_cast
            else:
                tg, tgt = gemm_pass(width)
                # the passes alternate A @ X and X^T A (subspace: p / 2 each; Krylov: one
                # more A @ X)
                row["gemm_floor_seconds"] = (p - p // 2) * tg + (p // 2) * tgt
            row["time_over_gemm_floor"] = t / row["gemm_floor_seconds"]
        rows.append(row)
        print(f"{name}: n_iter={it} {t:.3f} s err/opt={err / opt:.5f}", flush=True)
    ours = [r for r in rows if r["method"].startswith("rankfold") and r["reached"]]
    peers = [r for r in rows if not r["method"].startswith("rankfold") and r["reached"]]
    best = min(ours, key=lambda r: r["seconds"]) if ours else None
    best_peer = min(peers, key=lambda r: r["seconds"]) if peers else None
    default_k = next((r for r in ours if "(default" in r["method"]), None)
    return {"m": m, "n": n, "k": k, "dtype": "float32", "optimal_error": opt,
            "default_krylov_ratio_vs_best_peer": (default_k["seconds"] / best_peer["seconds"])
            if default_k and best_peer else None,
            "gemm_pass_seconds": t_gemm, "gemm_pass_t_seconds": t_gemm_t, "rows": rows,
            "cast_seconds": t_cast,
            "best_rankfold": best and best["method"], "best_peer": best_peer and
            best_peer["method"],
            "ratio_vs_best_peer": (best["seconds"] / best_peer["seconds"])
            if best and best_peer else None}


def run_sparse(m: int, n: int, nnz: int, k: int, repeats: int,
               log: list[str]) -> dict[str, Any]:
    A = sparse_matrix(m, n, nnz)
    norm_sq = float(np.dot(A.data.astype(np.float64), A.data.astype(np.float64)))

    def err_of(res: Any) -> float:
        return frob_err_sparse(A, norm_sq, *res)

    def svds_runner(solver: str) -> Callable[[int], Callable[[], Any]]:
        def make(_: int) -> Callable[[], Any]:
            def run() -> Any:
                U, S, Vh = spla.svds(A, k=k, solver=solver, random_state=0)
                order = np.argsort(S)[::-1]
                return U[:, order], S[order], Vh[order]
            return run
        return make

    rows = []
    # reference: ARPACK (exact to working precision) gives the best rank-k error
    t, res = timed(svds_runner("arpack")(0), repeats)
    best_err = err_of(res)
    target = 1.01 * best_err
    rows.append({"method": "scipy svds (arpack)", "n_iter": None, "seconds": t,
                 "error_over_best": 1.0, "reached": True})
    print(f"svds arpack: {t:.3f} s", flush=True)
    try:
        t, res = timed(svds_runner("propack")(0), repeats)
        e = err_of(res)
        rows.append({"method": "scipy svds (propack)", "n_iter": None, "seconds": t,
                     "error_over_best": e / best_err, "reached": e <= target})
        print(f"svds propack: {t:.3f} s", flush=True)
    except Exception as exc:  # propack is optional in some scipy builds
        log.append(f"svds propack failed: {type(exc).__name__}: {exc}")
    for name, make, iters in [
        ("rankfold rsvd subspace", lambda it: rankfold_runner(A, k, "subspace", it),
         list(range(0, 8))),
        ("rankfold rsvd krylov (default block size k + 10)",
         lambda it: rankfold_runner(A, k, "krylov", it),
         list(range(1, 7))),
        ("rankfold rsvd krylov block_size=k",
         lambda it: rankfold_runner(A, k, "krylov", it, block=k), list(range(1, 7))),
        ("sklearn randomized_svd", lambda it: sklearn_runner(A, k, it), list(range(0, 10))),
    ]:
        it, err = tune(name, make, iters, err_of, target, log)
        t, res = timed(make(it), repeats)
        rows.append({"method": name, "n_iter": it, "seconds": t,
                     "error_over_best": err / best_err, "reached": err <= target})
        print(f"{name}: n_iter={it} {t:.3f} s err/best={err / best_err:.5f}", flush=True)
    ours = [r for r in rows if r["method"].startswith("rankfold") and r["reached"]]
    peers = [r for r in rows if not r["method"].startswith("rankfold") and r["reached"]]
    best = min(ours, key=lambda r: r["seconds"]) if ours else None
    best_peer = min(peers, key=lambda r: r["seconds"]) if peers else None
    return {"m": m, "n": n, "nnz": int(A.nnz), "k": k, "dtype": "float32", "rows": rows,
            "best_rankfold": best and best["method"],
            "best_peer": best_peer and best_peer["method"],
            "speedup_vs_best_peer": (best_peer["seconds"] / best["seconds"])
            if best and best_peer else None}


def run_spmm(m: int, n: int, nnz: int, k: int, repeats: int) -> dict[str, Any]:
    """One pass over the sparse matrix: rankfold's compiled kernels (what rsvd uses when
    numba is installed), torch CSR (its fallback; A^T @ Y needs a CSR copy of A^T) and
    scipy CSR (what scikit-learn uses)."""
    from rankfold.linalg._range import _csr_from_scipy
    from rankfold.linalg._spmm import SparseRows, have_kernels

    A = sparse_matrix(m, n, nnz)
    width = -(-(k + 10) // 16) * 16  # rsvd's width: rank + oversample in whole registers
    X = torch.randn(n, width, generator=torch.Generator().manual_seed(0))
    Y = torch.randn(m, width, generator=torch.Generator().manual_seed(1))
    Xn, Yn = X.numpy(), Y.numpy()
    At = sp.csr_array(A.T)
    Tc, Ttc = _csr_from_scipy(A, torch.device("cpu")), _csr_from_scipy(At, torch.device("cpu"))
    reps = max(repeats, 5)
    out: dict[str, Any] = {
        "m": m, "n": n, "nnz": int(A.nnz), "width": width,
        "torch_A_X": timed(lambda: Tc @ X, reps)[0],
        "scipy_A_X": timed(lambda: A @ Xn, reps)[0],
        "torch_At_Y": timed(lambda: Ttc @ Y, reps)[0],
        "scipy_At_Y": timed(lambda: At @ Yn, reps)[0]}
    if have_kernels():
        S = SparseRows(A)
        S.rmm(Y)  # compile (first use) and the column cuts, outside the timing
        out["kernel_A_X"] = timed(lambda: S.mm(X), reps)[0]
        out["kernel_At_Y"] = timed(lambda: S.rmm(Y), reps)[0]
        buf_m, buf_n = torch.empty(m, width), torch.empty(n, width)
        out["kernel_A_X_out"] = timed(lambda: S.mm(X, out=buf_m), reps)[0]
        out["kernel_At_Y_out"] = timed(lambda: S.rmm(Y, out=buf_n), reps)[0]
    print(out, flush=True)
    return out


def run_tol(m: int, n: int, k: int, repeats: int, log: list[str]) -> dict[str, Any]:
    A_np, s = dense_matrix(m, n)
    A = torch.from_numpy(A_np)
    total = float((s**2).sum())
    tol = 1.01 * math.sqrt(float((s[k:] ** 2).sum()) / total)
    tails = np.concatenate([np.cumsum((s**2)[::-1])[::-1], [0.0]]) / total
    r_opt = int(np.nonzero(tails[1:] <= tol * tol)[0][0]) + 1
    t_tol, res = timed(lambda: rsvd(A, tol=tol, generator=0), repeats)
    r = int(res.S.shape[0])
    err = frob_err_dense(A, *res) / math.sqrt(total)
    t_fix, res_fix = timed(lambda: rsvd(A, r, generator=0), repeats)
    err_fix = frob_err_dense(A, *res_fix) / math.sqrt(total)
    # the same pair with every pass in float32
    t_tol_f, res_f = timed(lambda: rsvd(A, tol=tol, precision="full", generator=0), repeats)
    r_f = int(res_f.S.shape[0])
    t_fix_f, _ = timed(lambda: rsvd(A, r_f, precision="full", generator=0), repeats)
    print(f"tol {tol:.5f}: rank {r} (optimal {r_opt}) {t_tol:.3f} s; fixed rank {r}: "
          f"{t_fix:.3f} s (precision full: tol rank {r_f} {t_tol_f:.3f} s, fixed "
          f"{t_fix_f:.3f} s)", flush=True)
    return {"m": m, "n": n, "tol": tol, "rank_found": r, "optimal_rank": r_opt,
            "relative_error": err, "seconds_tol": t_tol, "seconds_fixed_rank": t_fix,
            "fixed_rank_relative_error": err_fix, "time_ratio": t_tol / t_fix,
            "full": {"rank_found": r_f, "relative_error": frob_err_dense(A, *res_f)
                     / math.sqrt(total), "seconds_tol": t_tol_f,
                     "seconds_fixed_rank": t_fix_f, "time_ratio": t_tol_f / t_fix_f}}


def run_guard(m: int, n: int, k: int, repeats: int) -> dict[str, Any]:
    """Mixed precision where its guard must act: a fast-decaying spectrum (singular values
    1 .. 1e-4 over 300 directions plus 1e-6 noise), whose rank-k error is far below what
    rounding A to bfloat16 could add, so precision='auto' adds a float32 power iteration.
    Default n_iter (4), auto vs full, interleaved."""
    g = torch.Generator().manual_seed(0)
    r = min(300, n)
    U = torch.linalg.qr(torch.randn(m, r, generator=g))[0]
    V = torch.linalg.qr(torch.randn(n, r, generator=g))[0]
    s = torch.logspace(0, -4, r)
    A = (U * s) @ V.T + 1e-6 * torch.randn(m, n, generator=g)
    opt = math.sqrt(float((s[k:].double() ** 2).sum()) + 1e-12 * m * n)
    times: dict[str, list[float]] = {"auto": [], "full": []}
    errs: dict[str, float] = {}
    for _ in range(repeats):
        for prec in times:
            t0 = time.perf_counter()
            res = rsvd(A, k, precision=prec, generator=0)
            times[prec].append(time.perf_counter() - t0)
            errs[prec] = frob_err_dense(A, *res) / opt
    out = {"m": m, "n": n, "k": k,
           "seconds": {p: statistics.median(v) for p, v in times.items()},
           "error_over_optimal": errs}
    print(f"guard: auto {out['seconds']['auto']:.3f} s err/opt {errs['auto']:.6f}; full "
          f"{out['seconds']['full']:.3f} s err/opt {errs['full']:.6f}", flush=True)
    return out


# --- report --------------------------------------------------------------------------------

def _provenance(d: dict[str, Any]) -> str:
    return f"Made by `{d.get('command', '?')}`. {d.get('machine', '')}\n"


def markdown(res: dict[str, Any], command: str) -> str:
    out = ["# Randomized SVD (rankfold.linalg.rsvd)", "",
           f"Command: `{command}`  ",
           f"Threads: {THREADS} (torch.set_num_threads); dtype float32; torch "
           f"{torch.__version__}, numpy {np.__version__}; median of {res['repeats']} runs "
           f"per setting. {res['machine']}", ""]
    if "dense" in res:
        d = res["dense"]
        out += [f"## Dense {d['m']} x {d['n']}, slow decay s_i = (1+i)^-1/2, rank {d['k']}",
                "", _provenance(d),
                "Each method at its cheapest iteration count whose Frobenius error is within "
                "1% of the optimal rank-k error (peers at their default oversampling: "
                "torch.svd_lowrank and sklearn k + 10 columns, fbpca k + 2). Time / GEMM "
                "passes divides by the time of the same number of bare products of the "
                "same width (A @ X, X^T A); for the mixed-precision rows every pass but "
                "the last reads the bfloat16 copy, so their floor is that many bare "
                "bfloat16 products plus one float32 X^T A (the cast to bfloat16, "
                f"{d.get('cast_seconds', float('nan')):.3f} s, is not in the floor). "
                "A bare float32 GEMM pass (A @ Omega, k + 10 "
                f"columns) took {d['gemm_pass_seconds']:.3f} s (A^T @ Y: "
                f"{d['gemm_pass_t_seconds']:.3f} s).", "",
                "| method | n_iter | passes | time (s) | error / optimal | time / GEMM passes "
                "| time / best peer |", "|---|---|---|---|---|---|---|"]
        peer_best = min((r["seconds"] for r in d["rows"]
                         if not r["method"].startswith("rankfold") and r["reached"]),
                        default=None)
        for r in d["rows"]:
            ratio = f"{r['seconds'] / peer_best:.2f}" if peer_best else "-"
            out.append(f"| {r['method']} | {r['n_iter']} | {r.get('passes', '-')} | "
                       f"{r['seconds']:.3f} | {r['error_over_optimal']:.4f}"
                       f"{'' if r['reached'] else ' (not reached)'} | "
                       f"{r.get('time_over_gemm_floor', float('nan')):.2f} | {ratio} |")
        if d["ratio_vs_best_peer"] is not None:
            out += ["", f"Best rankfold setting ({d['best_rankfold']}) takes "
                    f"**{d['ratio_vs_best_peer']:.2f}x** the time of the fastest peer "
                    f"({d['best_peer']}); goal <= 0.7x."]
            if d.get("default_krylov_ratio_vs_best_peer") is not None:
                out.append(f"With rankfold's defaults (method 'subspace', precision "
                           f"'auto'), tuned n_iter: "
                           f"{d['default_krylov_ratio_vs_best_peer']:.2f}x.")
        out.append("")
    if "sparse" in res:
        d = res["sparse"]
        out += [f"## Sparse {d['m']} x {d['n']}, {d['nnz']} nonzeros, rank {d['k']}", "",
                _provenance(d),
                "Accuracy target: Frobenius error within 1% of ARPACK's (the best rank-k "
                "error to working precision).", "",
                "| method | n_iter | time (s) | error / best | speed-up of best rankfold |",
                "|---|---|---|---|---|"]
        best_ours = min((r["seconds"] for r in d["rows"]
                         if r["method"].startswith("rankfold") and r["reached"]),
                        default=None)
        for r in d["rows"]:
            sp_txt = f"{r['seconds'] / best_ours:.2f}" if best_ours else "-"
            out.append(f"| {r['method']} | {r['n_iter'] if r['n_iter'] is not None else '-'}"
                       f" | {r['seconds']:.3f} | {r['error_over_best']:.4f}"
                       f"{'' if r['reached'] else ' (not reached)'} | {sp_txt} |")
        if d["speedup_vs_best_peer"] is not None:
            out += ["", f"Speed-up of the best rankfold setting ({d['best_rankfold']}) over "
                    f"the fastest peer ({d['best_peer']}): "
                    f"**{d['speedup_vs_best_peer']:.2f}x** (below 1: rankfold is slower); "
                    "goal >= 3x."]
        out.append("")
    if "spmm" in res:
        d = res["spmm"]
        kern = "kernel_A_X" in d
        out += [f"## One sparse pass: rankfold kernels vs torch CSR vs scipy CSR ({d['m']} x "
                f"{d['n']}, {d['nnz']} nonzeros, {d['width']} columns)", "", _provenance(d),
                "| product | rankfold (numba) (s) | torch CSR, int32 indices (s) | "
                "scipy CSR (s) | torch / rankfold | scipy / rankfold |",
                "|---|---|---|---|---|---|"]
        for label, key in (("A @ X", "A_X"), ("A^T @ Y", "At_Y")):
            if kern:
                r = d[f"kernel_{key}"]
                out.append(f"| {label} | {r:.4f} | {d[f'torch_{key}']:.4f} | "
                           f"{d[f'scipy_{key}']:.4f} | {d[f'torch_{key}'] / r:.2f} | "
                           f"{d[f'scipy_{key}'] / r:.2f} |")
            else:
                out.append(f"| {label} | (numba not installed) | {d[f'torch_{key}']:.4f} | "
                           f"{d[f'scipy_{key}']:.4f} | | |")
        if "kernel_A_X_out" in d:
            out += ["", f"Into a reused output block (`out=`, as rsvd does): A @ X "
                    f"{d['kernel_A_X_out']:.4f} s, A^T @ Y {d['kernel_At_Y_out']:.4f} s; the "
                    "rows above include the page faults of a fresh output block, which vary "
                    "from run to run on this machine."]
        out += ["", "torch and scipy compute A^T @ Y from a CSR copy of A^T (built outside "
                "the timing); rankfold's kernels scatter from the CSR of A itself.", ""]
    if "tol" in res:
        d = res["tol"]
        out += [f"## Tolerance mode, dense {d['m']} x {d['n']}", "", _provenance(d),
                "| tol | rank found | optimal rank | rel. error | time tol (s) | "
                "time fixed rank (s) | ratio |", "|---|---|---|---|---|---|---|",
                f"| {d['tol']:.5f} | {d['rank_found']} | {d['optimal_rank']} | "
                f"{d['relative_error']:.5f} | {d['seconds_tol']:.3f} | "
                f"{d['seconds_fixed_rank']:.3f} | {d['time_ratio']:.2f} |"]
        if "full" in d:
            f = d["full"]
            out.append(f"| {d['tol']:.5f} (precision='full') | {f['rank_found']} | "
                       f"{d['optimal_rank']} | {f['relative_error']:.5f} | "
                       f"{f['seconds_tol']:.3f} | {f['seconds_fixed_rank']:.3f} | "
                       f"{f['time_ratio']:.2f} |")
        out += ["", "Goal: tol-mode time <= 1.3x a fixed-rank run at the rank it found. First "
                "row: defaults (precision='auto': bfloat16 range finding on this CPU, for "
                "tol mode since tol >= 0.2); second row: every pass in float32.", ""]
    if "guard" in res:
        d = res["guard"]
        out += [f"## Mixed precision where the guard acts, dense {d['m']} x {d['n']}, "
                f"rank {d['k']}", "", _provenance(d),
                "Singular values 1 .. 1e-4 over 300 directions plus 1e-6 noise: the rank-k "
                "error is far below what rounding A to bfloat16 could add, so "
                "precision='auto' adds one float32 power iteration after the bfloat16 "
                "ones. Default n_iter (4).", "",
                "| precision | time (s) | error / optimal |", "|---|---|---|"]
        for p in ("auto", "full"):
            out.append(f"| {p} | {d['seconds'][p]:.3f} | {d['error_over_optimal'][p]:.6f} |")
        out.append("")
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="smaller problems (dense 8000 x 2000 rank 40; sparse 50000 x 12500 "
                         "with 1.25M nonzeros)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--parts", default="dense,sparse,spmm,tol,guard")
    ap.add_argument("--shared", action="store_true",
                    help="note in the report that the machine was shared with other jobs")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--fresh", action="store_true",
                    help="do not merge with parts already in the results file")
    args = ap.parse_args()
    global THREADS
    THREADS = args.threads
    torch.set_num_threads(THREADS)
    parts = set(args.parts.split(","))
    if args.quick:
        dm, dn, dk = 8000, 2000, 40
        sm, sn, snnz, sk = 50_000, 12_500, 1_250_000, 50
    else:
        dm, dn, dk = 20_000, 5_000, 100
        sm, sn, snnz, sk = 200_000, 50_000, 5_000_000, 50
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    machine = (f"Machine: {platform.machine()}, {os.cpu_count()} cores, load average "
               f"{load:.1f} at start" + ("; shared with other jobs." if args.shared
                                         or load > 1.5 else "."))
    log: list[str] = []
    res: dict[str, Any] = {"quick": args.quick, "repeats": args.repeats, "machine": machine,
                           "threads": THREADS}
    # quick and non-default thread counts get their own page, so they never replace the
    # full-size results
    name = "linalg_rsvd" + ("_quick" if args.quick else "") + (
        "" if THREADS == 2 else f"_threads{THREADS}")
    out_json = ROOT / "benchmarks" / "results" / f"{name}.json"
    if out_json.exists() and not args.fresh:  # keep the parts not re-run now
        old = json.loads(out_json.read_text(encoding="utf-8"))
        if old.get("quick") == args.quick and old.get("threads") == THREADS:
            for part in ("dense", "sparse", "spmm", "tol", "guard"):
                if part in old and part not in parts:
                    res[part] = old[part]
    command = ("python benchmarks/linalg_rsvd.py " + " ".join(sys.argv[1:])).strip()
    if "dense" in parts:
        res["dense"] = run_dense(dm, dn, dk, args.repeats, log)
        res["dense"]["command"], res["dense"]["machine"] = command, machine
    if "sparse" in parts:
        res["sparse"] = run_sparse(sm, sn, snnz, sk, args.repeats, log)
        res["sparse"]["command"], res["sparse"]["machine"] = command, machine
    if "spmm" in parts:
        res["spmm"] = run_spmm(sm, sn, snnz, sk, args.repeats)
        res["spmm"]["command"], res["spmm"]["machine"] = command, machine
    if "tol" in parts:
        res["tol"] = run_tol(dm, dn, dk, args.repeats, log)
        res["tol"]["command"], res["tol"]["machine"] = command, machine
    if "guard" in parts:
        res["guard"] = run_guard(dm, dn, dk, args.repeats)
        res["guard"]["command"], res["guard"]["machine"] = command, machine
    res["log"] = log
    res["command"] = command
    atomic_write_text(out_json, json.dumps(res, indent=2, default=float))
    md = markdown(res, command)
    atomic_write_text(ROOT / "docs" / "benchmarks" / f"{name}.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
