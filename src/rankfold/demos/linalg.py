"""Demo section: randomized vs exact SVD of real matrices (hyperspectral image, digits).

For each matrix (columns centred, as for PCA) the section times the exact SVD, rankfold's
``rsvd`` (subspace iteration and block Krylov, fixed rank) and the peers that are
installed (``torch.svd_lowrank``, scikit-learn's ``randomized_svd``), and reports the
relative Frobenius error against the optimal rank-k error. Tolerance mode shows the rank
``rsvd(A, tol=...)`` finds next to the optimal rank for that tolerance.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from . import DemoSection, DemoSkipped

TITLE = "Linear algebra: randomized vs exact SVD on real matrices"
ORDER = 10

_COLUMNS = ["data (m x n)", "method", "rank", "time (s)", "rel. error", "error / optimal",
            "speed-up vs exact"]


def _median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _rel_err(A64: np.ndarray, norm: float, U: Any, S: Any, Vh: Any) -> float:
    U, S, Vh = (np.asarray(x, dtype=np.float64) for x in (U, S, Vh))
    return float(np.linalg.norm(A64 - (U * S) @ Vh) / norm)


def _optimal(s: np.ndarray, k: int) -> float:
    return math.sqrt(float((s[k:] ** 2).sum() / (s**2).sum()))


def _opt_rank(s: np.ndarray, tol: float) -> int:
    sq = s.astype(np.float64) ** 2
    tails = np.concatenate([np.cumsum(sq[::-1])[::-1], [0.0]]) / sq.sum()
    return int(np.nonzero(tails[1:] <= tol * tol)[0][0]) + 1


def _rows_for(name: str, A: np.ndarray, k: int, tols: list[float], repeats: int,
              ) -> tuple[list[list[Any]], list[str]]:
    from ..linalg import rsvd

    A64 = A.astype(np.float64)
    norm = float(np.linalg.norm(A64))
    At = torch.from_numpy(A)
    label = f"{name} ({A.shape[0]} x {A.shape[1]}, {A.dtype})"
    t_exact, (Ue, Se, Vhe) = _median_time(
        lambda: torch.linalg.svd(At, full_matrices=False), repeats)
    # exact singular values from the float64 Gram matrix (n x n, n <= 200 here): the tail
    # sums of s^2 that define the optimal errors are accurate to ~1e-16 ||A||_F^2
    s = np.sqrt(np.clip(np.linalg.eigvalsh(A64.T @ A64)[::-1], 0.0, None))
    opt = _optimal(s, k)
    rows: list[list[Any]] = []

    def add(method: str, rank: int, t: float, res: tuple[Any, Any, Any],
            opt_err: float) -> None:
        err = _rel_err(A64, norm, *res)
        rows.append([label, method, rank, t, err, err / opt_err if opt_err else 1.0,
                     t_exact / t])

    add("exact SVD (torch.linalg.svd)", k, t_exact, (Ue[:, :k], Se[:k], Vhe[:k]), opt)
    for method in ("subspace", "krylov"):
        t, res = _median_time(lambda m=method: rsvd(A, k, method=m, generator=0), repeats)
        add(f"rankfold rsvd ({method})", k, t, res, opt)

    def lowrank() -> tuple[Any, ...]:
        # svd_lowrank takes no generator and draws from the global RNG: fork_rng gives
        # it a copy and restores the caller's state afterwards (its row is not seeded)
        with torch.random.fork_rng(devices=[]):
            U, S, V = torch.svd_lowrank(At, q=k + 10, niter=2)
        return U[:, :k], S[:k], V[:, :k].mT

    t, res = _median_time(lowrank, repeats)
    add("torch.svd_lowrank (niter=2)", k, t, res, opt)
    notes = []
    try:
        from sklearn.utils.extmath import randomized_svd
    except ImportError:
        notes.append("scikit-learn not installed: its randomized_svd row is skipped.")
    else:
        t, res = _median_time(lambda: randomized_svd(A, k, random_state=0), repeats)
        add("sklearn randomized_svd (defaults)", k, t, res, opt)
    for tol in tols:
        t, res = _median_time(lambda tol=tol: rsvd(A, tol=tol, generator=0), repeats)
        r = int(np.asarray(res[1]).shape[0])
        r_opt = _opt_rank(s, tol)
        err = _rel_err(A64, norm, *res)
        rows.append([label, f"rankfold rsvd(tol={tol:g}): optimal rank {r_opt}", r, t, err,
                     err / _optimal(s, r), t_exact / t])
    return rows, notes


def run(quick: bool) -> DemoSection:
    """Run the section (``quick``: Indian Pines only, one timing run instead of two)."""
    from .._errors import DataFileError
    from ..datasets import load_digits_matrix, load_indian_pines

    repeats = 1 if quick else 2
    rows: list[list[Any]] = []
    notes: list[str] = []
    data = []
    try:
        P = load_indian_pines(dtype=np.float32)
        data.append(("Indian Pines", P - P.mean(axis=0), 20, [0.05] if quick else [0.1, 0.05]))
    except DataFileError as exc:
        notes.append(f"Indian Pines skipped: {exc}")
    if not quick or not data:
        try:
            X = load_digits_matrix(dtype=np.float64)
            data.append(("digits", X - X.mean(axis=0), 10, [0.3]))
        except DataFileError as exc:
            notes.append(f"digits skipped: {exc}")
    if not data:
        raise DemoSkipped("pip install --no-deps tensorly==0.10.0 scikit-learn")
    from ..linalg._range import serial

    # one thread for every method: these matrices are small enough that a second thread
    # gains little, and single-threaded timings do not wait for scheduler slices when the
    # machine is shared (measured under load: 24 s for the section on one thread, 49 s
    # on two, with the individual timings 5-50x noisier)
    try:  # numpy's BLAS (scikit-learn's randomized_svd) on one thread too
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - comes with scikit-learn
        limits: Any = contextlib.nullcontext()
    else:
        limits = threadpool_limits(1)
    with serial(), limits:
        for name, A, k, tols in data:
            r, n = _rows_for(name, np.ascontiguousarray(A), k, tols, repeats)
            rows.extend(r)
            notes.extend(x for x in n if x not in notes)
    notes += [
        "Columns centred (PCA). rel. error = ||A - U S Vh||_F / ||A||_F; error / optimal "
        "divides by the best rank-k error (exact SVD, float64). Speed-up = exact SVD time / "
        "method time (median of "
        f"{repeats} run{'s' if repeats > 1 else ''}, one CPU thread for every method; the "
        "machine may be shared).",
        "rsvd(tol=...) returns the smallest rank whose error meets the tolerance for its "
        "basis; 'optimal rank' is the smallest rank any method could use.",
    ]
    return DemoSection(TITLE, _COLUMNS, rows, notes)
