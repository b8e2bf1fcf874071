"""l_p regression from sampled rows: leverage, root leverage, Lewis weights, sensitivity.

For p in {1, 2, 3} and two designs, min_x ||A x - b||_p is solved on m sampled,
reweighted rows of [A, b] (scores computed on the augmented matrix [A, b], so the sample
preserves ||A x - b||_p for every x) and the error is the relative excess loss

    ||A x_sample - b||_p / ||A x_opt - b||_p - 1

(median and quartiles over trials). Uniform sampling is the baseline. l_1 problems are
solved with scipy's HiGHS linear program, l_2 with lstsq, l_3 with Newton's method.

Designs: scikit-learn's bundled diabetes data (442 x 10, plus an intercept) with its real
target, and a synthetic heavy-tailed design (Student-t(2) entries times log-normal row
scales, 20000 x 12) with Student-t(1.5) noise.

Usage: python benchmarks/linalg_sampling.py [--quick] [--trials N]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import scipy.optimize as so  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import torch  # noqa: E402

from rankfold._io import atomic_path, atomic_write_text  # noqa: E402
from rankfold.linalg import row_scores, sample_by_scores  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NAME = "linalg_sampling"
METHODS = ["uniform", "leverage", "root_leverage", "lewis", "sensitivity"]
PS = [1.0, 2.0, 3.0]


def solve_lp(A: np.ndarray, b: np.ndarray, p: float) -> np.ndarray:
    """argmin_x ||A x - b||_p for p = 1 (LP), 2 (lstsq) or p > 1 (Newton)."""
    n, d = A.shape
    if p == 2.0:
        return np.linalg.lstsq(A, b, rcond=None)[0]
    if p == 1.0:
        # min sum t  s.t.  A x - t <= b,  -A x - t <= -b
        c = np.concatenate([np.zeros(d), np.ones(n)])
        eye = sp.identity(n, format="csr")
        As = sp.csr_matrix(A)
        A_ub = sp.bmat([[As, -eye], [-As, -eye]], format="csr")
        b_ub = np.concatenate([b, -b])
        bounds = [(None, None)] * d + [(0, None)] * n
        res = so.linprog(c, A_ub=A_ub, b_ub=b_ub, bounds=bounds, method="highs")
        if res.status != 0:
            raise RuntimeError(f"linprog failed: {res.message}")
        return res.x[:d]
    x = np.linalg.lstsq(A, b, rcond=None)[0]
    f = float(np.sum(np.abs(A @ x - b) ** p))
    for _ in range(100):
        r = A @ x - b
        g = p * A.T @ (np.sign(r) * np.abs(r) ** (p - 1))
        H = p * (p - 1) * (A.T * np.abs(r) ** (p - 2)) @ A
        step = np.linalg.lstsq(H, g, rcond=None)[0]
        t = 1.0
        while t > 1e-10:
            xn = x - t * step
            fn = float(np.sum(np.abs(A @ xn - b) ** p))
            if fn <= f:
                break
            t /= 2
        if f - fn <= 1e-13 * f:
            x, f = xn, fn
            break
        x, f = xn, fn
    return x


def loss(A: np.ndarray, b: np.ndarray, x: np.ndarray, p: float) -> float:
    return float(np.sum(np.abs(A @ x - b) ** p) ** (1 / p))


def designs(quick: bool) -> dict[str, tuple[np.ndarray, np.ndarray, list[int]]]:
    out = {}
    try:
        from sklearn.datasets import load_diabetes

        X, y = load_diabetes(return_X_y=True)
        A = np.hstack([X / X.std(axis=0), np.ones((X.shape[0], 1))])
        out["diabetes (442 x 11, real)"] = (A, y.astype(np.float64), [30, 60, 120, 240])
    except ImportError:  # pragma: no cover
        print("scikit-learn missing: skipping the diabetes design", file=sys.stderr)
    rng = np.random.default_rng(0)
    n, d = (4000, 8) if quick else (20000, 12)
    A = rng.standard_t(2, (n, d)) * np.exp(1.5 * rng.standard_normal((n, 1)))
    b = A @ rng.standard_normal(d) + rng.standard_t(1.5, n)
    sizes = [40, 80, 160, 320, 640] if quick else [50, 100, 200, 400, 800, 1600]
    out[f"heavy-tailed ({n} x {d}, synthetic)"] = (A, b, sizes)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--trials", type=int, default=None)
    args = ap.parse_args()
    torch.set_num_threads(2)
    trials = args.trials or (5 if args.quick else 15)
    results: list[dict] = []
    t_start = time.perf_counter()
    for dname, (A, b, sizes) in designs(args.quick).items():
        Ab = np.hstack([A, b[:, None]])
        for p in PS:
            x_opt = solve_lp(A, b, p)
            opt = loss(A, b, x_opt, p)
            scores = {"uniform": np.ones(A.shape[0])}
            for by in METHODS[1:]:
                t0 = time.perf_counter()
                scores[by] = row_scores(Ab, by=by, p=p, generator=0)
                print(f"{dname} p={p:g} {by} scores: {time.perf_counter() - t0:.2f} s",
                      flush=True)
            for m in sizes:
                for by in METHODS:
                    errs = []
                    for t in range(trials):
                        idx, w = sample_by_scores(scores[by], m, p=p, generator=1000 * t + m)
                        if len(idx) < A.shape[1]:
                            continue
                        xs = solve_lp(w[:, None] * A[idx], w * b[idx], p)
                        errs.append(loss(A, b, xs, p) / opt - 1)
                    q1, med, q3 = (np.percentile(errs, [25, 50, 75]).tolist() if errs
                                   else [float("nan")] * 3)
                    results.append(dict(design=dname, p=p, m=m, method=by, median=med,
                                        q1=q1, q3=q3, trials=len(errs)))
                print(f"{dname} p={p:g} m={m}: " + ", ".join(
                    f"{r['method']}={r['median']:.3g}" for r in results[-len(METHODS):]),
                    flush=True)
    elapsed = time.perf_counter() - t_start
    (ROOT / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    cmd = "python benchmarks/linalg_sampling.py" + (" --quick" if args.quick else "")
    atomic_write_text(ROOT / "benchmarks" / "results" / f"{NAME}.json", json.dumps(
        dict(command=cmd, trials=trials, threads=torch.get_num_threads(), results=results,
             seconds=elapsed), indent=2))
    plot(results)
    write_markdown(results, trials, cmd)
    return 0


def plot(results: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dnames = list(dict.fromkeys(r["design"] for r in results))
    fig, axes = plt.subplots(len(dnames), len(PS), figsize=(4.2 * len(PS), 3.4 * len(dnames)),
                             squeeze=False)
    for i, dn in enumerate(dnames):
        for j, p in enumerate(PS):
            ax = axes[i][j]
            for by in METHODS:
                rows = [r for r in results if r["design"] == dn and r["p"] == p
                        and r["method"] == by]
                ms = [r["m"] for r in rows]
                ax.plot(ms, [max(r["median"], 1e-6) for r in rows], marker="o", label=by,
                        linestyle="--" if by == "uniform" else "-")
                ax.fill_between(ms, [max(r["q1"], 1e-6) for r in rows],
                                [max(r["q3"], 1e-6) for r in rows], alpha=0.12)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(f"{dn}, p = {p:g}", fontsize=9)
            ax.set_xlabel("sampled rows m")
            if j == 0:
                ax.set_ylabel("relative excess l_p loss")
            ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    out = ROOT / "docs" / "img" / "sampling.png"
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def write_markdown(results: list[dict], trials: int, cmd: str) -> None:
    lines = [
        "# l_p regression from sampled rows",
        "",
        f"Command: `.venv/bin/{cmd}` (threads = 2, float64, {trials} trials per point; "
        "machine shared with other jobs).",
        "",
        "Error = ||A x_sample - b||_p / ||A x_opt - b||_p - 1 (median over trials, "
        "interquartile range in the plot), rows sampled i.i.d. by scores of [A, b] and "
        "reweighted by (count / (m q_i))^(1/p). At p = 2 Lewis weights, root leverage "
        "scores and sensitivities coincide with leverage scores; root leverage equals "
        "leverage for p >= 2; `sensitivity` uses IRLS estimates of the l_p sensitivities for "
        "p < 2 and the Lewis-weight bounds for p > 2 (see docs/linalg.md).",
        "",
        "![sampling](../img/sampling.png)",
        "",
    ]
    dnames = list(dict.fromkeys(r["design"] for r in results))
    for dn in dnames:
        for p in PS:
            rows = [r for r in results if r["design"] == dn and r["p"] == p]
            ms = sorted({r["m"] for r in rows})
            lines += [f"## {dn}, p = {p:g}", "",
                      "| method | " + " | ".join(f"m={m}" for m in ms) + " |",
                      "|---|" + "---|" * len(ms)]
            for by in METHODS:
                vals = {r["m"]: r["median"] for r in rows if r["method"] == by}
                lines.append(f"| {by} | " + " | ".join(f"{vals[m]:.3g}" for m in ms) + " |")
            lines.append("")
    atomic_write_text(ROOT / "docs" / "benchmarks" / f"{NAME}.md", "\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
