"""``rankfold funbat``: functional Bayesian Tucker decomposition of a CSV table.

Example::

    rankfold funbat data.csv --coords temp,pressure,day --target pm25 --rank 3 \\
        --test-size 0.2 --plot latent.png

Reads the CSV (pandas), drops rows with a missing coordinate or target, holds out a
random test fraction, fits :class:`rankfold.tensor.FunctionalTucker` (or
``FunctionalCP`` with ``--cp``) with a progress line per epoch on stderr, and prints
the train / test RMSE and MAE, the learned lengthscales and the noise level.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from ._output import hint, print_json, print_table


def register(sub: Any) -> None:
    p = sub.add_parser(
        "funbat", help="functional Bayesian Tucker decomposition of continuous-indexed data",
        description="Fit FunBaT (Fang et al., ICLR 2024) to a CSV table whose rows are "
                    "observations at real-valued coordinates, and report held-out error.",
    )
    p.add_argument("data", help="CSV file with a header row")
    p.add_argument("--coords", required=True,
                   help="comma-separated coordinate columns (one tensor mode each)")
    p.add_argument("--target", required=True, help="target column")
    p.add_argument("--rank", default="3",
                   help="latent functions per mode: an int, or one per mode 'R1,R2,...' "
                        "(default 3)")
    p.add_argument("--cp", action="store_true", help="FunBaT-CP (superdiagonal core)")
    p.add_argument("--kernel", default="matern12",
                   choices=["matern12", "matern32", "matern52"])
    p.add_argument("--epochs", type=int, default=100, help="maximum epochs (default 100)")
    p.add_argument("--damping", type=float, default=0.5)
    p.add_argument("--test-size", type=float, default=0.2,
                   help="held-out fraction in [0, 1) (default 0.2)")
    p.add_argument("--patience", type=int, default=None,
                   help="early stopping on the held-out RMSE after this many epochs "
                        "without improvement")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--plot", default=None, help="save the latent functions to this image")
    p.add_argument("--predict", default=None,
                   help="write test predictions (mean, std) to this CSV")
    p.add_argument("--format", choices=["human", "json"], default="human")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import pandas as pd

    from .._errors import DataFileError
    from ..tensor import FunctionalCP, FunctionalTucker
    from .main import UsageError

    coords = [c.strip() for c in args.coords.split(",") if c.strip()]
    if not coords:
        raise UsageError("The '--coords' option must name at least one column. Got '' "
                         "instead.")
    if not (0.0 <= args.test_size < 1.0):
        raise UsageError(f"The '--test-size' option must be in [0, 1). Got {args.test_size} "
                         "instead.")
    try:
        ranks = [int(r) for r in str(args.rank).split(",")]
    except ValueError as exc:
        raise UsageError(f"The '--rank' option must be an int or 'R1,R2,...'. Got "
                         f"{args.rank!r} instead.") from exc
    if args.cp and len(set(ranks)) != 1:
        raise UsageError(f"The '--rank' option must be one int with --cp. Got {args.rank!r}.")
    try:
        df = pd.read_csv(args.data)
    except (OSError, ValueError) as exc:
        raise DataFileError(f"cannot read {args.data}: {exc}") from exc
    missing = [c for c in coords + [args.target] if c not in df.columns]
    if missing:
        raise UsageError(f"The columns {missing} are not in {args.data}; it has "
                         f"{list(df.columns)}.")
    df = df[coords + [args.target]].apply(pd.to_numeric, errors="coerce")
    n0 = len(df)
    df = df[np.isfinite(df.to_numpy()).all(axis=1)]
    if len(df) < n0 and args.format == "human":
        hint(f"[funbat] dropped {n0 - len(df)} rows with missing or non-numeric values")
    if len(df) < 3:
        raise UsageError(f"{args.data} has {len(df)} usable rows; FunBaT needs at least 3.")
    rng = np.random.default_rng(args.seed)
    perm = rng.permutation(len(df))
    n_test = int(round(args.test_size * len(df)))
    test, train = df.iloc[perm[:n_test]], df.iloc[perm[n_test:]]
    rank: Any = ranks[0] if len(ranks) == 1 else tuple(ranks)
    cls = FunctionalCP if args.cp else FunctionalTucker
    model = cls(rank, kernel=args.kernel, n_epochs=args.epochs, damping=args.damping,
                patience=args.patience if n_test else None, generator=args.seed,
                show_progress=None if args.format == "human" else False)
    human = args.format == "human"

    def on_epoch(epoch: int, rec: dict[str, float]) -> None:
        if human and not sys.stderr.isatty():
            extra = f" test_rmse={rec['val_rmse']:.4g}" if "val_rmse" in rec else ""
            hint(f"[funbat] epoch {epoch}/{args.epochs} train_rmse={rec['train_rmse']:.4g}"
                 + extra)

    validation = (test[coords], test[args.target].to_numpy()) if n_test else None
    model.fit(train[coords], train[args.target].to_numpy(), validation=validation,
              callback=on_epoch)
    summary: dict[str, Any] = {
        "model": cls.__name__, "rank": rank, "kernel": args.kernel,
        "epochs": model.n_epochs_, "n_train": len(train), "n_test": n_test,
        "noise_std": model.noise_std_,
        "lengthscales": dict(zip(coords, model.lengthscales_original_, strict=True)),
    }
    rows = []
    for name, part in (("train", train), ("test", test)):
        if len(part) == 0:
            continue
        pred = model.predict(part[coords])
        err = pred - part[args.target].to_numpy()
        rmse, mae = float(math.sqrt(np.mean(err**2))), float(np.mean(np.abs(err)))
        summary[f"{name}_rmse"], summary[f"{name}_mae"] = rmse, mae
        rows.append([name, len(part), rmse, mae])
    if args.plot:
        model.plot_latent_functions(args.plot, mode_names=coords)
        summary["plot"] = args.plot
    if args.predict and n_test:
        mean, std = model.predict(test[coords], return_std=True)
        out = test.copy()
        out["pred_mean"], out["pred_std"] = mean, std
        from .._io import atomic_write_text

        atomic_write_text(args.predict, out.to_csv(index=False))
        summary["predictions"] = args.predict
    if args.format == "json":
        print_json(summary)
        return 0
    print_table(f"FunBaT {cls.__name__} rank {rank}, {model.n_epochs_} epochs",
                ["split", "rows", "RMSE", "MAE"], rows)
    print_table("learned per-mode hyper-parameters",
                ["mode", "lengthscale", "variance"],
                [[c, ell, v] for c, ell, v in zip(coords, model.lengthscales_original_,
                                                  model.variances_, strict=True)])
    print(f"noise std: {model.noise_std_:.4g}")
    if args.plot:
        print(f"latent functions saved to {args.plot}")
    return 0
