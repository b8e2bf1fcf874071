"""Interpolative decomposition, Nystrom and incremental SVD against their peers.

Usage: python benchmarks/linalg_factorizations.py [--quick] [--repeats N]

Three comparisons, each on real data, all runs in this process, medians of several runs:

1. ``interpolative`` (pivoted QR and randomized) vs ``scipy.linalg.interpolative``
   (``interp_decomp`` at a fixed rank, randomized and deterministic) on the Indian Pines
   hyperspectral image (tensorly wheel; 200 bands x 21025 pixels, choosing pixel columns)
   and on the RBF kernel matrix of scikit-learn's digits: time and relative Frobenius error
   at equal rank, with the optimal (truncated SVD) error for reference.
2. ``nystrom`` vs scikit-learn ``Nystroem`` (uniform column sampling) and
   ``scipy.sparse.linalg.eigsh`` on the RBF kernel of the digits: error of the rank-k
   approximation of the kernel matrix and time.
3. ``IncrementalSVD`` vs scikit-learn ``IncrementalPCA`` and a batch SVD on the (centred)
   Indian Pines pixels streamed in blocks: projection error and time.

Writes benchmarks/results/linalg_factorizations.json and docs/benchmarks/linalg_factorizations.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy
import scipy.linalg.interpolative as sli
import scipy.sparse.linalg as spla
import sklearn
import torch
from sklearn.datasets import load_digits
from sklearn.decomposition import IncrementalPCA
from sklearn.kernel_approximation import Nystroem
from sklearn.metrics.pairwise import rbf_kernel

from rankfold._io import atomic_write_text
from rankfold.datasets._package_files import package_file
from rankfold.linalg import IncrementalSVD, interpolative, nystrom

ROOT = Path(__file__).resolve().parent.parent
NAME = "linalg_factorizations"
LOAD_AT_START = float("nan")


def timed_all(fns: dict[str, Callable[[], Any]], repeats: int
              ) -> dict[str, tuple[float, float, Any]]:
    """Round-robin timing: every repeat runs each method once, in turn, so that bursts of
    load from other jobs on the shared machine hit all methods alike. Returns
    ``name -> (median, min, last output)``; one untimed warm-up run each."""
    outs = {name: fn() for name, fn in fns.items()}
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            outs[name] = fn()
            times[name].append(time.perf_counter() - t0)
    return {name: (statistics.median(t), min(t), outs[name]) for name, t in times.items()}


def rel(A: np.ndarray, B: np.ndarray) -> float:
    return float(np.linalg.norm(A - B) / np.linalg.norm(A))


def opt_rel(A: np.ndarray, k: int) -> float:
    s = np.linalg.svd(A, compute_uv=False)
    return float(np.sqrt((s[k:] ** 2).sum() / (s ** 2).sum()))


def pines(quick: bool) -> np.ndarray:
    path = package_file("tensorly", "datasets/data/Indian_pines_corrected.npy", "tensorly")
    X = np.load(path).reshape(-1, 200).astype(np.float64)  # pixels x bands
    if quick:
        X = X[::4]
    return X


def digits_kernel() -> tuple[np.ndarray, np.ndarray, float]:
    X = load_digits().data / 16.0
    gamma = 1.0 / (X.shape[1] * X.var())
    return X, rbf_kernel(X, gamma=gamma), gamma


# ---------------------------------------------------------------------------------------


def bench_id(repeats: int, quick: bool) -> list[dict[str, Any]]:
    rows = []
    _, K, _ = digits_kernel()
    data = {"pines (200 x pixels)": pines(quick).T.copy(), "digits RBF kernel": K}
    k = 50
    for name, A in data.items():
        opt = opt_rel(A, k)
        At = torch.from_numpy(A)
        runs: dict[str, Callable[[], np.ndarray]] = {
            "rankfold interpolative qr": lambda At=At, A=A: _rf_id(At, A, k, "qr"),
            "rankfold interpolative randomized": lambda At=At, A=A: _rf_id(At, A, k,
                                                                           "randomized"),
            "scipy interp_decomp rand=True": lambda A=A: _sp_id(A, k, True),
            "scipy interp_decomp rand=False": lambda A=A: _sp_id(A, k, False),
        }
        for method, (t, tmin, approx) in timed_all(runs, repeats).items():
            rows.append({"data": name, "shape": list(A.shape), "rank": k, "method": method,
                         "time_s": t, "time_min_s": tmin, "rel_error": rel(A, approx),
                         "optimal_rel_error": opt})
    return rows


def _rf_id(At: torch.Tensor, A: np.ndarray, k: int, method: str) -> np.ndarray:
    cols, X = interpolative(At, k, method=method, generator=0)
    return (At[:, cols] @ X).numpy()


def _sp_id(A: np.ndarray, k: int, rand: bool) -> np.ndarray:
    Af = np.asfortranarray(A)
    idx, proj = sli.interp_decomp(Af, k, rand=rand, rng=np.random.default_rng(0))
    B = Af[:, idx[:k]]
    return sli.reconstruct_matrix_from_id(B, idx, proj)


def bench_nystrom(repeats: int) -> list[dict[str, Any]]:
    rows = []
    X, K, gamma = digits_kernel()
    lam = np.linalg.eigvalsh(K)[::-1]
    Kt = torch.from_numpy(K)
    for k in (50, 150):
        opt = float(np.sqrt((lam[k:] ** 2).sum() / (lam ** 2).sum()))

        def rf(k: int = k) -> np.ndarray:
            U, S = nystrom(Kt, k, oversample=10, generator=0)
            return ((U * S) @ U.T).numpy()

        def rf1(k: int = k) -> np.ndarray:
            U, S = nystrom(Kt, k, oversample=10, n_iter=1, generator=0)
            return ((U * S) @ U.T).numpy()

        def sk(k: int = k) -> np.ndarray:
            ny = Nystroem(kernel="rbf", gamma=gamma, n_components=k + 10, random_state=0)
            F = ny.fit_transform(X)
            # best rank-k part of the rank-(k+10) sketch, for equal rank
            U, s, _ = np.linalg.svd(F, full_matrices=False)
            return (U[:, :k] * s[:k] ** 2) @ U[:, :k].T

        def eig(k: int = k) -> np.ndarray:
            w, V = spla.eigsh(K, k=k, which="LA")
            return (V * w) @ V.T

        runs = {"rankfold nystrom (single pass)": rf,
                "rankfold nystrom n_iter=1": rf1,
                "sklearn Nystroem (uniform columns, k+10)": sk,
                "scipy eigsh (Lanczos)": eig}
        for method, (t, tmin, approx) in timed_all(runs, repeats).items():
            rows.append({"data": "digits RBF kernel", "shape": list(K.shape), "rank": k,
                         "method": method, "time_s": t, "time_min_s": tmin,
                         "rel_error": rel(K, approx), "optimal_rel_error": opt})
    return rows


def bench_incremental(repeats: int, quick: bool) -> list[dict[str, Any]]:
    rows = []
    X = pines(quick)
    Xc = X - X.mean(axis=0)
    k, block = 20, 1000
    s = np.linalg.svd(Xc, compute_uv=False)
    opt = float(np.sqrt((s[k:] ** 2).sum() / (s ** 2).sum()))
    Xt = torch.from_numpy(np.ascontiguousarray(Xc.T))

    def proj_err(V: np.ndarray) -> float:  # V: bands x k orthonormal
        return rel(Xc, (Xc @ V) @ V.T)

    def rf() -> np.ndarray:
        isvd = IncrementalSVD(k, keep_vh=False)
        for j in range(0, Xt.shape[1], block):
            isvd.partial_fit(Xt[:, j:j + block])
        return isvd.U_.numpy()

    def ipca() -> np.ndarray:
        p = IncrementalPCA(n_components=k, batch_size=block)
        for j in range(0, Xc.shape[0], block):
            p.partial_fit(Xc[j:j + block])
        return p.components_.T

    def batch() -> np.ndarray:
        return torch.linalg.svd(Xt, full_matrices=False)[0][:, :k].numpy()

    runs = {"rankfold IncrementalSVD": rf, "sklearn IncrementalPCA": ipca,
            "batch torch.linalg.svd": batch}
    for method, (t, tmin, V) in timed_all(runs, repeats).items():
        rows.append({"data": "Indian Pines pixels (centred)", "shape": list(Xc.shape),
                     "rank": k, "block": block, "method": method, "time_s": t,
                     "time_min_s": tmin, "rel_error": proj_err(V), "optimal_rel_error": opt})
    return rows


# ---------------------------------------------------------------------------------------


def table(rows: list[dict[str, Any]], ref: str) -> str:
    """Markdown table; ratio = (time of the best peer) / (time of this method)."""
    out = ["| data | rank | method | median time (s) | min time (s) | time ratio vs rankfold "
           "| rel. error | optimal |", "|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["data"], r["rank"]), []).append(r)
    for (_, _), grp in groups.items():
        base = next(r for r in grp if r["method"].startswith(ref))
        for r in grp:
            ratio = r["time_s"] / base["time_s"]
            out.append(f"| {r['data']} | {r['rank']} | {r['method']} | {r['time_s']:.4f} | "
                       f"{r['time_min_s']:.4f} | {ratio:.2f} | {r['rel_error']:.3e} | "
                       f"{r['optimal_rel_error']:.3e} |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=None)
    args = ap.parse_args()
    global LOAD_AT_START
    LOAD_AT_START = os.getloadavg()[0]
    repeats = args.repeats or (2 if args.quick else 5)
    torch.set_num_threads(2)
    res = {
        "interpolative": bench_id(repeats, args.quick),
        "nystrom": bench_nystrom(repeats),
        "incremental": bench_incremental(repeats, args.quick),
    }
    cmd = "python benchmarks/linalg_factorizations.py" + (" --quick" if args.quick else "") \
        + (f" --repeats {args.repeats}" if args.repeats else "")
    meta = {"command": cmd, "repeats": repeats, "threads": torch.get_num_threads(),
            "dtype": "float64", "torch": torch.__version__, "scipy": scipy.__version__,
            "sklearn": sklearn.__version__, "python": platform.python_version(),
            "note": "machine shared with other jobs (2 cores); compare ratios",
            "load_at_start": LOAD_AT_START}
    out_json = ROOT / "benchmarks" / "results" / f"{NAME}.json"
    out_json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_json, json.dumps({"meta": meta, "results": res}, indent=2))
    md = [
        "# Interpolative decomposition, Nystrom and incremental SVD",
        "",
        f"Command: `{cmd}`. Medians (and minima) of {repeats} runs after one warm-up, "
        "methods interleaved round-robin, "
        f"threads = {meta['threads']}, float64, machine shared with other jobs (load "
        f"average {meta['load_at_start']:.1f} on 2 cores at the start: compare ratios, not "
        "seconds). "
        "Time ratio = median time / median time of the rankfold reference row (above 1: "
        "rankfold is faster). "
        "Errors are relative Frobenius errors; 'optimal' is the truncated-SVD error at "
        "the same rank.",
        "",
        "## Interpolative decomposition (column ID at equal rank)",
        "",
        table(res["interpolative"], "rankfold interpolative randomized"),
        "",
        "## Nystrom approximation of the digits RBF kernel (1797 x 1797)",
        "",
        "rankfold's `nystrom` multiplies the given kernel matrix by l = k + 10 test "
        "vectors (once, or twice with `n_iter=1`); scikit-learn's `Nystroem` evaluates "
        "only k + 10 sampled kernel columns from the data (cheaper, less accurate); "
        "`eigsh` is the Lanczos reference.",
        "",
        table(res["nystrom"], "rankfold nystrom (single"),
        "",
        "## Incremental SVD of the Indian Pines pixels (streamed in blocks of 1000)",
        "",
        "Projection error ||X - X V V^T|| / ||X|| of the k = 20 leading directions.",
        "",
        table(res["incremental"], "rankfold IncrementalSVD"),
        "",
    ]
    atomic_write_text(ROOT / "docs" / "benchmarks" / f"{NAME}.md", "\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
