"""The shared estimator interface: inputs, predict, recommend, fold_in, save/load, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from rankfold._errors import (
    DataFileError,
    InvalidParameterError,
    NotFittedError,
    RankfoldError,
    ShapeError,
)
from rankfold.completion import (
    ALS,
    AltMin,
    DuplicateRatingsWarning,
    SoftImpute,
    UnknownIdWarning,
    cross_validate,
    score,
    train_test_split,
)

from .conftest import incoherent_problem, ratings_frame

ESTIMATORS = [
    lambda: ALS(4, n_iter=5, generator=0),
    lambda: AltMin(3, n_iter=5, reg=1e-3, generator=0),
    lambda: SoftImpute(4, n_iter=10, generator=0),
]


# ---- inputs --------------------------------------------------------------------------
def test_all_input_kinds_give_the_same_model() -> None:
    df = ratings_frame(30, 20, 2, 0.6, seed=1)
    r = df.user.to_numpy() - 100
    c = np.array([int(s[1:]) for s in df.item])
    shape = (int(r.max()) + 1, int(c.max()) + 1)
    dense = np.full(shape, np.nan)
    dense[r, c] = df.rating.to_numpy()
    inputs = [
        pd.DataFrame({"user": r, "item": c, "rating": df.rating.to_numpy()}),
        sp.coo_matrix((df.rating.to_numpy(), (r, c)), shape=shape).tocsr(),
        (r, c, df.rating.to_numpy(), shape),
        dense,
        torch.from_numpy(dense),
    ]
    preds = []
    for X in inputs:
        est = ALS(2, n_iter=4, generator=0).fit(X)
        preds.append(est.predict(r[:50], c[:50]))
    for p in preds[1:]:
        np.testing.assert_allclose(p, preds[0], rtol=1e-10, atol=1e-10)


def test_dataframe_columns_default_first_three_and_named() -> None:
    df = ratings_frame()
    a = ALS(3, n_iter=3, generator=0).fit(df)
    renamed = df.rename(columns={"user": "u", "item": "movie", "rating": "stars"})
    b = ALS(3, n_iter=3, generator=0).fit(renamed)  # first three columns
    extra = renamed.assign(junk=1.0)[["junk", "stars", "u", "movie"]]
    c = ALS(3, n_iter=3, generator=0).fit(extra, columns=("u", "movie", "stars"))
    users, items = df.user.to_numpy()[:20], df.item.to_numpy()[:20]
    np.testing.assert_array_equal(a.predict(users, items), b.predict(users, items))
    np.testing.assert_array_equal(a.predict(users, items), c.predict(users, items))
    assert set(a.item_ids_.tolist()) == set(df.item)


def test_wrong_column_names() -> None:
    with pytest.raises(InvalidParameterError, match=r"'columns'.*\['nope'\]"):
        ALS(2).fit(ratings_frame(), columns=("user", "nope", "rating"))
    with pytest.raises(InvalidParameterError, match="'columns'"):
        ALS(2).fit(ratings_frame(), columns="user")
    with pytest.raises(InvalidParameterError, match="numeric rating column"):
        ALS(2).fit(ratings_frame().assign(rating="x"))


def test_nan_inf_and_empty_ratings() -> None:
    df = ratings_frame()
    bad = df.copy()
    bad.loc[3, "rating"] = np.nan
    with pytest.raises(InvalidParameterError, match="'X'.*NaN or infinite.*Got 1"):
        ALS(2).fit(bad)
    bad.loc[3, "rating"] = np.inf
    with pytest.raises(InvalidParameterError, match="NaN or infinite"):
        ALS(2).fit(bad)
    dense = np.full((5, 4), np.nan)
    dense[0, 0] = np.inf
    with pytest.raises(InvalidParameterError, match="infinite"):
        ALS(1).fit(dense)
    with pytest.raises(ShapeError, match="at least one"):
        ALS(2).fit(df.iloc[:0])
    with pytest.raises(ShapeError, match="at least one"):
        ALS(1).fit(np.full((4, 4), np.nan))
    with pytest.raises(InvalidParameterError, match="'X'"):
        ALS(2).fit([[1, 2, 3]])
    with pytest.raises(InvalidParameterError, match="missing user or item ids"):
        ALS(2).fit(df.assign(user=df.user.astype(float).where(df.index != 0)))


def test_rank_must_be_below_min_dimension() -> None:
    df = ratings_frame(10, 6, 2, 0.9)
    with pytest.raises(InvalidParameterError,
                       match=r"'rank' parameter of ALS must be an int in \[1, "
                             r"min\(n_users, n_items\) - 1=5\]. Got 6"):
        ALS(6).fit(df)
    with pytest.raises(InvalidParameterError, match="'rank'.*Got 0"):
        AltMin(0).fit(df)
    with pytest.raises(InvalidParameterError, match="'rank' parameter of SoftImpute"):
        SoftImpute(100).fit(df)


@pytest.mark.parametrize("kwargs, name", [
    ({"reg": -1.0}, "reg"), ({"solver": "qr"}, "solver"), ({"n_iter": 0}, "n_iter"),
    ({"biases": 1}, "biases"), ({"dtype": "int8"}, "dtype"), ({"duplicates": "x"},
                                                                "duplicates"),
    ({"generator": "seed"}, "generator"), ({"n_threads": 0}, "n_threads"),
    ({"neighbors": -1}, "neighbors"), ({"neighbors": 2.5}, "neighbors"),
    ({"neighbor_reg": -1.0}, "neighbor_reg"), ({"neighbor_reg": 0.0}, "neighbor_reg"),
    ({"neighbor_scale": -0.5}, "neighbor_scale"),
])
def test_bad_parameters_name_the_parameter(kwargs: dict, name: str) -> None:
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter of ALS"):
        ALS(2, **kwargs).fit(ratings_frame())


def test_unknown_solver_lists_the_valid_ones() -> None:
    with pytest.raises(InvalidParameterError,
                       match="'auto', 'cholesky', 'cholesky_bf16', 'sketch', 'cg'"):
        AltMin(2, solver="lu").fit(ratings_frame())


def test_duplicate_policy() -> None:
    df = pd.DataFrame({"user": [1, 1, 2, 2, 3, 3], "item": [1, 1, 1, 2, 2, 1],
                       "rating": [1.0, 3.0, 4.0, 5.0, 2.0, 3.0]})
    with pytest.raises(InvalidParameterError, match="1 duplicate.*duplicates='error'"):
        ALS(1, duplicates="error").fit(df)
    with pytest.warns(DuplicateRatingsWarning, match="1 duplicate"):
        mean = ALS(1, duplicates="mean", n_iter=2, generator=0).fit(df)
    with pytest.warns(DuplicateRatingsWarning):
        last = ALS(1, duplicates="last", n_iter=2, generator=0).fit(df)
    from rankfold.completion import to_ratings

    with pytest.warns(DuplicateRatingsWarning):
        r = to_ratings(df, duplicates="mean")
    assert r.nnz == 5 and 2.0 in r.values.tolist()
    with pytest.warns(DuplicateRatingsWarning):
        r = to_ratings(df, duplicates="last")
    assert 3.0 in r.values[(r.rows == 0) & (r.cols == 0)].tolist()
    assert mean.rating_range_ == (2.0, 5.0) and last.rating_range_ == (2.0, 5.0)


# ---- fitted interface ------------------------------------------------------------------
@pytest.mark.parametrize("make", ESTIMATORS, ids=["ALS", "AltMin", "SoftImpute"])
def test_unfitted_estimator_raises(make) -> None:
    est = make()
    for call in (lambda: est.predict([1], [1]), lambda: est.recommend(1),
                 lambda: est.fold_in({1: 1.0}), lambda: est.save("x.npz"),
                 lambda: est.user_factors_, lambda: est.reconstruct()):
        with pytest.raises(NotFittedError, match="not fitted yet"):
            call()


@pytest.mark.parametrize("make", ESTIMATORS, ids=["ALS", "AltMin", "SoftImpute"])
def test_unknown_ids_get_bias_only_predictions(make) -> None:
    df = ratings_frame()
    est = make().fit(df)
    with pytest.warns(UnknownIdWarning, match="2 of 3 pairs"):
        p = est.predict([100, 999, 100], ["i1", "i1", "zzz"])
    assert np.isfinite(p).all()
    lo, hi = est.rating_range_
    expected_unknown_user = np.clip(est.global_mean_ + float(est.item_bias_[
        est._item_index["i1"]]), lo, hi)
    assert p[1] == pytest.approx(expected_unknown_user)
    with pytest.raises(InvalidParameterError, match="on_unknown='error'"):
        est.predict([999], ["i1"], on_unknown="error")
    with pytest.raises(InvalidParameterError, match="'user' parameter of recommend"):
        est.recommend(999)
    with pytest.raises(InvalidParameterError, match="same length"):
        est.predict([100, 101], ["i1"])


def test_predict_accepts_a_frame_and_clips() -> None:
    df = ratings_frame()
    est = ALS(3, n_iter=3, generator=0).fit(df)
    a = est.predict(df[["user", "item"]])
    np.testing.assert_array_equal(a, est.predict(df.user, df.item))
    assert a.min() >= df.rating.min() and a.max() <= df.rating.max()
    raw = est.predict(df.user, df.item, clip=False)
    assert np.abs(raw - a).max() >= 0.0


def test_recommend_excludes_seen_items_and_ranks() -> None:
    df = ratings_frame()
    est = ALS(3, n_iter=3, generator=0).fit(df)
    rec = est.recommend(100, 5)
    seen = set(df.item[df.user == 100])
    assert len(rec.items) == 5 and not seen & set(rec.items.tolist())
    assert np.all(np.diff(rec.scores) <= 0)
    all_rec = est.recommend(100, len(est.item_ids_), exclude_seen=False)
    assert len(all_rec.items) == len(est.item_ids_)
    with pytest.raises(InvalidParameterError, match="'n' parameter of recommend"):
        est.recommend(100, 0)


def test_history_records_validation_rmse() -> None:
    df = ratings_frame(noise=0.3)
    train, test = train_test_split(df, 0.2, generator=0)
    est = ALS(3, n_iter=6, tol=0.0, neighbors=0, generator=0).fit(train, validation=test)
    h = est.history_
    assert len(h["loss"]) == len(h["val_rmse"]) == len(h["time"]) == 6
    assert h["val_rmse"][-1] == pytest.approx(score(est, test).rmse, rel=1e-9)
    assert "val_rmse_neighbors" not in h
    # with the neighbourhood correction: val_rmse is the factor model's, and the final
    # corrected RMSE is recorded separately
    nb = ALS(3, n_iter=6, tol=0.0, generator=0).fit(train, validation=test)
    assert nb.history_["val_rmse"] == h["val_rmse"]
    assert nb.history_["val_rmse_neighbors"] == [pytest.approx(score(nb, test).rmse,
                                                               rel=1e-9)]
    assert "val_rmse" not in ALS(3, n_iter=2, generator=0).fit(train).history_
    seen = []
    ALS(3, n_iter=3, tol=0.0, generator=0).fit(train, callback=lambda i, r: seen.append(i))
    assert seen == [0, 1, 2]


def test_fold_in_matches_refit() -> None:
    df = ratings_frame(120, 50, 3, 0.5, seed=3, noise=0.05)
    new = df[df.user == 100]
    rest = df[df.user != 100]
    full = ALS(3, n_iter=30, tol=0.0, generator=0).fit(df)
    part = ALS(3, n_iter=30, tol=0.0, generator=0).fit(rest)
    fi = part.fold_in(dict(zip(new.item, new.rating, strict=True)), user=100)
    assert fi.factors.shape == (3,)
    items = np.array(sorted(set(df.item)))
    ref = full.predict(np.full(items.size, 100), items)
    got = part.predict(np.full(items.size, 100), items)
    assert np.sqrt(np.mean((ref - got) ** 2)) < 0.1
    # the folded-in user is known now
    assert len(part.recommend(100, 3).items) == 3
    # folding in a known user's ratings reproduces its last half step exactly
    u = 101
    mine = df[df.user == u]
    again = full.fold_in((mine.item.to_numpy(), mine.rating.to_numpy()))
    assert np.all(np.isfinite(again.factors))
    with pytest.raises(InvalidParameterError, match="new user id"):
        full.fold_in({"i1": 3.0}, user=u)
    with pytest.raises(InvalidParameterError, match="same type"):
        full.fold_in({"i1": 3.0}, user="abc")
    with pytest.raises(InvalidParameterError, match="NaN"):
        full.fold_in({"i1": np.nan})
    with pytest.warns(UnknownIdWarning), pytest.raises(InvalidParameterError,
                                                       match="at least one known"):
        full.fold_in({"unknown": 3.0})


@pytest.mark.parametrize("make", ESTIMATORS, ids=["ALS", "AltMin", "SoftImpute"])
def test_save_load_round_trip_is_bit_for_bit(make, tmp_path) -> None:
    df = ratings_frame()
    est = make().fit(df)
    path = tmp_path / "model.npz"
    est.save(path)
    back = type(est).load(path)
    from rankfold.completion import CompletionEstimator

    back2 = CompletionEstimator.load(path)
    users, items = df.user.to_numpy(), df.item.to_numpy()
    np.testing.assert_array_equal(back.predict(users, items), est.predict(users, items))
    np.testing.assert_array_equal(back2.predict(users, items), est.predict(users, items))
    assert back.get_params() == est.get_params()
    assert back.history_ == est.history_
    np.testing.assert_array_equal(back.recommend(100, 4).items, est.recommend(100, 4).items)
    with np.load(path, allow_pickle=False) as z:  # no pickled objects inside
        assert "meta" in z.files


def test_load_errors(tmp_path) -> None:
    with pytest.raises(DataFileError, match="No model file"):
        ALS.load(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataFileError, match="not a rankfold completion model"):
        ALS.load(bad)
    np.savez(tmp_path / "other.npz", meta=np.frombuffer(b'{"format": "x"}', np.uint8))
    with pytest.raises(DataFileError, match="format"):
        ALS.load(tmp_path / "other.npz")
    est = SoftImpute(3, n_iter=3, generator=0).fit(ratings_frame())
    est.save(tmp_path / "si.npz")
    with pytest.raises(DataFileError, match="holds a SoftImpute model"):
        ALS.load(tmp_path / "si.npz")


# ---- dtype / device ---------------------------------------------------------------------
@pytest.mark.parametrize("np_dtype, torch_dtype", [(np.float32, torch.float32),
                                                   (np.float64, torch.float64)])
def test_dtype_follows_input(np_dtype, torch_dtype) -> None:
    M, obs = incoherent_problem(30, 20, 2, 0.6, 0, dtype=np_dtype)
    for est in (ALS(2, n_iter=3, generator=0), AltMin(2, n_iter=3, generator=0),
                SoftImpute(2, n_iter=3, generator=0)):
        est.fit(obs)
        assert est.user_factors_.dtype == torch_dtype
        assert est.reconstruct().dtype == np_dtype
        assert est.predict([0], [0]).dtype == np_dtype


def test_dtype_override_and_torch_in_torch_out() -> None:
    M, obs = incoherent_problem(30, 20, 2, 0.6, 0)
    est = ALS(2, n_iter=3, dtype="float32", generator=0).fit(obs)
    assert est.item_factors_.dtype == torch.float32
    t = torch.from_numpy(obs)
    est = AltMin(2, n_iter=3, generator=0).fit(t)
    out = est.reconstruct()
    assert isinstance(out, torch.Tensor) and out.device == t.device
    assert est.user_factors_.device == t.device


def test_same_seed_same_model_and_global_rng_untouched() -> None:
    df = ratings_frame()
    state = torch.random.get_rng_state()
    np_state = np.random.get_state()[1].copy()  # noqa: NPY002 (checking it is untouched)
    a = ALS(3, n_iter=3, generator=5).fit(df).predict(df.user, df.item)
    b = ALS(3, n_iter=3, generator=5).fit(df).predict(df.user, df.item)
    np.testing.assert_array_equal(a, b)
    assert torch.equal(state, torch.random.get_rng_state())
    assert np.array_equal(np_state, np.random.get_state()[1])  # noqa: NPY002


# ---- model selection ---------------------------------------------------------------------
def test_train_test_split_kinds_and_sizes() -> None:
    df = ratings_frame()
    tr, te = train_test_split(df, 0.25, generator=0)
    assert len(tr) + len(te) == len(df) and len(te) == round(0.25 * len(df))
    tr2, te2 = train_test_split(df, 0.25, generator=0)
    pd.testing.assert_frame_equal(te, te2)
    M, obs = incoherent_problem(20, 15, 2, 0.5, 0)
    a, b = train_test_split(obs, 0.2, generator=1)
    assert a.shape == obs.shape and np.isnan(a).sum() + np.isnan(b).sum() == \
        obs.size + np.isnan(obs).sum()
    s_tr, s_te = train_test_split(sp.csr_matrix(np.nan_to_num(obs)), 0.2, generator=1)
    assert s_tr.shape == obs.shape and s_tr.nnz + s_te.nnz == np.count_nonzero(
        np.nan_to_num(obs))
    with pytest.raises(InvalidParameterError, match="'test_size'"):
        train_test_split(df, 1.5)
    with pytest.raises(InvalidParameterError, match="'test_size'"):
        train_test_split(df.iloc[:3], 0.01)


def test_cross_validate_scores_each_fold() -> None:
    df = ratings_frame(noise=0.2)
    est = ALS(3, n_iter=3, generator=0)
    res = cross_validate(est, df, folds=4, generator=0)
    assert res.rmse.shape == res.mae.shape == res.fit_time.shape == (4,)
    assert np.all(res.mae <= res.rmse) and 0 < res.mean_rmse < 1.0
    assert not hasattr(est, "model_")  # the estimator passed in is not fitted
    with pytest.raises(InvalidParameterError, match="'folds'"):
        cross_validate(est, df, folds=1)
    with pytest.raises(InvalidParameterError, match="'estimator'"):
        cross_validate("als", df)


def test_errors_are_rankfold_errors() -> None:
    with pytest.raises(RankfoldError):
        ALS(2).fit(ratings_frame().iloc[:0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ALS(2, n_iter=2, generator=0).fit(ratings_frame())  # no stray warnings
