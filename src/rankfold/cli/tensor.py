"""``rankfold tensor X.npy``: CP, Tucker or tensor-train decomposition of a tensor file.

Reads a dense tensor from .npy (or one array of an .npz), optionally a mask (True/1 =
observed; NaN entries of X are treated as missing when no mask is given), decomposes it and
writes the parts to an .npz file atomically: CP -> ``weights, factor_0 .. factor_{K-1}``;
Tucker -> ``core, factor_0 ..``; TT -> ``core_0 .. core_{K-1}``. A summary goes to stdout.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from ._output import hint, print_json, print_table

_DTYPES = {"float32": np.float32, "float64": np.float64}


def register(sub: Any) -> None:
    p = sub.add_parser(
        "tensor", help="CP / Tucker / tensor-train decomposition of a tensor file",
        description="Decompose the dense tensor in INPUT (.npy, or .npz with --key) with CP-ALS "
                    "(--method cp, --rank R), Tucker (--method tucker, --rank R or R1,R2,..., "
                    "or --tol) or TT-SVD (--method tt, --rank of the K-1 TT ranks and/or "
                    "--tol), and write the parts to an .npz file. With --mask (or NaN entries "
                    "in INPUT) the fit uses the observed entries only.",
        epilog="Exit codes: 0 ok, 1 runtime/data error, 2 usage error.",
    )
    p.add_argument("input", metavar="INPUT", help="tensor file (.npy or .npz)")
    p.add_argument("--method", choices=["cp", "tucker", "tt"], default="cp",
                   help="decomposition (default cp)")
    p.add_argument("--rank", default=None, metavar="R",
                   help="CP rank; Tucker ranks (one int or comma list per mode); TT ranks "
                        "(one int or the K-1 inner ranks)")
    p.add_argument("--tol", type=float, default=None, metavar="EPS",
                   help="relative error target (tucker via ST-HOSVD, tt)")
    p.add_argument("--mask", default=None, metavar="M.npy",
                   help="mask file of INPUT's shape, True/1 = observed")
    p.add_argument("--tucker-method", choices=["hooi", "sthosvd", "randomized"],
                   default="hooi", help="Tucker algorithm (default hooi)")
    p.add_argument("--n-iter", type=int, default=None, metavar="N",
                   help="maximum sweeps (default: cp 100, tucker 50)")
    p.add_argument("--l2-reg", type=float, default=0.0, help="CP ridge penalty (default 0)")
    p.add_argument("--nonneg", action="store_true", help="non-negative CP factors")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--dtype", choices=["keep", "float32", "float64"], default="keep",
                   help="compute precision (default: the file's; integers -> float64)")
    p.add_argument("--key", default=None, help="array name inside an .npz INPUT")
    p.add_argument("--out", default=None, metavar="OUT.npz",
                   help="output file (default: INPUT's name with .<method>.npz)")
    p.add_argument("--format", choices=["human", "json"], default="human",
                   help="summary format on stdout")
    p.set_defaults(handler=run)


def _load(path: Path, key: str | None, what: str) -> np.ndarray:
    from .._errors import DataFileError
    from .main import UsageError

    if not path.exists():
        raise DataFileError(f"{what} file '{path}' does not exist.")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                names = list(z.files)
                if key is None:
                    if len(names) != 1:
                        raise UsageError(f"{path} holds arrays {names}; choose one with --key.")
                    key = names[0]
                if key not in names:
                    raise UsageError(f"The '--key' option must be one of {names}. "
                                     f"Got {key!r}.")
                return z[key]
    except (OSError, ValueError) as exc:
        raise DataFileError(f"Cannot read {what} file '{path}': {exc}") from exc
    raise UsageError(f"The {what} file must be .npy or .npz. Got {str(path)!r}.")


def _parse_rank(text: str | None) -> int | list[int] | None:
    from .main import UsageError

    if text is None:
        return None
    try:
        parts = [int(p) for p in text.split(",") if p.strip()]
    except ValueError as exc:
        raise UsageError(f"The '--rank' option must be an int or a comma list of ints. "
                         f"Got {text!r}.") from exc
    if not parts:
        raise UsageError(f"The '--rank' option must not be empty. Got {text!r}.")
    return parts[0] if len(parts) == 1 else parts


def run(args: argparse.Namespace) -> int:
    from .._errors import DataFileError
    from .._io import save_npz_atomic
    from ..tensor import cp, tensor_train, tucker
    from .main import UsageError

    rank = _parse_rank(args.rank)
    if args.method == "cp" and not isinstance(rank, int):
        raise UsageError(f"--method cp needs --rank R (one int). Got --rank={args.rank}.")
    if args.method == "tucker" and rank is None and args.tol is None:
        raise UsageError("--method tucker needs --rank and/or --tol.")
    if args.method == "tt" and args.mask is not None:
        raise UsageError("--method tt does not take --mask (TT-SVD needs a complete tensor).")
    src = Path(args.input)
    out = Path(args.out) if args.out else src.with_name(f"{src.stem}.{args.method}.npz")
    if out.suffix.lower() != ".npz":
        raise UsageError(f"The '--out' option must name an .npz file. Got {str(out)!r}.")
    human = args.format == "human"

    X = _load(src, args.key, "INPUT")
    if X.dtype.kind not in "biuf":
        raise DataFileError(f"{src}: expected a numeric array, got dtype {X.dtype}.")
    X = X.astype(_DTYPES[args.dtype] if args.dtype != "keep" else
                 (X.dtype if X.dtype.kind == "f" and X.dtype != np.float16 else np.float64))
    mask = None
    if args.mask is not None:
        mask = _load(Path(args.mask), None, "mask")
    elif not np.isfinite(X).all():
        mask = np.isfinite(X)
        if human:
            hint(f"[tensor] {int((~mask).sum())} non-finite entries treated as missing")
    if human:
        hint(f"[tensor] {src}: shape {X.shape}, {X.dtype}")

    t0 = time.perf_counter()
    arrays: dict[str, np.ndarray] = {}
    if args.method == "cp":
        res = cp(X, rank, mask=mask, n_iter_max=args.n_iter or 100, l2_reg=args.l2_reg,
                 nonneg=args.nonneg, generator=args.seed)
        arrays["weights"] = res.cp.weights
        arrays.update({f"factor_{k}": f for k, f in enumerate(res.cp.factors)})
        fit, n_iter, size = res.history[-1], res.n_iter, res.cp.size
        ranks: Any = res.cp.rank
    elif args.method == "tucker":
        res_t = tucker(X, rank, tol=args.tol, method=args.tucker_method, mask=mask,
                       n_iter_max=args.n_iter or 50, generator=args.seed)
        arrays["core"] = res_t.tucker.core
        arrays.update({f"factor_{k}": f for k, f in enumerate(res_t.tucker.factors)})
        fit, n_iter, size = res_t.history[-1], res_t.n_iter, res_t.tucker.size
        ranks = list(res_t.tucker.ranks)
    else:
        tt = tensor_train(X, rank, tol=args.tol)
        arrays.update({f"core_{k}": c for k, c in enumerate(tt.cores)})
        nx = float(np.linalg.norm(X.astype(np.float64)))
        err = float(np.linalg.norm(tt.to_tensor().astype(np.float64) - X))
        fit, n_iter, size = 1.0 - err / (nx or 1.0), 1, tt.size
        ranks = list(tt.ranks)
    seconds = time.perf_counter() - t0
    save_npz_atomic(out, **arrays)
    summary = {"input": str(src), "shape": list(X.shape), "dtype": str(X.dtype),
               "method": args.method, "ranks": ranks, "fit": fit, "n_iter": n_iter,
               "masked": mask is not None, "parameters": int(size),
               "compression": float(X.size / max(size, 1)), "seconds": seconds,
               "output": str(out)}
    if not human:
        print_json(summary)
        return 0
    rows = [["input", f"{src} {tuple(X.shape)} {X.dtype}"],
            ["method", args.method + (" (masked)" if mask is not None else "")],
            ["ranks", ranks],
            ["fit", f"{fit:.6f}  (1 - ||X - model|| / ||X||"
                    + (", observed entries)" if mask is not None else ")")],
            ["sweeps", n_iter],
            ["parameters", f"{size} ({summary['compression']:.1f}x smaller)"],
            ["time", f"{seconds:.3f} s"],
            ["output", f"{out} ({', '.join(arrays)})"]]
    print_table("rankfold tensor", ["", "value"], rows)
    return 0
