"""``rankfold complete``: fit a completion model to a ratings file, score it, predict.

Examples::

    rankfold complete ratings.csv --rank 20 --test-size 0.2 --out predictions.csv
    rankfold complete ratings.csv --recommend 10 --users 1,2,3
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from .._progress import progress
from ._output import hint, print_json, print_table
from .main import UsageError

__all__ = ["register"]

_METHODS = ("als", "altmin", "softimpute")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "complete", help="fit a low-rank completion model to a ratings file",
        description="Fit ALS (default), AltMin or SoftImpute to a (user, item, rating) "
                    "file; report training loss and held-out RMSE/MAE; write predictions "
                    "and top-N recommendations.")
    p.add_argument("ratings", help="CSV/TSV file of (user, item, rating) rows with a header "
                                   "(columns 'user', 'item', 'rating' or the first three)")
    p.add_argument("--method", choices=_METHODS, default="als")
    p.add_argument("--rank", type=int, default=None,
                   help="number of factors (default: the estimator's, 50 for ALS)")
    p.add_argument("--reg", type=float, default=None, help="ALS regularisation")
    p.add_argument("--neighbors", type=int, default=None, metavar="K",
                   help="ALS item-neighbourhood correction: K rated neighbours (default 50; "
                        "0 = the factor model alone)")
    p.add_argument("--n-iter", type=int, default=None, help="maximum iterations")
    p.add_argument("--solver", default=None,
                   help="row solver: auto, cholesky, cholesky_bf16, sketch or cg (ALS, AltMin)")
    p.add_argument("--test-size", type=float, default=None,
                   help="hold out this fraction of ratings and report RMSE/MAE live")
    p.add_argument("--columns", default=None,
                   help="user,item,rating column names (default: those names or the first "
                        "three columns)")
    p.add_argument("--sep", default=None,
                   help="field separator (default: tab for .tsv/.inter/.tab, else comma)")
    p.add_argument("--out", default=None,
                   help="write predictions (user,item,rating,prediction) for the test part "
                        "(or the training ratings without --test-size) to this CSV")
    p.add_argument("--recommend", type=int, default=None, metavar="N",
                   help="print the top-N unseen items per user (CSV on stdout)")
    p.add_argument("--users", default=None,
                   help="comma-separated user ids for --recommend (default: all users)")
    p.add_argument("--save", default=None, help="save the fitted model (.npz)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split and the fit")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(handler=run)


def _read(path: str, sep: str | None, columns: list[str] | None) -> Any:
    import pandas as pd

    file = Path(path)
    if not file.is_file():
        raise UsageError(f"ratings file {path!r} does not exist")
    if sep is None:
        sep = "\t" if file.suffix.lower() in {".tsv", ".inter", ".tab"} else ","
    df = pd.read_csv(file, sep=sep)
    if columns is None:
        if all(c in df.columns for c in ("user", "item", "rating")):
            return df[["user", "item", "rating"]], None
        if df.shape[1] < 3:
            raise UsageError(f"{path} has {df.shape[1]} columns; need user, item, rating "
                             f"(wrong --sep?)")
        return df.iloc[:, :3], None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise UsageError(f"--columns names {missing} not in {path}; its columns are "
                         f"{list(df.columns)}")
    return df[columns], columns


def _estimator(args: argparse.Namespace) -> Any:
    from ..completion import ALS, AltMin, SoftImpute

    kw: dict[str, Any] = {"generator": args.seed}
    if args.n_iter is not None:
        kw["n_iter"] = args.n_iter
    if args.method == "als":
        if args.rank is not None:
            kw["rank"] = args.rank
        if args.reg is not None:
            kw["reg"] = args.reg
        if args.solver is not None:
            kw["solver"] = args.solver
        if args.neighbors is not None:
            kw["neighbors"] = args.neighbors
        return ALS(**kw)
    if args.reg is not None and args.method == "altmin":
        kw["reg"] = args.reg
    if args.method == "altmin":
        if args.solver is not None:
            kw["solver"] = args.solver
        return AltMin(args.rank if args.rank is not None else 10, **kw)
    if args.rank is not None:
        kw["rank"] = args.rank
    return SoftImpute(**kw)


def run(args: argparse.Namespace) -> int:
    import warnings

    import pandas as pd

    from ..completion import UnknownIdWarning, score, train_test_split

    columns = args.columns.split(",") if args.columns else None
    if columns is not None and len(columns) != 3:
        raise UsageError("--columns needs three comma-separated names: user,item,rating")
    if args.test_size is not None and not 0 < args.test_size < 1:
        raise UsageError(f"--test-size must be in (0, 1); got {args.test_size}")
    if args.recommend is not None and args.recommend < 1:
        raise UsageError(f"--recommend must be >= 1; got {args.recommend}")
    df, _ = _read(args.ratings, args.sep, columns)
    df.columns = ["user", "item", "rating"]
    est = _estimator(args)
    train, test = (train_test_split(df, args.test_size, generator=args.seed)
                   if args.test_size else (df, None))
    n_iter = est.n_iter
    name = type(est).__name__
    t0 = time.perf_counter()
    with progress(f"{name} rank {est.rank}", total=n_iter,
                  enabled=None if args.format == "table" else False) as bar:
        def callback(it: int, record: dict[str, Any]) -> None:
            fields = {"loss": record["loss"]}
            if "val_rmse" in record:
                fields["val_rmse"] = record["val_rmse"]
            bar.advance(1, **fields)

        est.fit(train, validation=test, callback=callback)
    fit_time = time.perf_counter() - t0
    summary: dict[str, Any] = {
        "method": name, "rank": est.rank, "users": len(est.user_ids_),
        "items": len(est.item_ids_), "train_ratings": len(train),
        "iterations": len(est.history_["loss"]), "fit_seconds": round(fit_time, 3),
        "train_loss": est.history_["loss"][-1],
    }
    if test is not None:
        s = score(est, test)
        summary.update(test_ratings=len(test), test_rmse=s.rmse, test_mae=s.mae)
    if args.out:
        from .._io import atomic_path

        part = test if test is not None else train
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnknownIdWarning)
            pred = est.predict(part["user"].to_numpy(), part["item"].to_numpy())
        out = part.assign(prediction=pred)
        with atomic_path(args.out, suffix=".csv") as tmp:
            out.to_csv(tmp, index=False)
        summary["predictions"] = str(args.out)
    if args.save:
        est.save(args.save)
        summary["model"] = str(args.save)
    recs = None
    if args.recommend:
        users = (args.users.split(",") if args.users else list(est.user_ids_))
        if args.users and est.user_ids_.dtype.kind in "iu":
            try:
                users = [int(u) for u in users]
            except ValueError as exc:
                raise UsageError(f"--users must be integer ids for this file: {exc}") from None
        rows = []
        n = min(args.recommend, len(est.item_ids_))
        for u in users:
            r = est.recommend(u, n)
            rows += [(u, j + 1, it, float(sc)) for j, (it, sc) in enumerate(
                zip(r.items.tolist(), r.scores.tolist(), strict=True))]
        recs = pd.DataFrame(rows, columns=["user", "rank", "item", "score"])
    if args.format == "json":
        if recs is not None:
            summary["recommendations"] = recs.to_dict(orient="records")
        print_json(summary)
        return 0
    print_table("rankfold complete", ["quantity", "value"],
                [[k, v] for k, v in summary.items()])
    if recs is not None:
        print(recs.to_csv(index=False), end="")
    if test is None:
        hint("hint: pass --test-size 0.2 to report held-out RMSE/MAE")
    return 0
