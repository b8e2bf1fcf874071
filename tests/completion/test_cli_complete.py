"""``rankfold complete`` end to end on a small ratings file."""

from __future__ import annotations

import json

import pandas as pd

from rankfold.cli.main import main

from .conftest import ratings_frame


def test_complete_with_split_out_recommend_and_save(tmp_path, capsys) -> None:
    csv = tmp_path / "ratings.csv"
    ratings_frame().to_csv(csv, index=False)
    out = tmp_path / "pred.csv"
    model = tmp_path / "m.npz"
    code = main(["complete", str(csv), "--rank", "3", "--test-size", "0.2", "--out",
                 str(out), "--recommend", "2", "--users", "100,101", "--save", str(model),
                 "--n-iter", "3", "--format", "json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["test_rmse"] > 0 and summary["iterations"] == 3
    assert len(summary["recommendations"]) == 4
    pred = pd.read_csv(out)
    assert list(pred.columns) == ["user", "item", "rating", "prediction"]
    assert pred.prediction.notna().all() and len(pred) == summary["test_ratings"]
    assert model.exists()


def test_complete_table_output_and_methods(tmp_path, capsys) -> None:
    csv = tmp_path / "r.tsv"
    ratings_frame().rename(columns={"user": "u", "item": "i", "rating": "r"}).to_csv(
        csv, sep="\t", index=False)
    for method in ("als", "altmin", "softimpute"):
        assert main(["complete", str(csv), "--method", method, "--rank", "2",
                     "--n-iter", "2"]) == 0
    assert "test_rmse" not in capsys.readouterr().out


def test_complete_usage_errors(tmp_path, capsys) -> None:
    csv = tmp_path / "ratings.csv"
    ratings_frame().to_csv(csv, index=False)
    assert main(["complete", str(tmp_path / "missing.csv")]) == 2
    assert main(["complete", str(csv), "--test-size", "2"]) == 2
    assert main(["complete", str(csv), "--columns", "a,b"]) == 2
    assert main(["complete", str(csv), "--columns", "user,item,stars"]) == 2
    assert main(["complete", str(csv), "--rank", "1000"]) == 2
    assert main(["complete", str(csv), "--solver", "lu"]) == 2
    err = capsys.readouterr().err
    assert "--columns" in err and "'rank'" in err and "'solver'" in err


def test_complete_neighbors_option(tmp_path, capsys) -> None:
    csv = tmp_path / "ratings.csv"
    ratings_frame(noise=0.3).to_csv(csv, index=False)
    got = {}
    for k in ("0", "5"):
        model = tmp_path / f"m{k}.npz"
        assert main(["complete", str(csv), "--rank", "3", "--test-size", "0.2", "--n-iter",
                     "3", "--neighbors", k, "--save", str(model), "--format", "json"]) == 0
        got[k] = json.loads(capsys.readouterr().out)["test_rmse"]
        from rankfold.completion import ALS

        assert ALS.load(model).neighbors == int(k)
    assert got["0"] != got["5"]
