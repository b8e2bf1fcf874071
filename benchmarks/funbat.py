"""FunBaT benchmark: functional Tucker / CP vs discrete completion and GP regression.

Usage: python benchmarks/funbat.py [--quick] [--folds 0,1,..] [--ranks 2,3,5,7]
       [--datasets us_temp,beijing_pm25,...] [--methods funbat,funbat_cp,...]
       [--epochs N] [--l2-grid 0.01,0.03,0.1,1] [--gp-subsample N] [--render-only]
       python benchmarks/funbat.py --scaling-only [--repeats 3]   # timing + memory goals

On the FunBaT splits shipped in rankfold (US-Temp; BeijingAir PM2.5 at full resolution and
at 50x50x150 bins; the synthetic set), per fold:

- rankfold FunctionalTucker (FunBaT) and FunctionalCP (FunBaT-CP) on the bin-centre
  coordinates, ranks 2, 3, 5, 7 (at most 100 epochs, default settings); and, the paper's
  protocol, on the 50x50x150 folds with each entry's full-resolution coordinates
  (``beijing_pm25_50x50x150_coords``: same entries and folds, the discrete baselines keep
  the 50x50x150 bins, only the functional models and the GP see the coordinates);
- discrete baselines on the bin indexes: rankfold ``cp_complete`` / ``tucker_complete``
  (ridge ALS; the best ridge penalty of ``--l2-grid`` on the test set, which favours
  them) and TensorLy masked ``parafac`` / ``tucker`` (dense tensor with a mask, only where
  the dense tensor fits in memory), same ranks;
- scikit-learn GaussianProcessRegressor (Matern-3/2 ARD + white noise) on the raw
  coordinates, on a random 1000-point subsample of the training set.

Every finished (dataset, fold, method, rank) run is appended to
benchmarks/results/funbat_rows.jsonl; a rerun skips the runs already there, so several
processes (e.g. one per ``--methods`` subset) can share the work and an interrupted run
keeps what it finished. Low ranks run first. The aggregate (test RMSE and MAE mean +- std
over folds, the goals of issue 5) goes to benchmarks/results/funbat.json and
docs/benchmarks/funbat.md. Timing and memory goals come from ``--scaling-only`` (run it
under the benchmark lock; results in benchmarks/results/funbat_scaling.json), never from
the accuracy runs. ``--quick`` (folds 0-1, ranks 2-3, 50 epochs) prints only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from rankfold._io import atomic_write_text  # noqa: E402
from rankfold.datasets import load_funbat, load_funbat_truth  # noqa: E402
from rankfold.tensor import FunctionalCP, FunctionalTucker  # noqa: E402

DATASETS = ["synthetic", "us_temp", "beijing_pm25", "beijing_pm25_50x50x150",
            "beijing_pm25_50x50x150_coords"]
LABELS = {"synthetic": "Synthetic", "us_temp": "US-Temp", "beijing_pm25": "PM2.5 (full)",
          "beijing_pm25_50x50x150": "PM2.5 (50x50x150)",
          "beijing_pm25_50x50x150_coords":
              "PM2.5 (50x50x150 split, functional models on full-resolution coordinates)"}
#: the paper's protocol on the coarse split: same entries, same folds and the same bins
#: for the discrete baselines (their rows are those of ``COORDS_OF``), the entries'
#: full-resolution coordinates for the functional models and the GP
COORDS_OF = {"beijing_pm25_50x50x150_coords": "beijing_pm25_50x50x150"}
COORDS_METHODS = ("funbat", "funbat_cp", "gp")


def load_split(ds: str, fold: int) -> Any:
    if ds in COORDS_OF:
        return load_funbat(COORDS_OF[ds], fold, coordinates="full_resolution")
    return load_funbat(ds, fold)
DENSE_LIMIT = 5_000_000  # TensorLy needs the dense tensor and its mask
SCALING = ROOT / "benchmarks" / "results" / "funbat_scaling.json"


def _metrics(pred: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    err = pred - y
    return float(np.sqrt(np.mean(err**2))), float(np.mean(np.abs(err)))


class Clock:
    def __enter__(self) -> Clock:
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wall = time.perf_counter() - self.w
        self.cpu = time.process_time() - self.c


def run_functional(cls: type, split: Any, rank: int, epochs: int, seed: int,
                   ) -> tuple[dict[str, float], Any]:
    with Clock() as c:
        model = cls(rank, n_epochs=epochs, generator=seed).fit(split.coords_train,
                                                              split.y_train)
        pred = model.predict(split.coords_test)
    rmse, mae = _metrics(pred, split.y_test)
    return {"rmse": rmse, "mae": mae, "seconds": c.wall, "cpu_seconds": c.cpu,
            "epochs": model.n_epochs_}, model


def _standardise(split: Any) -> tuple[np.ndarray, float, float]:
    mu, sd = float(split.y_train.mean()), float(split.y_train.std()) or 1.0
    return (split.y_train - mu) / sd, mu, sd


def run_rankfold_discrete(kind: str, split: Any, rank: int, seed: int,
                          l2_grid: tuple[float, ...]) -> dict[str, float] | None:
    from rankfold.tensor import complete

    fn = getattr(complete, f"{kind}_complete", None)
    if fn is None:
        return None
    ys, mu, sd = _standardise(split)
    best = None
    for l2 in l2_grid:
        with Clock() as c, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kw = dict(n_iter_max=100, l2_reg=l2, generator=seed)
            est = fn(split.indices_train, ys, split.shape, rank, **kw)
            pred = np.asarray(est.values_at(split.indices_test)) * sd + mu
        rmse, mae = _metrics(pred, split.y_test)
        if np.isfinite(rmse) and (best is None or rmse < best["rmse"]):
            best = {"rmse": rmse, "mae": mae, "seconds": c.wall, "cpu_seconds": c.cpu,
                    "l2_reg": l2}
    return best


def run_tensorly(kind: str, split: Any, rank: int, seed: int) -> dict[str, float] | None:
    if math.prod(split.shape) > DENSE_LIMIT:
        return None
    import tensorly as tl
    from tensorly.decomposition import parafac, tucker

    ys, mu, sd = _standardise(split)
    dense = np.zeros(split.shape)
    mask = np.zeros(split.shape)
    # several entries may share a bin: use their mean
    cnt = np.zeros(split.shape)
    np.add.at(dense, tuple(split.indices_train.T), ys)
    np.add.at(cnt, tuple(split.indices_train.T), 1.0)
    mask[cnt > 0] = 1.0
    dense[cnt > 0] /= cnt[cnt > 0]
    with Clock() as c, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "parafac":
            cp = parafac(tl.tensor(dense), rank, mask=tl.tensor(mask), n_iter_max=100,
                         init="random", random_state=seed)
            full = tl.cp_to_tensor(cp)
        else:
            tk = tucker(tl.tensor(dense), [min(rank, s) for s in split.shape],
                        mask=tl.tensor(mask), n_iter_max=100, init="random",
                        random_state=seed)
            full = tl.tucker_to_tensor(tk)
        pred = np.asarray(full)[tuple(split.indices_test.T)] * sd + mu
    rmse, mae = _metrics(pred, split.y_test)
    return {"rmse": rmse, "mae": mae, "seconds": c.wall, "cpu_seconds": c.cpu}


def run_gp(split: Any, n_sub: int, seed: int) -> dict[str, float]:
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    rng = np.random.default_rng(seed)
    n = split.coords_train.shape[0]
    sub = rng.choice(n, size=min(n_sub, n), replace=False)
    ys, mu, sd = _standardise(split)
    kern = ConstantKernel(1.0) * Matern(length_scale=[0.2] * split.coords_train.shape[1],
                                        nu=1.5) + WhiteKernel(0.1)
    with Clock() as c, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gp = GaussianProcessRegressor(kern, normalize_y=False, random_state=seed,
                                      n_restarts_optimizer=0)
        gp.fit(split.coords_train[sub], ys[sub])
        pred = gp.predict(split.coords_test) * sd + mu
    rmse, mae = _metrics(pred, split.y_test)
    return {"rmse": rmse, "mae": mae, "seconds": c.wall, "cpu_seconds": c.cpu,
            "n_train": int(len(sub))}


def run_gbm(split: Any, seed: int) -> dict[str, float]:
    """Reference, not a tensor method: gradient-boosted trees on the bin indexes.

    A flexible learner of the same information the discrete baselines get (fixed
    settings, no tuning on the test fold): how much of the target the bins can explain
    at all, next to the binning floor.
    """
    from sklearn.ensemble import HistGradientBoostingRegressor

    with Clock() as c:
        gbm = HistGradientBoostingRegressor(learning_rate=0.05, max_iter=500,
                                            max_leaf_nodes=63, early_stopping=False,
                                            random_state=seed)
        gbm.fit(split.indices_train.astype(np.float64), split.y_train)
        pred = gbm.predict(split.indices_test.astype(np.float64))
    rmse, mae = _metrics(pred, split.y_test)
    return {"rmse": rmse, "mae": mae, "seconds": c.wall, "cpu_seconds": c.cpu}


def binning_floor(ds: str) -> float | None:
    """RMS spread of the target inside one bin cell over all entries (train and test of
    fold 0): no model of the bin indexes can predict an entry better than its cell mean,
    so this is a floor on the test RMSE of the discrete baselines (and of the functional
    models on bin-centre coordinates)."""
    try:
        s = load_funbat(ds, 0)
    except Exception:  # noqa: BLE001
        return None
    idx = np.concatenate([s.indices_train, s.indices_test])
    y = np.concatenate([s.y_train, s.y_test])
    _, inv, cnt = np.unique(idx, axis=0, return_inverse=True, return_counts=True)
    inv = inv.reshape(-1)
    m = np.bincount(inv, y) / cnt
    dof = int(np.sum(cnt - 1))
    return float(np.sqrt(np.sum((y - m[inv]) ** 2) / dof)) if dof else None


def latent_correlation(model: Any) -> list[float]:
    """Correlation of the best linear combination of each mode's latent functions with
    the true trajectory (sign and scale free; for rank 1 it is |corr|)."""
    grids, truth = load_funbat_truth()
    out = []
    for k in range(2):
        mean, _ = model.latent_functions(k, grids[k])
        A = np.c_[mean, np.ones(len(grids[k]))]
        coef, *_ = np.linalg.lstsq(A, truth[k], rcond=None)
        out.append(float(np.corrcoef(A @ coef, truth[k])[0, 1]))
    return out


_MEM_CHILD = r"""
import sys, time, numpy as np
sys.path.insert(0, {src!r})
from rankfold.datasets import load_funbat
from rankfold.tensor import FunctionalTucker


def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1])


s = load_funbat("beijing_pm25", 0)
rep = int(sys.argv[1])
X = np.tile(s.coords_train, (rep, 1)); y = np.tile(s.y_train, rep)
FunctionalTucker(3, n_epochs=1, generator=0).fit(X[:500], y[:500])  # warm up allocators
with open("/proc/self/clear_refs", "w") as fh:  # reset the peak-RSS counter (VmHWM)
    fh.write("5")
base = status("VmRSS")
t = time.process_time()
m = FunctionalTucker(3, n_epochs=5, tol=0.0, generator=0).fit(X, y)
print(base, status("VmHWM"), time.process_time() - t)
"""


def memory_scaling() -> dict[str, Any]:
    out = {}
    for rep in (1, 10):
        r = subprocess.run([sys.executable, "-c", _MEM_CHILD.format(src=str(ROOT / "src")),
                            str(rep)], capture_output=True, text=True, check=True)
        base, peak, cpu = r.stdout.split()
        out[f"x{rep}"] = {"N": 13572 * rep, "rss_before_mb": int(base) / 1024,
                          "rss_peak_mb": int(peak) / 1024,
                          "fit_increment_mb": (int(peak) - int(base)) / 1024,
                          "cpu_seconds_5_epochs": float(cpu)}
    return out


def timing_beijing(epochs: int, repeats: int = 3) -> dict[str, Any]:
    """Median wall / CPU seconds of ``repeats`` fits of ``epochs`` epochs (tol = 0)."""
    split = load_funbat("beijing_pm25", 0)
    walls, cpus = [], []
    for _ in range(repeats):
        with Clock() as c:
            m = FunctionalTucker(3, n_epochs=epochs, tol=0.0, generator=0).fit(
                split.coords_train, split.y_train)
        walls.append(c.wall)
        cpus.append(c.cpu)
    return {"epochs": m.n_epochs_, "wall_seconds": float(np.median(walls)),
            "cpu_seconds": float(np.median(cpus)), "repeats": repeats,
            "wall_all": walls, "cpu_all": cpus}


def _agg(vals: list[float]) -> tuple[float, float]:
    a = np.asarray(vals, dtype=float)
    return float(a.mean()), float(a.std()) if len(a) > 1 else 0.0


ROWS = ROOT / "benchmarks" / "results" / "funbat_rows.jsonl"
METHODS = ("funbat", "funbat_cp", "cp_complete", "tucker_complete", "tensorly_parafac",
           "tensorly_tucker", "gp", "gbm")
_LABEL = {"funbat": "FunBaT", "funbat_cp": "FunBaT-CP",
          "cp_complete": "rankfold cp_complete", "tucker_complete": "rankfold tucker_complete",
          "tensorly_parafac": "TensorLy masked parafac",
          "tensorly_tucker": "TensorLy masked tucker", "gp": "sklearn GP (Matern-3/2)",
          "gbm": "sklearn gradient boosting on the bins (reference)"}


def _load_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a killed run
                continue
    return rows


def _append_row(path: Path, row: dict[str, Any]) -> None:
    """Checkpoint one finished (dataset, fold, method, rank): one O_APPEND write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(row, default=float) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _key(row: dict[str, Any]) -> tuple:
    return (row["dataset"], row["fold"], row["method"], row["rank"] or 0)


def _tasks(datasets: list[str], folds: list[int], ranks: list[int],
           methods: list[str]) -> list[tuple[str, int, str, int | None]]:
    """All (dataset, fold, method, rank) runs, cheapest ranks first, so that an
    interrupted run still holds complete low-rank tables."""
    out = []
    for i, r in enumerate(ranks):
        for ds in datasets:
            ds_folds = [0] if ds == "synthetic" else folds
            for fold in ds_folds:
                for m in methods:
                    if ds in COORDS_OF and m not in COORDS_METHODS:
                        continue
                    if m in ("gp", "gbm"):
                        if i == 0:
                            out.append((ds, fold, m, None))
                        continue
                    if ds == "synthetic" and i == 0 and m in ("funbat", "funbat_cp"):
                        out.append((ds, fold, m, 1))
                    out.append((ds, fold, m, r))
    return out


def run_task(ds: str, fold: int, method: str, rank: int | None, split: Any, epochs: int,
             n_gp: int, l2_grid: tuple[float, ...]) -> dict[str, Any] | None:
    if method in ("funbat", "funbat_cp"):
        cls = FunctionalTucker if method == "funbat" else FunctionalCP
        res, model = run_functional(cls, split, rank, epochs, fold)
        if ds == "synthetic":
            res["latent_correlation"] = latent_correlation(model)
        return res
    if method in ("cp_complete", "tucker_complete"):
        return run_rankfold_discrete(method.split("_")[0], split, rank, fold, l2_grid)
    if method.startswith("tensorly_"):
        return run_tensorly(method.split("_")[1], split, rank, fold)
    if method == "gbm":
        return run_gbm(split, fold)
    return run_gp(split, n_gp, fold)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--folds", default=None)
    ap.add_argument("--ranks", default=None)
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--methods", default=",".join(METHODS),
                    help="subset of " + ",".join(METHODS))
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--gp-subsample", type=int, default=None)
    ap.add_argument("--l2-grid", default="0.01,0.03,0.1,1",
                    help="ridge penalties tried for the rankfold discrete baselines")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the baselines")
    ap.add_argument("--rows", default=None,
                    help="checkpoint file (JSON lines, one per finished run; runs already "
                         "in it are skipped)")
    ap.add_argument("--render-only", action="store_true",
                    help="only aggregate the checkpoint file into the JSON and markdown")
    ap.add_argument("--no-timing", action="store_true")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--no-tensorly", action="store_true")
    ap.add_argument("--scaling-only", action="store_true",
                    help="only the timing and memory goals (to results/funbat_scaling.json)")
    ap.add_argument("--repeats", type=int, default=3, help="timing repeats (median)")
    args = ap.parse_args()
    if args.scaling_only:
        scaling = {"command": "python benchmarks/funbat.py " + " ".join(sys.argv[1:])}
        print("timing: 100 epochs on Beijing (full), rank 3 ...", file=sys.stderr, flush=True)
        scaling["beijing_100_epochs_rank3"] = timing_beijing(100, args.repeats)
        print("memory: 1x and 10x replicated Beijing ...", file=sys.stderr, flush=True)
        scaling["memory_scaling"] = memory_scaling()
        atomic_write_text(SCALING, json.dumps(scaling, indent=2))
        print(json.dumps(scaling, indent=2))
        return 0
    folds = [int(f) for f in (args.folds or ("0,1" if args.quick else "0,1,2,3,4")).split(",")]
    ranks = [int(r) for r in (args.ranks or ("2,3" if args.quick else "2,3,5,7")).split(",")]
    epochs = args.epochs or (50 if args.quick else 100)
    n_gp = args.gp_subsample or 1000
    l2_grid = tuple(float(v) for v in args.l2_grid.split(","))
    datasets = [d for d in args.datasets.split(",") if d]
    methods = [m for m in args.methods.split(",") if m]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        ap.error(f"unknown methods {bad}; choose from {METHODS}")
    if args.no_tensorly:
        methods = [m for m in methods if not m.startswith("tensorly_")]
    rows_path = Path(args.rows) if args.rows else (
        ROWS.with_name("funbat_rows_quick.jsonl") if args.quick else ROWS)
    torch.set_num_threads(args.threads)
    # a --methods subset only adds rows to the checkpoint, which holds every method: the
    # page is the full command's
    argv, skip = [], False
    for a in sys.argv[1:]:
        if skip:
            skip = False
        elif a == "--methods":
            skip = True
        elif not a.startswith("--methods=") and a not in ("--render-only", "--no-timing",
                                                          "--no-memory"):
            argv.append(a)
    cmd = " ".join(["python benchmarks/funbat.py", *argv])

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    config = {"epochs": epochs, "gp_subsample": n_gp, "l2_grid": list(l2_grid)}
    meta = {"command": cmd, "folds": folds, "ranks": ranks, **config, "dtype": "float64",
            "threads": args.threads, "machine": "2 cores, shared with other jobs",
            "python": platform.python_version(), "torch": torch.__version__}
    if not args.render_only:
        done = {_key(r) for r in _load_rows(rows_path) if r.get("config") == config}
        splits: dict[tuple[str, int], Any] = {}
        for ds, fold, method, rank in _tasks(datasets, folds, ranks, methods):
            label = _LABEL[method]
            if (ds, fold, label, rank or 0) in done:
                continue
            # another process sharing the file may have done it meanwhile
            done = {_key(r) for r in _load_rows(rows_path) if r.get("config") == config}
            if (ds, fold, label, rank or 0) in done:
                continue
            if (ds, fold) not in splits:
                splits[(ds, fold)] = load_split(ds, fold)
            res = run_task(ds, fold, method, rank, splits[(ds, fold)], epochs, n_gp, l2_grid)
            if res is None:
                continue
            row = {"dataset": ds, "fold": fold, "method": label, "rank": rank, **res,
                   "config": config}
            _append_row(rows_path, row)
            log(f"{ds} fold {fold} {label} R={rank}: rmse {res['rmse']:.4f} "
                f"({res['seconds']:.1f} s, {res['cpu_seconds']:.1f} s CPU)")
    rows, seen = [], set()
    for r in _load_rows(rows_path):  # first record of each run (processes may overlap)
        if (r.get("config") == config and r["dataset"] in datasets and r["fold"] in folds
                and (r["rank"] in ranks or r["rank"] in (None, 1)) and _key(r) not in seen):
            seen.add(_key(r))
            rows.append(r)
    expected = _tasks(datasets, folds, ranks, methods)
    n_expected = len(expected)
    have = {_key(r) for r in rows}
    missing: dict[str, list[int]] = {}
    too_dense = {ds for ds in datasets if math.prod(load_split(ds, 0).shape) > DENSE_LIMIT}
    for ds, fold, method, rank in expected:
        if (ds, fold, _LABEL[method], rank or 0) not in have and not (
                method.startswith("tensorly_") and ds in too_dense):
            missing.setdefault(f"{LABELS.get(ds, ds)}: {_LABEL[method]} R={rank}",
                               []).append(fold)
    meta["missing"] = missing
    latent = {f"{r['method']} R={r['rank']}": r["latent_correlation"] for r in rows
              if "latent_correlation" in r}
    meta["runs"] = len(rows)
    finish(rows, latent, meta, datasets, args, final=len(rows) >= n_expected,
           quick=args.quick)
    return 0


def finish(rows: list[dict[str, Any]], latent: dict[str, list[float]], meta: dict[str, Any],
           datasets: list[str], args: argparse.Namespace, final: bool,
           quick: bool = False) -> None:
    """Aggregate, check the goals and write the JSON and markdown (also for partial runs,
    so an interrupted benchmark leaves its finished datasets on disk)."""
    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    # aggregate over folds
    table: list[dict[str, Any]] = []
    keys = sorted({(r["dataset"], r["method"], r["rank"] or 0) for r in rows},
                  key=lambda k: (datasets.index(k[0]), k[1], k[2]))
    for ds, method, rank in keys:
        sel = [r for r in rows if r["dataset"] == ds and r["method"] == method
               and (r["rank"] or 0) == rank]
        rm, rs = _agg([r["rmse"] for r in sel])
        mm, ms = _agg([r["mae"] for r in sel])
        sec = float(np.median([r["seconds"] for r in sel]))
        table.append({"dataset": ds, "method": method, "rank": rank or None, "folds": len(sel),
                      "rmse_mean": rm, "rmse_std": rs, "mae_mean": mm, "mae_std": ms,
                      "median_seconds": sec})

    goals: dict[str, Any] = {}
    for ds in datasets:
        if ds == "synthetic":
            continue
        fun = [t for t in table if t["dataset"] == ds and t["method"] == "FunBaT"]
        disc = [t for t in table if t["dataset"] == COORDS_OF.get(ds, ds) and (
            "complete" in t["method"] or "TensorLy" in t["method"])]
        if fun and disc:
            bf = min(fun, key=lambda t: t["rmse_mean"])
            bd = min(disc, key=lambda t: t["rmse_mean"])
            funcp = [t for t in table if t["dataset"] == ds and t["method"] == "FunBaT-CP"]
            per_rank = {}
            for t in fun + funcp:
                same = [d for d in disc if d["rank"] == t["rank"]]
                if same:
                    b = min(same, key=lambda d: d["rmse_mean"])
                    per_rank[f"{t['method']} R={t['rank']}"] = {
                        "rmse": t["rmse_mean"], "discrete": b["method"],
                        "discrete_rmse": b["rmse_mean"],
                        "rmse_improvement": 1.0 - t["rmse_mean"] / b["rmse_mean"]}
            goals[ds] = {"funbat_best": bf, "discrete_best": bd,
                         "rmse_improvement": 1.0 - bf["rmse_mean"] / bd["rmse_mean"],
                         "mae_improvement": 1.0 - bf["mae_mean"] / bd["mae_mean"],
                         "per_rank": per_rank,
                         "binning_floor": None if ds in COORDS_OF else binning_floor(ds)}
            if funcp:
                bc = min(funcp, key=lambda t: t["rmse_mean"])
                goals[ds]["funbat_cp_best"] = bc
                goals[ds]["cp_rmse_improvement"] = 1.0 - bc["rmse_mean"] / bd["rmse_mean"]
    if latent:
        goals["synthetic_latent_correlation"] = latent
    if final and not args.no_timing and not SCALING.exists():
        log("timing: 100 epochs on Beijing (full), rank 3 ...")
        goals["beijing_100_epochs_rank3"] = timing_beijing(100, args.repeats)
    if final and not args.no_memory and not SCALING.exists():
        log("memory: 1x and 10x replicated Beijing ...")
        goals["memory_scaling"] = memory_scaling()

    if SCALING.exists():  # written by --scaling-only
        sc = json.loads(SCALING.read_text())
        for key in ("beijing_100_epochs_rank3", "memory_scaling"):
            if key in sc and key not in goals:
                goals[key] = dict(sc[key], command=sc["command"]) if key.startswith(
                    "beijing") else sc[key]
    meta = dict(meta, complete=final)
    out = {"meta": meta, "table": table, "goals": goals, "rows": rows}
    md = render_markdown(meta, table, goals, datasets)
    if quick:  # a quick run never replaces the recorded full-size results
        atomic_write_text(ROOT / "benchmarks" / "results" / "funbat_quick.json",
                          json.dumps(out, indent=2, default=float))
        print(md)
        return
    res_path = ROOT / "benchmarks" / "results" / "funbat.json"
    atomic_write_text(res_path, json.dumps(out, indent=2, default=float))
    atomic_write_text(ROOT / "docs" / "benchmarks" / "funbat.md", md)
    print(md)


def render_markdown(meta: dict[str, Any], table: list[dict[str, Any]],
                    goals: dict[str, Any], datasets: list[str]) -> str:
    lines = ["# FunBaT: continuous-indexed tensors", "",
             f"Command: `{meta['command']}` (float64, threads = {meta['threads']}, "
             f"machine shared with other jobs). Folds {meta['folds']}, ranks "
             f"{meta['ranks']}, at most {meta['epochs']} epochs; GP on a "
             f"{meta['gp_subsample']}-point training subsample. Discrete baselines see the "
             "bin indexes; the rankfold ones are given the best of the ridge penalties "
             f"{tuple(meta['l2_grid'])} on the test set (optimistic for them), TensorLy "
             "(no penalty) runs only where the dense tensor has at most 5M cells. Test "
             "RMSE / MAE: mean +- std over folds; time: median seconds per fit (wall clock, "
             "niced, on a machine shared with other jobs: compare within a table only). "
             "Every finished run is checkpointed in "
             "`benchmarks/results/funbat_rows.jsonl`; rerunning the command skips them (the "
             "recorded run was shared by several niced processes, each with a "
             "`--methods` / `--datasets` / `--ranks` subset, on a machine with load 10-20). "
             "Timing and memory goals: `python benchmarks/funbat.py --scaling-only "
             "--repeats 3` under the benchmark lock.", ""]
    if meta.get("missing"):
        lines += ["Not run (folds): " + "; ".join(f"{k} {v}" for k, v in
                                                 meta["missing"].items()) + ".", ""]
    for ds in datasets:
        sel = [t for t in table if t["dataset"] == ds]
        if not sel:
            continue
        lines += [f"## {LABELS.get(ds, ds)}", "",
                  "| method | rank | RMSE | MAE | s / fit |", "|---|---|---|---|---|"]
        for t in sel:
            lines.append(f"| {t['method']} | {t['rank'] or '-'} | {t['rmse_mean']:.4f} +- "
                         f"{t['rmse_std']:.4f} | {t['mae_mean']:.4f} +- {t['mae_std']:.4f} | "
                         f"{t['median_seconds']:.1f} |")
        lines.append("")
    lines += ["## Goals", ""]
    for ds, g in goals.items():
        if isinstance(g, dict) and "per_rank" in g:
            bf, bd = g["funbat_best"], g["discrete_best"]
            line = (f"- {LABELS.get(ds, ds)}: FunBaT (rank {bf['rank']}) RMSE "
                    f"{bf['rmse_mean']:.4f} vs best discrete ({bd['method']}, rank "
                    f"{bd['rank']}) {bd['rmse_mean']:.4f}: "
                    f"{100 * g['rmse_improvement']:.1f}% lower (goal >= 10%); MAE "
                    f"{bf['mae_mean']:.4f} vs {bd['mae_mean']:.4f} "
                    f"({100 * g['mae_improvement']:.1f}% lower).")
            if "funbat_cp_best" in g:
                bc = g["funbat_cp_best"]
                line += (f" FunBaT-CP (rank {bc['rank']}) {bc['rmse_mean']:.4f}: "
                         f"{100 * g['cp_rmse_improvement']:.1f}% lower.")
            fl = g.get("binning_floor")
            if fl is not None:
                line += (f" Spread of the target inside one bin cell (all data, RMS): "
                         f"{fl:.4f}, a floor for any model of these bin indexes.")
            ref = [t for t in table if t["dataset"] == ds and t["method"] == _LABEL["gbm"]]
            if ref:
                r = ref[0]["rmse_mean"]
                line += (f" Reference learner on the same bins (gradient-boosted trees, not a "
                         f"tensor method): {r:.4f}, "
                         f"{100 * (1 - r / g['discrete_best']['rmse_mean']):.1f}% below the "
                         "best discrete baseline.")
            lines.append(line)
            pr = g.get("per_rank", {})
            if pr:
                lines.append("  At equal rank (vs the best discrete baseline of that rank): "
                             + "; ".join(f"{k} {100 * v['rmse_improvement']:.1f}%"
                                         for k, v in pr.items()) + ".")
    if "synthetic_latent_correlation" in goals:
        parts = [f"{k}: {min(v):.3f}" for k, v in goals["synthetic_latent_correlation"].items()]
        lines.append("- Synthetic: smallest per-mode correlation of the learned latent "
                     "functions with the true trajectories (after linear alignment): "
                     + "; ".join(parts) + " (goal >= 0.95).")
    if "beijing_100_epochs_rank3" in goals:
        t = goals["beijing_100_epochs_rank3"]
        lines.append(f"- 100 epochs on PM2.5 (full), rank 3: {t['wall_seconds']:.1f} s wall, "
                     f"{t['cpu_seconds']:.1f} s CPU (goal <= 30 s).")
    if "memory_scaling" in goals:
        m = goals["memory_scaling"]
        lines.append(f"- Memory (peak RSS increase of the fit, Beijing rank 3, 5 epochs): "
                     f"N = {m['x1']['N']}: {m['x1']['fit_increment_mb']:.0f} MB; "
                     f"N = {m['x10']['N']} (10x, replicated): "
                     f"{m['x10']['fit_increment_mb']:.0f} MB. Stored statistics are "
                     "per unique coordinate and global; per-entry arrays are the data, "
                     "its indexes and bounded work chunks.")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    _ = resource  # imported for the memory child's contract
    sys.exit(main())
