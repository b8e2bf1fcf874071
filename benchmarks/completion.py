"""Matrix completion: rankfold ALS against Surprise (SVD, SVD++) and Spark MLlib ALS.

Parts (``--part``, default all):

* ``movielens``: MovieLens-100K, 80/20 split (generator 0, the same split for every
  method) and 5-fold CV; RMSE, MAE, fit time (median of ``--repeats`` runs).
* ``scale``: synthetic 10M ratings, 70,000 users x 10,000 items, planted rank 50 plus
  noise; rank 50, 10 iterations, ALS-WR reg 0.05, no biases, for rankfold and Spark
  (pyspark ``local[2]``) on the same ratings; held-out RMSE, fit time, peak RSS.
* ``sketch``: one half step of the row solver, sketched vs exact (batched Cholesky), as
  the number of observations per row and the rank grow; fitted exponents and the
  crossover.

Usage::

    python benchmarks/completion.py [--quick] [--part movielens,scale,sketch]

Writes benchmarks/results/completion.json (parts merged) and
docs/benchmarks/completion.md. Threads: torch uses 2 (or one for small fits, see
``rankfold.completion._threads``); Surprise is single-threaded; Spark local[2].
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "completion.json"
DOC = ROOT.parent / "docs" / "benchmarks" / "completion.md"


def _median_time(fn, repeats: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --------------------------------------------------------------------------------------
def part_movielens(quick: bool, repeats: int) -> dict[str, Any]:
    from surprise import SVD, Dataset, Reader, SVDpp
    from surprise import accuracy as sacc

    from rankfold.completion import ALS, SoftImpute, score, train_test_split
    from rankfold.datasets import load_movielens_100k

    df = load_movielens_100k()
    train, test = train_test_split(df, 0.2, generator=0)
    reader = Reader(rating_scale=(1, 5))

    def surprise_fit(algo_cls):
        def run():
            data = Dataset.load_from_df(train[["user", "item", "rating"]], reader)
            algo = algo_cls(random_state=0)
            algo.fit(data.build_full_trainset())
            return algo
        return run

    def surprise_score(algo, part):
        preds = algo.test(list(part[["user", "item", "rating"]].itertuples(index=False,
                                                                          name=None)))
        return sacc.rmse(preds, verbose=False), sacc.mae(preds, verbose=False)

    methods: dict[str, Any] = {
        "rankfold ALS()": lambda: ALS(generator=0).fit(train),
        "rankfold ALS(dtype=float32)": lambda: ALS(generator=0, dtype="float32").fit(train),
        "rankfold SoftImpute()": lambda: SoftImpute(generator=0).fit(train),
        "Surprise SVD": surprise_fit(SVD),
    }
    if not quick:
        methods["Surprise SVD++"] = surprise_fit(SVDpp)
    split_rows = []
    for name, fit in methods.items():
        reps = 1 if "SVD++" in name else repeats
        t, model = _median_time(fit, reps)
        if name.startswith("rankfold"):
            s = score(model, test)
            r, m = s.rmse, s.mae
        else:
            r, m = surprise_score(model, test)
        split_rows.append({"method": name, "rmse": r, "mae": m, "fit_seconds": t,
                           "repeats": reps})
        print(f"[80/20] {name:32s} RMSE {r:.4f} MAE {m:.4f} fit {t:.3f}s", flush=True)
    base = next(r for r in split_rows if r["method"] == "Surprise SVD")
    for r in split_rows:
        r["time_ratio_vs_surprise_svd"] = r["fit_seconds"] / base["fit_seconds"]

    # 5-fold CV on all 100k ratings, the same folds for everyone
    folds = 5
    assign = np.random.default_rng(0).permutation(len(df)) % folds
    cv_methods = ["rankfold ALS()", "Surprise SVD"] + ([] if quick else ["Surprise SVD++"])
    cv_rows = []
    for name in cv_methods:
        rm, ma, ts = [], [], []
        for f in range(folds):
            tr, te = df[assign != f], df[assign == f]
            t0 = time.perf_counter()
            if name.startswith("rankfold"):
                model = ALS(generator=0).fit(tr)
                ts.append(time.perf_counter() - t0)
                s = score(model, te)
                rm.append(s.rmse)
                ma.append(s.mae)
            else:
                data = Dataset.load_from_df(tr[["user", "item", "rating"]], reader)
                algo = (SVD if name == "Surprise SVD" else SVDpp)(random_state=0)
                algo.fit(data.build_full_trainset())
                ts.append(time.perf_counter() - t0)
                r, m = surprise_score(algo, te)
                rm.append(r)
                ma.append(m)
        cv_rows.append({"method": name, "rmse_mean": float(np.mean(rm)),
                        "rmse_std": float(np.std(rm)), "mae_mean": float(np.mean(ma)),
                        "fit_seconds_median": float(np.median(ts))})
        print(f"[5-fold] {name:32s} RMSE {np.mean(rm):.4f} +- {np.std(rm):.4f}", flush=True)
    return {"split_80_20": split_rows, "cv_5fold": cv_rows,
            "protocol": "ML-100K from the recbole==1.2.1 wheel; 80/20 split by "
                        "rankfold.completion.train_test_split(generator=0) (= numpy "
                        "default_rng(0).permutation); the same train/test rows for all; "
                        "Surprise defaults (SVD: 100 factors, 20 epochs; SVD++: 20 "
                        "factors, 20 epochs), random_state 0; rankfold ALS() defaults."}


# --------------------------------------------------------------------------------------
def _synthetic(n_users: int, n_items: int, nnz: int, rank: int, seed: int,
               noise: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    U = rng.standard_normal((n_users, rank), dtype=np.float32) / math.sqrt(rank)
    V = rng.standard_normal((n_items, rank), dtype=np.float32)
    # popularity skew like real ratings: item draws from a Zipf-like law, users uniform
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.8
    pop /= pop.sum()
    keys = np.unique(rng.integers(0, n_users, int(nnz * 1.05)).astype(np.int64) * n_items
                     + rng.choice(n_items, int(nnz * 1.05), p=pop))
    keys = rng.permutation(keys)[:nnz]
    r, c = keys // n_items, keys % n_items
    vals = np.empty(r.size, dtype=np.float32)
    for lo in range(0, r.size, 1 << 20):
        sl = slice(lo, lo + (1 << 20))
        vals[sl] = (U[r[sl]] * V[c[sl]]).sum(1)
    vals += noise * rng.standard_normal(r.size, dtype=np.float32)
    return r, c, vals


class _RSSSampler:
    """Peak resident memory of a set of processes (the JVM), sampled from /proc."""

    def __init__(self) -> None:
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _java_pids(self) -> list[int]:
        out = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"java" in cmd and b"spark" in cmd and str(os.getpid()).encode() not in cmd:
                out.append(int(pid))
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0.0
            for pid in self._java_pids():
                try:
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            total += float(line.split()[1]) / 1024.0
                except OSError:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(0.5)

    def __enter__(self) -> _RSSSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def part_scale(quick: bool) -> dict[str, Any]:
    from rankfold.completion import ALS

    if quick:
        n_users, n_items, nnz = 7_000, 1_000, 1_000_000
    else:
        n_users, n_items, nnz = 70_000, 10_000, 10_000_000
    rank, iters, reg = 50, 10, 0.05
    t0 = time.perf_counter()
    r, c, v = _synthetic(n_users, n_items, int(nnz * 1.1), rank, 0)
    n_test = nnz // 10
    tr = slice(n_test, None)
    te = slice(0, n_test)
    print(f"[scale] data {r.size} ratings made in {time.perf_counter() - t0:.1f}s", flush=True)
    out: dict[str, Any] = {"n_users": n_users, "n_items": n_items,
                           "train_ratings": int(r[tr].size), "test_ratings": n_test,
                           "rank": rank, "iterations": iters, "reg": reg,
                           "model": "ALS-WR (reg * n_u), no biases, planted rank 50 + "
                                    "N(0, 0.5^2) noise"}
    rss0 = _rss_mb()
    est = ALS(rank, reg=reg, biases=False, reg_exponent=1.0, n_iter=iters, tol=0.0,
              solver="cholesky", dtype="float32", generator=0)
    t0 = time.perf_counter()
    est.fit((r[tr], c[tr], v[tr], (n_users, n_items)))
    t_rf = time.perf_counter() - t0
    pred = est.predict(r[te], c[te], clip=False)
    rmse_rf = float(np.sqrt(np.mean((pred - v[te]) ** 2)))
    rss_rf = _rss_mb()
    data_mb = r[tr].size * (8 + 8 + 4) / 2**20
    out["rankfold"] = {"fit_seconds": t_rf, "test_rmse": rmse_rf,
                       "peak_rss_mb": rss_rf, "rss_before_fit_mb": rss0,
                       "input_arrays_mb": data_mb,
                       "fit_rss_growth_mb": rss_rf - rss0}
    print(f"[scale] rankfold ALS {t_rf:.1f}s RMSE {rmse_rf:.4f} peak RSS {rss_rf:.0f} MB",
          flush=True)
    est = None
    gc.collect()
    try:
        out["spark"] = _spark(r, c, v, tr, te, n_users, n_items, rank, iters, reg)
        out["speedup_vs_spark"] = out["spark"]["fit_seconds"] / t_rf
    except Exception as exc:  # Spark may not run here: record why
        out["spark"] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        print(f"[scale] Spark failed: {out['spark']['error']}", flush=True)
    return out


def _spark(r, c, v, tr, te, n_users, n_items, rank, iters, reg) -> dict[str, Any]:
    import pandas as pd
    from pyspark.ml.recommendation import ALS as SparkALS
    from pyspark.sql import SparkSession
    from pyspark.sql.types import FloatType, IntegerType, StructField, StructType

    tmp = Path(tempfile.mkdtemp(prefix="rankfold_spark_"))
    pd.DataFrame({"user": r[tr].astype(np.int32), "item": c[tr].astype(np.int32),
                  "rating": v[tr]}).to_csv(tmp / "train.csv", index=False, header=False)
    pd.DataFrame({"user": r[te].astype(np.int32), "item": c[te].astype(np.int32),
                  "rating": v[te]}).to_csv(tmp / "test.csv", index=False, header=False)
    schema = StructType([StructField("user", IntegerType()), StructField("item", IntegerType()),
                         StructField("rating", FloatType())])
    with _RSSSampler() as sampler:
        spark = (SparkSession.builder.master("local[2]").appName("rankfold-bench")
                 .config("spark.driver.memory", "8g")
                 .config("spark.sql.shuffle.partitions", "4")
                 .config("spark.ui.enabled", "false").getOrCreate())
        spark.sparkContext.setLogLevel("ERROR")
        try:
            train = spark.read.csv(str(tmp / "train.csv"), schema=schema).cache()
            test = spark.read.csv(str(tmp / "test.csv"), schema=schema).cache()
            n = train.count()
            test.count()
            als = SparkALS(rank=rank, maxIter=iters, regParam=reg, userCol="user",
                           itemCol="item", ratingCol="rating", seed=0,
                           coldStartStrategy="nan", numUserBlocks=4, numItemBlocks=4)
            t0 = time.perf_counter()
            model = als.fit(train)
            model.userFactors.count()
            model.itemFactors.count()
            t_fit = time.perf_counter() - t0
            pred = model.transform(test).toPandas()
        finally:
            spark.stop()
    ok = pred["prediction"].notna()
    rmse = float(np.sqrt(np.mean((pred["prediction"][ok] - pred["rating"][ok]) ** 2)))
    print(f"[scale] Spark ALS {t_fit:.1f}s RMSE {rmse:.4f} (JVM peak RSS "
          f"{sampler.peak:.0f} MB)", flush=True)
    return {"fit_seconds": t_fit, "test_rmse": rmse, "train_rows": int(n),
            "jvm_peak_rss_mb": sampler.peak, "cold_start_nan": int((~ok).sum()),
            "config": "local[2], driver memory 8g, 4x4 blocks, implicitPrefs=False"}


# --------------------------------------------------------------------------------------
def part_sketch(quick: bool, repeats: int) -> dict[str, Any]:
    from rankfold.completion._solvers import SolverOptions, build_layout, solve_side

    gen = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)

    def half_step(n_rows: int, count: int, d: int, solver: str) -> float:
        n_other = max(4 * count, 1000)
        owner = np.repeat(np.arange(n_rows), count)
        other = rng.integers(0, n_other, owner.size)
        vals = rng.standard_normal(owner.size).astype(np.float32)
        lay = build_layout(owner, other, vals, n_rows, n_other, dtype=torch.float32,
                           device=torch.device("cpu"))
        Y = torch.randn(n_other, d, generator=gen)
        X0 = torch.randn(n_rows, d, generator=gen) * 0.1
        w = torch.ones(n_rows)
        ridge = torch.full((d,), 0.1)
        opts = SolverOptions(solver=solver, max_inner=4, inner_tol=0.0)
        t, _ = _median_time(lambda: solve_side(lay, Y, None, w, ridge, X0, opts, gen),
                            repeats)
        return t

    torch.set_num_threads(1)  # many small batched kernels: see _threads.py
    nnz_target = 250_000 if quick else 500_000
    counts = [256, 1024, 4096] if quick else [256, 1024, 4096, 16384]
    ranks = [16, 32, 64] if quick else [16, 32, 64, 128, 256]
    rows_omega = []
    d_fixed = 64
    for c in counts:
        n_rows = max(8, nnz_target // c)
        te = half_step(n_rows, c, d_fixed, "cholesky")
        ts = half_step(n_rows, c, d_fixed, "sketch")
        rows_omega.append({"count": c, "n_rows": n_rows, "omega": n_rows * c, "rank": d_fixed,
                           "cholesky_s": te, "sketch_s": ts})
        print(f"[sketch] |Omega|={n_rows * c} c={c} k={d_fixed}: cholesky {te:.3f}s "
              f"sketch {ts:.3f}s", flush=True)
    rows_rank = []
    c_fixed = 4096
    n_rows = max(8, nnz_target // c_fixed)
    for d in ranks:
        te = half_step(n_rows, c_fixed, d, "cholesky")
        ts = half_step(n_rows, c_fixed, d, "sketch")
        rows_rank.append({"count": c_fixed, "n_rows": n_rows, "omega": n_rows * c_fixed,
                          "rank": d, "cholesky_s": te, "sketch_s": ts})
        print(f"[sketch] k={d} c={c_fixed}: cholesky {te:.3f}s sketch {ts:.3f}s", flush=True)

    # |Omega| scaling at fixed count per row: vary the number of rows
    rows_n = []
    for n_rows in ([64, 256] if quick else [32, 64, 128, 256]):
        te = half_step(n_rows, 2048, d_fixed, "cholesky")
        ts = half_step(n_rows, 2048, d_fixed, "sketch")
        rows_n.append({"omega": n_rows * 2048, "n_rows": n_rows, "cholesky_s": te,
                       "sketch_s": ts})

    def slope(xs, ys) -> float:
        return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])

    exps = {
        "time_vs_omega_cholesky": slope([r["omega"] for r in rows_n],
                                        [r["cholesky_s"] for r in rows_n]),
        "time_vs_omega_sketch": slope([r["omega"] for r in rows_n],
                                      [r["sketch_s"] for r in rows_n]),
        "time_vs_rank_cholesky": slope([r["rank"] for r in rows_rank],
                                       [r["cholesky_s"] for r in rows_rank]),
        "time_vs_rank_sketch": slope([r["rank"] for r in rows_rank],
                                     [r["sketch_s"] for r in rows_rank]),
    }
    cross = [r for r in rows_omega if r["sketch_s"] < r["cholesky_s"]]
    crossover = {"rank": d_fixed,
                 "first_count_where_sketch_faster": cross[0]["count"] if cross else None,
                 "ratio_count_over_rank": (cross[0]["count"] / d_fixed) if cross else None}
    print(f"[sketch] exponents {exps} crossover {crossover}", flush=True)
    return {"vs_count": rows_omega, "vs_rank": rows_rank, "vs_omega": rows_n,
            "exponents": exps, "crossover": crossover,
            "setup": "one half step (solve_side) over rows with equal counts, float32, 1 thread, "
                     "sketch: sparse sign embedding (4 nonzeros per column, 3k rows), "
                     "QR preconditioner, 4 PCG steps from a warm start"}


# --------------------------------------------------------------------------------------
def _fmt(x: Any, nd: int = 4) -> str:
    if isinstance(x, float):
        return f"{x:.{nd}g}" if abs(x) < 1e4 else f"{x:.0f}"
    return str(x)


def write_doc(res: dict[str, Any]) -> None:
    lines = ["# Matrix completion benchmark", "",
             f"Command: `{res.get('command', 'python benchmarks/completion.py')}`  ",
             f"Machine: {res.get('machine', '')}; threads = 2 for torch (1 for small "
             "fits, see `rankfold.completion._threads`), Surprise single-threaded, Spark "
             "local[2]. **The machine was shared with other jobs** (load average 4-19 on "
             "2 cores during the runs): absolute times are noisy, ratios are measured in "
             "the same process.", ""]
    ml = res.get("movielens")
    if ml:
        lines += ["## MovieLens-100K, 80/20 split (generator 0)", "", ml["protocol"], "",
                  "| method | RMSE | MAE | fit time (s) | time / Surprise SVD |",
                  "|---|---|---|---|---|"]
        for r in ml["split_80_20"]:
            lines.append(f"| {r['method']} | {r['rmse']:.4f} | {r['mae']:.4f} | "
                         f"{r['fit_seconds']:.3f} | {r['time_ratio_vs_surprise_svd']:.2f} |")
        lines += ["", "## MovieLens-100K, 5-fold CV (same folds for all)", "",
                  "| method | RMSE (mean +- std) | MAE | median fit time (s) |",
                  "|---|---|---|---|"]
        for r in ml["cv_5fold"]:
            lines.append(f"| {r['method']} | {r['rmse_mean']:.4f} +- {r['rmse_std']:.4f} | "
                         f"{r['mae_mean']:.4f} | {r['fit_seconds_median']:.3f} |")
        lines.append("")
    tune = ROOT / "results" / "completion_tune.json"
    if tune.exists():
        t = json.loads(tune.read_text())
        b = t["best"]
        lines += ["## How ALS()'s defaults were chosen", "",
                  f"`python benchmarks/completion_tune.py`: {t['protocol']}. Best CV RMSE "
                  f"{b['cv_rmse']:.4f} at rank {b['rank']}, reg {b['reg']}, exponent "
                  f"{b['reg_exponent']}, {b['best_n_iter']} sweeps; rank 50 with the same "
                  "settings is within 0.001 at half the cost and is the default "
                  "(full grid in benchmarks/results/completion_tune.json).", ""]
    sc = res.get("scale")
    if sc:
        lines += [f"## Scale: {sc['train_ratings']:,} training ratings, {sc['n_users']:,} "
                  f"users x {sc['n_items']:,} items, rank {sc['rank']}, "
                  f"{sc['iterations']} iterations", "", sc["model"] + ".", "",
                  "| method | fit time (s) | test RMSE | peak RSS (MB) |", "|---|---|---|---|"]
        rf = sc["rankfold"]
        lines.append(f"| rankfold ALS (float32, cholesky) | {rf['fit_seconds']:.1f} | "
                     f"{rf['test_rmse']:.4f} | {rf['peak_rss_mb']:.0f} (process; input "
                     f"arrays {rf['input_arrays_mb']:.0f}) |")
        sp_ = sc.get("spark", {})
        if "error" in sp_:
            lines.append(f"| Spark MLlib ALS | failed: {sp_['error']} | | |")
        elif sp_:
            lines.append(f"| Spark MLlib ALS local[2] | {sp_['fit_seconds']:.1f} | "
                         f"{sp_['test_rmse']:.4f} | {sp_['jvm_peak_rss_mb']:.0f} (JVM) |")
            lines += ["", f"Speed-up vs Spark (wall time): {sc['speedup_vs_spark']:.2f}x."]
        if sc.get("notes"):
            lines += ["", sc["notes"]]
        lines.append("")
    sk = res.get("sketch")
    if sk:
        lines += ["## Sketched vs exact row solves", "", sk["setup"] + ".", "",
                  "| rows x count | rank | cholesky (s) | sketch (s) | sketch / cholesky |",
                  "|---|---|---|---|---|"]
        for r in sk["vs_count"] + sk["vs_rank"] + [dict(x, count=2048, rank=64)
                                                   for x in sk["vs_omega"]]:
            lines.append(f"| {r['n_rows']} x {r['count']} | {r['rank']} | "
                         f"{r['cholesky_s']:.4f} | {r['sketch_s']:.4f} | "
                         f"{r['sketch_s'] / r['cholesky_s']:.2f} |")
        e = sk["exponents"]
        lines += ["", f"Fitted exponents: time ~ |Omega|^{e['time_vs_omega_cholesky']:.2f} "
                  f"(exact) and ^{e['time_vs_omega_sketch']:.2f} (sketch); time ~ "
                  f"k^{e['time_vs_rank_cholesky']:.2f} (exact) and "
                  f"k^{e['time_vs_rank_sketch']:.2f} (sketch) at 4,096 observations per "
                  "row. Crossover at rank "
                  f"{sk['crossover']['rank']}: "
                  + (f"sketch first faster at {first} observations per row."
                     if (first := sk['crossover']['first_count_where_sketch_faster'])
                     else "the sketch was never faster in the tested range, so "
                          "solver='auto' keeps the exact solve there."), ""]
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--part", default="movielens,scale,sketch")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(2)
    repeats = 1 if args.quick else args.repeats
    res: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    res["command"] = "python benchmarks/completion.py " + " ".join(sys.argv[1:])
    res["machine"] = (f"{platform.processor() or platform.machine()}, "
                      f"{os.cpu_count()} cores, torch {torch.__version__}, "
                      f"load average {os.getloadavg()[0]:.1f} at start")
    parts = args.part.split(",")
    if "movielens" in parts:
        res["movielens"] = part_movielens(args.quick, repeats)
    if "scale" in parts:
        res["scale"] = part_scale(args.quick)
    if "sketch" in parts:
        res["sketch"] = part_sketch(args.quick, max(1, min(repeats, 3)))
    res["quick"] = args.quick
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=1))
    write_doc(res)
    print(f"wrote {RESULTS} and {DOC}")


if __name__ == "__main__":
    main()
