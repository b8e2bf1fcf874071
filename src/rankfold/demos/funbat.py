"""Demo section: FunBaT on continuous-indexed data (US-Temp fold 0) vs discrete CP."""

from __future__ import annotations

import time

import numpy as np

from . import DemoSection

TITLE = "FunBaT: functional Tucker on continuous-indexed data (US-Temp, fold 0)"
ORDER = 40


def _rmse(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred - y) ** 2)))


def run(quick: bool) -> DemoSection:
    from ..datasets import load_funbat
    from ..tensor import FunctionalTucker

    split = load_funbat("us_temp", 0)
    n_sub = 8000 if quick else 20000
    rng = np.random.default_rng(0)
    sub = rng.choice(split.coords_train.shape[0], size=n_sub, replace=False)
    Xtr, ytr, itr = split.coords_train[sub], split.y_train[sub], split.indices_train[sub]
    epochs = 15 if quick else 40
    rows = []
    t0 = time.perf_counter()
    model = FunctionalTucker(3, n_epochs=epochs, generator=0).fit(Xtr, ytr)
    mean, std = model.predict(split.coords_test, return_std=True)
    t_fun = time.perf_counter() - t0
    cover = float(np.mean(np.abs(mean - split.y_test) <= 2 * std))
    rows.append(["FunBaT (rankfold FunctionalTucker)", 3, _rmse(mean, split.y_test),
                 float(np.mean(np.abs(mean - split.y_test))), round(t_fun, 1)])
    notes = [f"train subsample {n_sub} of {split.coords_train.shape[0]} entries, "
             f"{model.n_epochs_} epochs; test {split.y_test.shape[0]} entries",
             f"FunBaT 2-std predictive interval covers {100 * cover:.0f}% of test entries",
             "learned lengthscales (latitude, longitude, year; unit = each mode's range): "
             + ", ".join(f"{v:.3g}" for v in model.lengthscales_original_)]
    try:
        from ..tensor.complete import cp_complete
    except ImportError:  # the discrete pillar is optional for this section
        cp_complete = None
    if cp_complete is not None:
        import warnings

        mu, sd = float(ytr.mean()), float(ytr.std())
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = cp_complete(itr, (ytr - mu) / sd, split.shape, 3,
                              n_iter_max=20 if quick else 60, l2_reg=0.1, generator=0)
        pred = np.asarray(est.values_at(split.indices_test)) * sd + mu
        rows.append(["discrete CP on bins (rankfold cp_complete)", 3,
                     _rmse(pred, split.y_test), float(np.mean(np.abs(pred - split.y_test))),
                     round(time.perf_counter() - t0, 1)])
    rows.append(["predict the training mean", "-", _rmse(np.full_like(split.y_test, ytr.mean()),
                                                          split.y_test),
                 float(np.mean(np.abs(ytr.mean() - split.y_test))), 0.0])
    notes.append("bins merge cities: ~0.79 F RMS spread inside a cell is a floor for any "
                 "model indexed by these bins (see datasets/data/funbat/README.md)")
    return DemoSection(TITLE, ["model", "rank", "test RMSE (F)", "test MAE (F)", "seconds"],
                       rows, notes)
