"""Choose ALS's defaults by 5-fold cross-validation on MovieLens-100K (training part only).

The 80/20 split (generator 0) of the benchmark is made first; only its 80% training
part is cross-validated here, so the test part never informs the defaults. Each fold
fit records the validation RMSE after every sweep, which also picks ``n_iter``.

Usage::

    python benchmarks/completion_tune.py [--quick] [--threads 1]
    python benchmarks/completion_tune.py --neighbors [--threads 1]

Writes benchmarks/results/completion_tune.json. ``--neighbors`` instead tunes the
item-neighbourhood correction on top of the default factor model (the factor fit does
not depend on it): the similarity shrinkage, the number of neighbours ``k``,
``neighbor_reg`` and ``neighbor_scale``, on the same folds; it writes
benchmarks/results/completion_tune_neighbors.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from rankfold.completion import ALS, train_test_split
from rankfold.datasets import load_movielens_100k

ROOT = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--max-iter", type=int, default=10)
    ap.add_argument("--neighbors", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    df = load_movielens_100k()
    train, _test = train_test_split(df, 0.2, generator=0)
    rng = np.random.default_rng(123)
    assign = rng.permutation(len(train)) % args.folds
    if args.neighbors:
        tune_neighbors(train, assign, args)
        return
    grid: list[dict] = []
    if args.quick:
        combos = [(20, 1.2, 0.6, 0.5), (50, 1.2, 0.6, 0.5)]
    else:
        # (rank, reg, reg_bias, exponent): ALS-WR (exponent 1) and the earlier default
        # (0.5, reg_bias = reg) for reference, then exponents 0.5 / 0.4 / 0.3 with the
        # bias regularisation reg or reg / 2 at rank 50, and ranks 20 / 100 at exponent 0.4
        combos = [(50, 0.1, 0.1, 1.0), (50, 1.2, 1.2, 0.5), (50, 1.2, 0.6, 0.5)]
        for reg in (1.5, 1.9, 2.3):
            combos += [(50, reg, reg, 0.4), (50, reg, reg / 2, 0.4)]
        combos += [(50, 2.8, 1.4, 0.3), (50, 3.3, 1.65, 0.3),
                    (20, 1.9, 0.95, 0.4), (100, 1.9, 0.95, 0.4)]
    for rank, reg, reg_bias, exponent in combos:
        rb = reg_bias if reg_bias is not None else reg
        curves, times = [], []
        for f in range(args.folds):
            tr, va = train[assign != f], train[assign == f]
            est = ALS(rank, reg=reg, reg_bias=rb, reg_exponent=exponent, n_iter=args.max_iter,
                      tol=0.0, dtype="float32", generator=f)
            t0 = time.perf_counter()
            est.fit(tr, validation=va)
            times.append(time.perf_counter() - t0)
            curves.append(est.history_["val_rmse"])
        mean_curve = np.mean(np.array(curves), axis=0)
        best = int(np.argmin(mean_curve))
        row = {"rank": rank, "reg": reg, "reg_bias": rb, "reg_exponent": exponent,
               "best_n_iter": best + 1, "cv_rmse": float(mean_curve[best]),
               "cv_rmse_curve": [float(x) for x in mean_curve],
               "fit_time_median": float(np.median(times))}
        grid.append(row)
        print(f"rank {rank:3d} reg {reg:5.2f} reg_bias {rb:5.2f} exp {exponent:4.2f}: "
              f"CV RMSE {row['cv_rmse']:.4f} at n_iter {best + 1}", flush=True)
    best_row = min(grid, key=lambda r: r["cv_rmse"])
    # the default: the best rank-50 setting (rank 100 costs twice as much per sweep)
    best50 = min((r for r in grid if r["rank"] == 50), key=lambda r: r["cv_rmse"])
    out = {"protocol": f"{args.folds}-fold CV on the 80% training part of the ML-100K 80/20 "
                       "split (generator 0); validation RMSE per sweep; float32; "
                       f"threads {args.threads}; machine shared with other jobs",
           "grid": grid, "best": best_row, "best_rank50": best50}
    path = ROOT / "results" / ("completion_tune_quick.json" if args.quick
                               else "completion_tune.json")
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print("best:", best_row)
    print("best at rank 50:", best50)


def _default_row(grid: list[dict]) -> dict | None:
    """The grid row of ALS()'s neighbourhood defaults."""
    from rankfold.completion import _neighbors, estimators

    want = (_neighbors.SIM_SHRINK, estimators._ALS_NEIGHBORS, estimators._ALS_NEIGHBOR_REG,
            estimators._ALS_NEIGHBOR_SCALE)
    return next((r for r in grid if (r["shrink"], r["neighbors"], r["neighbor_reg"],
                                     r["neighbor_scale"]) == want), None)


def tune_neighbors(train, assign, args) -> None:
    """CV grid of the neighbourhood correction over fits of the default factor model."""
    from rankfold.completion import score
    from rankfold.completion._data import to_ratings
    from rankfold.completion._neighbors import N_STORED, item_neighbors

    shrinks = (10.0, 30.0, 100.0)
    ks = (5, 10, 20, 50, 100)
    regs = (0.25, 0.5, 1.0)
    scales = (1.0, 1.25, 1.5, 1.75)
    scores: dict[tuple, list[float]] = {}
    base = []
    for f in range(args.folds):
        tr, va = train[assign != f], train[assign == f]
        # the factor model of ALS() (neighbors only changes what is added afterwards)
        est = ALS(dtype="float32", neighbors=max(ks), generator=f).fit(tr)
        est.neighbors = 0
        base.append(score(ALS(dtype="float32", neighbors=0, generator=f).fit(tr), va).rmse)
        R = to_ratings(tr)
        z = R.values.astype(np.float64) - R.values.mean()
        for shrink in shrinks:
            for k in ks:
                # as stored by a fit with neighbors=k
                est.neighbors_ = item_neighbors(R.rows, R.cols, z, R.shape, shrink=shrink,
                                                n_neighbors=max(N_STORED, 4 * k))
                for reg in regs:
                    for scale in scales:
                        est.neighbors, est.neighbor_reg, est.neighbor_scale = k, reg, scale
                        scores.setdefault((shrink, k, reg, scale), []).append(
                            score(est, va).rmse)
        print(f"fold {f}: factor model {base[-1]:.4f}", flush=True)
    grid = [{"shrink": sh, "neighbors": k, "neighbor_reg": reg, "neighbor_scale": sc,
             "cv_rmse": float(np.mean(v))} for (sh, k, reg, sc), v in scores.items()]
    grid.sort(key=lambda r: r["cv_rmse"])
    for r in grid[:10]:
        print(r, flush=True)
    out = {"protocol": f"{args.folds}-fold CV on the 80% training part of the ML-100K 80/20 "
                       "split (generator 0); ALS() factor model in float32 (seed = fold); "
                       "stored neighbours per item max(50, 4 k) as in a fit; "
                       f"threads {args.threads}",
           "factor_model_cv_rmse": float(np.mean(base)), "grid": grid, "best": grid[0],
           "default": _default_row(grid)}
    path = ROOT / "results" / "completion_tune_neighbors.json"
    path.write_text(json.dumps(out, indent=1))
    print("factor model:", out["factor_model_cv_rmse"], "best:", grid[0])


if __name__ == "__main__":
    main()
