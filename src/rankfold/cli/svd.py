"""``rankfold svd INPUT``: randomized truncated SVD of a matrix file.

Reads INPUT (.npy, .npz, .mtx, .csv, .tsv), computes ``U, S, Vh`` with
:func:`rankfold.linalg.rsvd` to ``--rank K`` or to a relative error ``--tol EPS``, writes
them to an .npz file (atomically) and prints a summary on stdout.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from ._output import hint, print_json, print_table

_DTYPES = {"float32": np.float32, "float64": np.float64}


def register(sub: Any) -> None:
    p = sub.add_parser(
        "svd", help="randomized truncated SVD of a matrix file",
        description="Compute a truncated SVD A ~ U diag(S) Vh of the matrix in INPUT with "
                    "randomized SVD, to a fixed --rank or to a relative Frobenius error "
                    "--tol (the smallest rank that meets it), and write U, S, Vh to an "
                    ".npz file. Exactly one of --rank and --tol is required.",
        epilog="Input formats: .npy, .npz (one array, or scipy.sparse.save_npz), "
               ".mtx (Matrix Market), .csv/.tsv (numbers, optional header line). "
               "Exit codes: 0 ok, 1 runtime/data error, 2 usage error.",
    )
    p.add_argument("input", metavar="INPUT", help="matrix file")
    p.add_argument("--rank", type=int, default=None, metavar="K",
                   help="number of singular triplets")
    p.add_argument("--tol", type=float, default=None, metavar="EPS",
                   help="relative Frobenius error target in (0, 1); the rank is found "
                        "adaptively")
    p.add_argument("--n-iter", type=int, default=None, metavar="N",
                   help="power iterations (subspace), Krylov depth (krylov) or power "
                        "iterations per block (--tol); default: the method's")
    p.add_argument("--oversample", type=int, default=10, metavar="P",
                   help="extra sampled directions (default 10)")
    p.add_argument("--method", default="subspace", choices=["subspace", "krylov"],
                   help="fixed-rank algorithm (default subspace)")
    p.add_argument("--precision", choices=["auto", "full", "mixed"], default="auto",
                   help="dense input: 'mixed' finds the range with a bfloat16 copy and "
                        "projects in full precision, 'full' never rounds; 'auto' (default) "
                        "is mixed for large float32 input on CPUs with bfloat16 dot "
                        "products")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--dtype", choices=["keep", "float32", "float64"], default="keep",
                   help="compute in this precision (default: the file's, integers -> "
                        "float64)")
    p.add_argument("--key", default=None,
                   help="array name inside an .npz file holding several arrays")
    p.add_argument("--out", default=None, metavar="OUT.npz",
                   help="output file (default: INPUT's name with .svd.npz, next to it)")
    p.add_argument("--format", choices=["human", "json"], default="human",
                   help="summary format on stdout")
    p.set_defaults(handler=run)


def _norm_sq(data: np.ndarray, chunk: int = 1 << 20) -> float:
    """Squared Frobenius norm accumulated in float64, chunk by chunk (no full copy)."""
    flat = data.reshape(-1)
    return float(sum(np.dot(c, c) for c in
                     (flat[i:i + chunk].astype(np.float64) for i in range(0, flat.size, chunk))))


def _default_out(path: Path) -> Path:
    return path.with_name(path.stem + ".svd.npz")


def run(args: argparse.Namespace) -> int:
    from .._errors import DataFileError
    from .._io import save_npz_atomic
    from .._matrix_io import load_matrix
    from ..linalg import rsvd
    from .main import UsageError

    if (args.rank is None) == (args.tol is None):
        given = "both" if args.rank is not None else "neither"
        raise UsageError(
            f"rankfold svd needs exactly one of --rank and --tol. Got {given} "
            f"(--rank={args.rank}, --tol={args.tol})."
        )
    src = Path(args.input)
    out = Path(args.out) if args.out is not None else _default_out(src)
    if out.suffix.lower() != ".npz":
        raise UsageError(f"The '--out' option must name an .npz file. Got {str(out)!r}.")
    if src.exists() and out.exists() and out.resolve() == src.resolve():
        raise UsageError(f"The '--out' option must not overwrite INPUT. Got {str(out)!r}.")
    human = args.format == "human"

    t_load = time.perf_counter()
    A = load_matrix(src, key=args.key)
    if args.dtype != "keep":
        A = A.astype(_DTYPES[args.dtype])
    elif A.dtype.kind != "f" or A.dtype == np.float16:
        A = A.astype(np.float64)
    data = A.data if sp.issparse(A) else A
    if not np.isfinite(data).all():
        raise DataFileError(f"{src}: the matrix contains NaN or infinity.")
    load_s = time.perf_counter() - t_load
    m, n = A.shape
    kind = f"sparse, {A.nnz} nonzeros" if sp.issparse(A) else "dense"
    if human:
        hint(f"[svd] {src}: {m} x {n} {A.dtype} ({kind}), read in {load_s:.2f} s")

    t0 = time.perf_counter()
    res = rsvd(A, args.rank, tol=args.tol, n_iter=args.n_iter, oversample=args.oversample,
               method=args.method, precision=args.precision, generator=args.seed)
    seconds = time.perf_counter() - t0
    U, S, Vh = (np.asarray(x) for x in res)

    norm_sq = _norm_sq(data)
    s64 = S.astype(np.float64)
    rel_err = math.sqrt(max(norm_sq - float(s64 @ s64), 0.0) / norm_sq) if norm_sq else 0.0
    save_npz_atomic(out, U=U, S=S, Vh=Vh)
    rank = int(S.shape[0])
    summary = {
        "input": str(src), "shape": [m, n], "dtype": str(A.dtype),
        "sparse": bool(sp.issparse(A)), "nnz": int(A.nnz) if sp.issparse(A) else m * n,
        "mode": "rank" if args.rank is not None else "tol",
        "requested": args.rank if args.rank is not None else args.tol,
        "method": args.method if args.rank is not None else "randQB_EI",
        "rank": rank, "relative_error": rel_err, "seconds": seconds,
        "load_seconds": load_s, "output": str(out),
        "singular_values": [float(v) for v in S],
    }
    if not human:
        print_json(summary)
        return 0
    top = ", ".join(f"{v:.4g}" for v in S[:5]) + (", ..." if rank > 5 else "")
    rows = [
        ["input", f"{src} ({m} x {n}, {A.dtype}, {kind})"],
        ["method", summary["method"] + (f" (tol={args.tol:g})" if args.tol else "")],
        ["rank", rank],
        ["relative error", f"{rel_err:.3e}  (||A - U S Vh||_F / ||A||_F)"],
        ["singular values", top],
        ["time", f"{seconds:.3f} s"],
        ["output", f"{out} (U {m}x{rank}, S {rank}, Vh {rank}x{n})"],
    ]
    print_table("rankfold svd", ["", "value"], rows)
    return 0
