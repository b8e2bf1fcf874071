"""Continuous-indexed tensor data: the FunBaT evaluation splits (shipped in this package).

The files in ``rankfold/datasets/data/funbat/`` are the published train/test folds of
Fang et al. (ICLR 2024), converted to plain ``.npz`` (see the README there for sources
and licences: reference code MIT; BeijingAir UCI CC BY 4.0; US-Temp Berkeley Earth).
They hold integer bin indexes per mode; functional models use the bin centres
``(b + 0.5) / n`` (each mode's range mapped to [0, 1]).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from .._errors import DataFileError
from .._validation import check_int, check_option

__all__ = ["FunBaTSplit", "FUNBAT_DATASETS", "load_funbat", "load_funbat_truth",
           "funbat_data_dir"]

#: name -> (file, mode names, target description)
FUNBAT_DATASETS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "us_temp": ("US_temp_DISCT_15x95x267.npz", ("latitude", "longitude", "year"),
                "yearly mean temperature (degrees F)"),
    "beijing_pm25": ("beijing_PM2.5_DISCT_428x501x1461_no_agg.npz",
                     ("temperature", "pressure", "day"), "PM2.5 (z-scored)"),
    "beijing_pm25_50x50x150": ("beijing_PM2.5_DISCT_50x50x150_no_agg.npz",
                               ("temperature", "pressure", "day"), "PM2.5 (z-scored)"),
    "synthetic": ("synthetic_simulation_r1.npz", ("x", "y"),
                  "sin^2(2 pi x) cos(2 pi x) e^{-2y} sin(1.5 pi y) + noise"),
}
_FOLDS = {"us_temp": 5, "beijing_pm25": 5, "beijing_pm25_50x50x150": 5, "synthetic": 1}


class FunBaTSplit(NamedTuple):
    """One train/test fold.

    Attributes
    ----------
    coords_train, coords_test : (N, K) float64 coordinates in [0, 1] (bin centres, or the
        raw coordinates for the synthetic set).
    y_train, y_test : (N,) float64 targets.
    indices_train, indices_test : (N, K) int64 bin indexes (for discrete baselines).
    shape : tuple of K ints, bins per mode.
    mode_names : tuple of K str.
    """

    coords_train: np.ndarray
    y_train: np.ndarray
    coords_test: np.ndarray
    y_test: np.ndarray
    indices_train: np.ndarray
    indices_test: np.ndarray
    shape: tuple[int, ...]
    mode_names: tuple[str, ...]


def funbat_data_dir() -> Path:
    """Folder holding the shipped FunBaT splits."""
    return Path(__file__).resolve().parent / "data" / "funbat"


def _open(name: str, func: str) -> np.lib.npyio.NpzFile:
    check_option(name, "name", func, FUNBAT_DATASETS)
    path = funbat_data_dir() / FUNBAT_DATASETS[name][0]
    if not path.exists():
        raise DataFileError(f"The FunBaT split file {path} is missing; reinstall rankfold "
                            "(the files ship inside the package).")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataFileError(f"The FunBaT split file {path} is unreadable: {exc}") from exc


def load_funbat(name: str, fold: int = 0) -> FunBaTSplit:
    """Load one fold of a FunBaT split.

    Parameters
    ----------
    name : {"us_temp", "beijing_pm25", "beijing_pm25_50x50x150", "synthetic"}
    fold : int in [0, 4] (the synthetic set has only fold 0), default 0

    Returns
    -------
    FunBaTSplit

    Examples
    --------
    >>> split = load_funbat("us_temp", fold=0)
    >>> split.coords_train.shape, split.shape
    ((44755, 3), (15, 95, 267))
    """
    func = "load_funbat"
    check_option(name, "name", func, FUNBAT_DATASETS)
    fold = check_int(fold, "fold", func, low=0, high=_FOLDS[name] - 1)
    with _open(name, func) as d:
        shape = tuple(int(v) for v in d["ndims"])
        if name == "synthetic":
            itr, ite = d["fold0_tr_ind_DISCT"], d["fold0_te_ind_DISCT"]
            ctr, cte = d["fold0_tr_ind_CONTI"], d["fold0_te_ind_CONTI"]
        else:
            itr, ite = d[f"fold{fold}_tr_ind"], d[f"fold{fold}_te_ind"]
            n = np.asarray(shape, dtype=np.float64)
            ctr, cte = (itr + 0.5) / n, (ite + 0.5) / n
        return FunBaTSplit(
            np.asarray(ctr, dtype=np.float64), np.asarray(d[f"fold{fold}_tr_y"], np.float64),
            np.asarray(cte, dtype=np.float64), np.asarray(d[f"fold{fold}_te_y"], np.float64),
            np.asarray(itr, dtype=np.int64), np.asarray(ite, dtype=np.int64), shape,
            FUNBAT_DATASETS[name][1])


def load_funbat_truth() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """True latent trajectories of the synthetic set.

    Returns
    -------
    grids : list of 2 (90,) coordinate arrays (x and y).
    trajectories : list of 2 (90,) arrays ``u1(x) = sin^2(2 pi x) cos(2 pi x)`` and
        ``u2(y) = e^{-2y} sin(1.5 pi y)`` at those coordinates.
    """
    with _open("synthetic", "load_funbat_truth") as d:
        grids = [np.asarray(d["disct2conti_mode0"], np.float64),
                 np.asarray(d["disct2conti_mode1"], np.float64)]
        traj = [np.asarray(d["fold0_U1_traj_true"], np.float64),
                np.asarray(d["fold0_U2_traj_true"], np.float64)]
    return grids, traj
