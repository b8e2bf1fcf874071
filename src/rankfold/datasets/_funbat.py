"""Continuous-indexed tensor data: the FunBaT evaluation splits (shipped in this package).

The files in ``rankfold/datasets/data/funbat/`` are the published train/test folds of
Fang et al. (ICLR 2024), converted to plain ``.npz`` (see the README there for sources
and licences: reference code MIT; BeijingAir UCI CC BY 4.0; US-Temp Berkeley Earth).
They hold integer bin indexes per mode; functional models use the bin centres
``(b + 0.5) / n`` (each mode's range mapped to [0, 1]). The two BeijingAir files hold the
same 16,965 entries, binned 428x501x1461 and 50x50x150 and split at random differently;
``coordinates="full_resolution"`` gives the entries of the coarse file's folds their
full-resolution coordinates (the paper's protocol: discrete models on the coarse bins,
functional models on the coordinates, same train/test entries).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from .._errors import DataFileError
from .._validation import check_int, check_option, param_error

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


def load_funbat(name: str, fold: int = 0, *,
                coordinates: str = "bin_centres") -> FunBaTSplit:
    """Load one fold of a FunBaT split.

    Parameters
    ----------
    name : {"us_temp", "beijing_pm25", "beijing_pm25_50x50x150", "synthetic"}
    fold : int in [0, 4] (the synthetic set has only fold 0), default 0
    coordinates : {"bin_centres", "full_resolution"}, default "bin_centres"
        ``coords_*`` of the split: the centres of the file's own bins (the raw
        coordinates for the synthetic set), or, for ``"beijing_pm25_50x50x150"`` only,
        each entry's coordinates at full resolution (428x501x1461 bin centres), recovered
        by matching the entry to the full-resolution file: same target value, bins that
        contain each other. ``indices_*`` and ``shape`` stay the 50x50x150 bins, so
        discrete baselines and functional models see the same train/test entries.

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
    check_option(coordinates, "coordinates", func, ("bin_centres", "full_resolution"))
    if coordinates == "full_resolution":
        if name != "beijing_pm25_50x50x150":
            raise param_error("coordinates", func, '"bin_centres" unless name is '
                              '"beijing_pm25_50x50x150" (the only file with a finer copy)',
                              coordinates)
        split = load_funbat(name, fold)
        fine = load_funbat("beijing_pm25", fold)
        ctr, cte = _match_fine_coordinates(split, fine)
        return split._replace(coords_train=ctr, coords_test=cte)
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


def _match_fine_coordinates(coarse: FunBaTSplit,
                            fine: FunBaTSplit) -> tuple[np.ndarray, np.ndarray]:
    """Full-resolution coordinates of the coarse split's entries.

    Both files hold the same entries (identical target values). An entry of the coarse
    file is matched to one of the fine file with the same target whose fine bin
    overlaps its coarse bin in every mode (both binnings are equal-width over the same
    ranges, so the fine bin's centre lies within half a fine plus half a coarse bin width
    of the coarse bin's centre). Entries sharing a target value are paired by a minimum
    total centre distance assignment; on BeijingAir 7 of 16,965 entries keep a choice
    between equally consistent fine coordinates.
    """
    from scipy.optimize import linear_sum_assignment

    yc = np.concatenate([coarse.y_train, coarse.y_test]).reshape(-1)
    yf = np.concatenate([fine.y_train, fine.y_test]).reshape(-1)
    cc = np.concatenate([coarse.coords_train, coarse.coords_test])
    cf = np.concatenate([fine.coords_train, fine.coords_test])
    if yc.shape != yf.shape:
        raise DataFileError("The two BeijingAir files hold different numbers of entries "
                            f"({yc.size} and {yf.size}); reinstall rankfold.")
    # slack: half a coarse bin + half a fine bin, in [0, 1] units, plus rounding
    slack = 0.5 / np.asarray(coarse.shape) + 0.5 / np.asarray(fine.shape) + 1e-9
    oc, of = np.argsort(yc, kind="stable"), np.argsort(yf, kind="stable")
    if not np.array_equal(yc[oc], yf[of]):
        raise DataFileError("The two BeijingAir files hold different target values; "
                            "reinstall rankfold.")
    match = np.empty(yc.size, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, yc[oc][1:] != yc[oc][:-1], True])
    for a, b in zip(starts[:-1], starts[1:], strict=True):
        ic, jf = oc[a:b], of[a:b]
        dist = np.abs(cc[ic][:, None, :] - cf[jf][None, :, :])
        ok = (dist <= slack).all(axis=-1)
        if b - a == 1:
            if not ok[0, 0]:
                raise DataFileError("An entry of the 50x50x150 file has no consistent "
                                    "full-resolution entry; reinstall rankfold.")
            match[ic[0]] = jf[0]
            continue
        cost = np.where(ok, dist.sum(axis=-1), np.inf)
        try:
            r, c = linear_sum_assignment(cost)
        except ValueError as exc:  # no complete consistent pairing
            raise DataFileError("Entries of the 50x50x150 file have no consistent "
                                "full-resolution entries; reinstall rankfold.") from exc
        match[ic[r]] = jf[c]
    coords = cf[match]
    n_train = coarse.y_train.shape[0]
    return coords[:n_train].copy(), coords[n_train:].copy()


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
