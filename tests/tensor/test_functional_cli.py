"""``rankfold funbat`` command and the FunBaT split loaders."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from rankfold._errors import InvalidParameterError
from rankfold.cli.main import main
from rankfold.datasets import FUNBAT_DATASETS, load_funbat, load_funbat_truth


@pytest.fixture()
def csv_path(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(300, 3)).round(2)
    y = np.sin(3 * X[:, 0]) * np.cos(2 * X[:, 1]) * (1 + X[:, 2])
    df = pd.DataFrame({"temp": X[:, 0], "pressure": X[:, 1], "day": X[:, 2], "pm25": y})
    df.loc[5, "pm25"] = np.nan  # dropped with a hint
    path = tmp_path / "data.csv"
    df.to_csv(path, index=False)
    return path


def test_cli_fits_reports_and_plots(csv_path, tmp_path, capsys):
    plot = tmp_path / "latent.png"
    preds = tmp_path / "pred.csv"
    rc = main(["funbat", str(csv_path), "--coords", "temp,pressure,day", "--target", "pm25",
               "--rank", "2", "--epochs", "12", "--test-size", "0.2", "--plot", str(plot),
               "--predict", str(preds), "--format", "json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_train"] + out["n_test"] == 299
    assert out["test_rmse"] < 0.6 * 0.5  # the target's std is about 0.5
    assert set(out["lengthscales"]) == {"temp", "pressure", "day"}
    assert plot.read_bytes()[:4] == b"\x89PNG"
    table = pd.read_csv(preds)
    assert len(table) == out["n_test"] and (table["pred_std"] > 0).all()


def test_cli_human_output_and_progress(csv_path, capsys):
    rc = main(["funbat", str(csv_path), "--coords", "temp,day", "--target", "pm25",
               "--rank", "2,1", "--epochs", "3"])
    assert rc == 0
    captured = capsys.readouterr()
    assert "RMSE" in captured.out and "lengthscale" in captured.out
    assert "[funbat] epoch 3/3" in captured.err


@pytest.mark.parametrize("argv,message", [
    (["--coords", "temp,bogus", "--target", "pm25"], "bogus"),
    (["--coords", "temp", "--target", "pm25", "--test-size", "1.5"], "--test-size"),
    (["--coords", "temp", "--target", "pm25", "--rank", "x"], "--rank"),
    (["--coords", "temp,day", "--target", "pm25", "--rank", "2,3", "--cp"], "--rank"),
    (["--coords", "temp", "--target", "pm25", "--rank", "0"], "'ranks'"),
])
def test_cli_usage_errors_exit_2(csv_path, capsys, argv, message):
    assert main(["funbat", str(csv_path), *argv]) == 2
    assert message in capsys.readouterr().err


def test_cli_missing_file_exits_1(tmp_path, capsys):
    assert main(["funbat", str(tmp_path / "nope.csv"), "--coords", "a", "--target",
                 "b"]) == 1
    assert "nope.csv" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(FUNBAT_DATASETS))
def test_loaders_return_consistent_splits(name):
    split = load_funbat(name, 0)
    K = len(split.shape)
    assert split.coords_train.shape == (split.y_train.shape[0], K)
    assert split.indices_test.shape == (split.y_test.shape[0], K)
    assert np.all((split.coords_train >= 0) & (split.coords_train <= 1))
    assert np.all(split.indices_train.max(0) < np.array(split.shape))
    assert len(split.mode_names) == K
    if name != "synthetic":  # bin centres
        expected = (split.indices_train + 0.5) / np.array(split.shape)
        assert np.allclose(split.coords_train, expected)


def test_synthetic_truth_matches_the_formula():
    grids, truth = load_funbat_truth()
    x, y = grids
    assert np.allclose(truth[0] / np.abs(truth[0]).max(),
                       (np.sin(2 * np.pi * x) ** 2 * np.cos(2 * np.pi * x))
                       / np.abs(np.sin(2 * np.pi * x) ** 2 * np.cos(2 * np.pi * x)).max())
    assert np.corrcoef(truth[1], np.exp(-2 * y) * np.sin(1.5 * np.pi * y))[0, 1] > 0.999


def test_loader_bad_arguments():
    with pytest.raises(InvalidParameterError, match="'name'.*'mnist'"):
        load_funbat("mnist")
    with pytest.raises(InvalidParameterError, match="'fold'.*Got 5"):
        load_funbat("us_temp", 5)
    with pytest.raises(InvalidParameterError, match="'fold'.*Got 1"):
        load_funbat("synthetic", 1)
    with pytest.raises(InvalidParameterError, match="'coordinates'.*'exact'"):
        load_funbat("beijing_pm25_50x50x150", coordinates="exact")
    with pytest.raises(InvalidParameterError, match="'coordinates'.*beijing_pm25_50x50x150"):
        load_funbat("us_temp", coordinates="full_resolution")


@pytest.mark.parametrize("fold", [0, 3])
def test_full_resolution_coordinates_of_the_coarse_split(fold):
    coarse = load_funbat("beijing_pm25_50x50x150", fold)
    split = load_funbat("beijing_pm25_50x50x150", fold, coordinates="full_resolution")
    fine = load_funbat("beijing_pm25", fold)
    # same entries and bins as the coarse file; only the coordinates change
    for name in ("y_train", "y_test", "indices_train", "indices_test"):
        assert np.array_equal(getattr(split, name), getattr(coarse, name))
    assert split.shape == coarse.shape
    # every coordinate is a full-resolution bin centre inside (or at the edge of) its
    # coarse bin
    n_fine, n_coarse = np.array(fine.shape), np.array(coarse.shape)
    for c, idx in ((split.coords_train, coarse.indices_train),
                   (split.coords_test, coarse.indices_test)):
        b = c * n_fine - 0.5
        assert np.allclose(b, np.round(b))
        assert np.all(np.abs(c - (idx + 0.5) / n_coarse) <= 0.5 / n_coarse + 0.5 / n_fine
                      + 1e-9)
    # a one-to-one matching: the (coordinates, target) multiset is the fine file's
    got = np.column_stack([np.concatenate([split.coords_train, split.coords_test]),
                           np.concatenate([split.y_train, split.y_test])])
    want = np.column_stack([np.concatenate([fine.coords_train, fine.coords_test]),
                            np.concatenate([fine.y_train, fine.y_test])])
    assert np.array_equal(got[np.lexsort(got.T)], want[np.lexsort(want.T)])
    # the coordinates are not the coarse bin centres
    assert np.mean(np.abs(split.coords_train - coarse.coords_train) > 1e-9) > 0.9
