"""ALS's item-neighbourhood correction: exact formula, fold-in, persistence, edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from rankfold.completion import ALS, UnknownIdWarning, train_test_split
from rankfold.completion._data import to_ratings
from rankfold.completion._neighbors import SIM_SHRINK, item_neighbors

from .conftest import incoherent_problem, ratings_frame


def _reference(df, est, base, users, items, k, reg, scale, M):
    """Brute-force correction from the definitions (dense, float64)."""
    R = to_ratings(df)
    m, n = R.shape
    Z = np.zeros((m, n))
    O = np.zeros((m, n))
    Z[R.rows, R.cols] = R.values - R.values.mean()
    O[R.rows, R.cols] = 1.0
    norm = np.sqrt((Z * Z).sum(0))
    cnt = O.T @ O
    S = (Z.T @ Z) / np.outer(norm, norm) * cnt / (cnt + SIM_SHRINK)
    # training residuals of the factor model (same factors: the fit does not depend on
    # the correction)
    E = np.zeros((m, n))
    E[R.rows, R.cols] = R.values - base.predict(R.user_ids[R.rows], R.item_ids[R.cols],
                                                clip=False)
    out = []
    uidx = {u: j for j, u in enumerate(R.user_ids)}
    iidx = {i: j for j, i in enumerate(R.item_ids)}
    for u, i in zip(users, items, strict=True):
        u, i = uidx[u], iidx[i]
        s = S[i].copy()
        s[i] = -np.inf
        top = np.argsort(-s, kind="stable")[:M]           # the M stored neighbours
        rated = [j for j in top if O[u, j]][:k]           # the k most similar rated ones
        w = S[i, rated]
        out.append(scale * (w * E[u, rated]).sum() / (np.abs(w).sum() + reg))
    return np.array(out)


def test_correction_matches_the_definition() -> None:
    df = ratings_frame(50, 30, 3, 0.5, seed=2, noise=0.3)
    est = ALS(3, n_iter=4, neighbors=3, neighbor_reg=0.7, neighbor_scale=1.3,
              dtype="float64", generator=0).fit(df)
    base = ALS(3, n_iter=4, neighbors=0, dtype="float64", generator=0).fit(df)
    rng = np.random.default_rng(0)
    users = rng.choice(df.user.unique(), 40)
    items = rng.choice(df.item.unique(), 40)
    got = est.predict(users, items, clip=False) - base.predict(users, items, clip=False)
    ref = _reference(df, est, base, users, items, 3, 0.7, 1.3,
                     est.neighbors_.index.shape[1])
    assert np.abs(ref).max() > 1e-3          # the correction is not trivially zero
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-7)
    # recommend ranks by the corrected scores
    rec = est.recommend(100, len(est.item_ids_), exclude_seen=False)
    every = est.predict(np.full(len(est.item_ids_), 100), est.item_ids_, clip=False)
    np.testing.assert_allclose(np.sort(rec.scores)[::-1], np.sort(every)[::-1], rtol=1e-10)


def test_blocked_similarities_agree_with_one_block() -> None:
    df = ratings_frame(80, 60, 3, 0.3, seed=4, noise=0.5)
    R = to_ratings(df)
    z = R.values - R.values.mean()
    a = item_neighbors(R.rows, R.cols, z, R.shape, n_neighbors=10)
    b = item_neighbors(R.rows, R.cols, z, R.shape, n_neighbors=10,
                       chunk_elems=500)  # blocks of 6 items
    np.testing.assert_allclose(a.sim, b.sim, rtol=1e-5, atol=1e-7)
    # the same neighbours up to ties in float32
    assert (a.index == b.index).mean() > 0.95
    assert np.all(np.diff(a.sim, axis=1) <= 1e-12)
    assert not np.any(a.index == np.arange(R.shape[1])[:, None])   # never itself
    # fewer items than stored neighbours: padded with -1 / 0
    small = item_neighbors(R.rows, R.cols, z, R.shape, n_neighbors=500)
    assert small.index.shape[1] == R.shape[1] - 1


def test_exact_low_rank_fit_gets_no_correction() -> None:
    M, obs = incoherent_problem(40, 30, 2, 0.6, seed=0)
    est = ALS(2, reg=1e-12, biases=False, n_iter=200, tol=0.0, generator=0).fit(obs)
    assert est.neighbors_ is not None
    rows, cols = np.nonzero(np.isnan(obs))
    np.testing.assert_allclose(est.predict(rows, cols, clip=False), M[rows, cols],
                               rtol=0, atol=1e-6 * np.abs(M).max())


def test_neighbors_off_keeps_the_factor_model() -> None:
    df = ratings_frame()
    est = ALS(3, n_iter=3, neighbors=0, generator=0).fit(df)
    assert est.neighbors_ is None
    m = est.model_
    p = est.predict(df.user[:5], df.item[:5], clip=False)
    u = np.array([est._user_index[x] for x in df.user[:5]])
    i = np.array([est._item_index[x] for x in df.item[:5]])
    ref = (m.global_mean + m.user_bias[u] + m.item_bias[i]
           + (m.user_factors[u] * m.item_factors[i]).sum(1)).numpy()
    np.testing.assert_allclose(p, ref, rtol=1e-12)


def test_fold_in_user_gets_a_correction_from_their_residuals() -> None:
    df = ratings_frame(120, 50, 3, 0.5, seed=3, noise=0.3)
    new, rest = df[df.user == 100], df[df.user != 100]
    est = ALS(3, n_iter=10, generator=0).fit(rest)
    n_before = est._seen_resid.size
    fi = est.fold_in(dict(zip(new.item, new.rating, strict=True)), user=100)
    # appended in item-index order: the residuals under the folded-in factors
    idx = np.array([est._item_index[x] for x in new.item])
    order = np.argsort(idx)
    m = est.model_
    fitted = (m.global_mean + fi.bias + m.item_bias[idx].numpy()
              + m.item_factors[idx].numpy() @ fi.factors)
    np.testing.assert_allclose(est._seen_resid[n_before:],
                               (new.rating.to_numpy() - fitted)[order], rtol=1e-10)
    items = est.item_ids_
    p = est.predict(np.full(items.size, 100), items, clip=False)
    plain = (m.global_mean + fi.bias + m.item_bias.numpy() + m.item_factors.numpy()
             @ fi.factors)
    assert np.isfinite(p).all() and np.abs(p - plain).max() > 1e-4
    assert len(est.recommend(100, 3).items) == 3


def test_unknown_ids_and_save_load_keep_the_correction(tmp_path) -> None:
    df = ratings_frame(noise=0.3)
    train, test = train_test_split(df, 0.3, generator=1)
    est = ALS(3, n_iter=3, generator=0).fit(train)
    with pytest.warns(UnknownIdWarning, match="2 of 3"):
        p = est.predict([100, 99999, 100], ["i1", "i1", "nope"])
    assert np.isfinite(p).all()
    est.save(tmp_path / "m.npz")
    back = ALS.load(tmp_path / "m.npz")
    assert back.neighbors_ is not None
    np.testing.assert_array_equal(back.predict(test.user, test.item),
                                  est.predict(test.user, test.item))
    off = ALS(3, n_iter=3, neighbors=0, generator=0).fit(train)
    off.save(tmp_path / "off.npz")
    assert ALS.load(tmp_path / "off.npz").neighbors_ is None
    with np.load(tmp_path / "off.npz") as z:
        assert "neighbor_index" not in z.files


def test_similarity_work_cap_uses_a_user_subset() -> None:
    df = ratings_frame(80, 60, 3, 0.5, seed=5, noise=0.5)
    R = to_ratings(df)
    z = R.values - R.values.mean()
    full = item_neighbors(R.rows, R.cols, z, R.shape, n_neighbors=10)
    counts = np.bincount(R.rows)
    cap = R.nnz * float(R.shape[1]) / 3
    a = item_neighbors(R.rows, R.cols, z, R.shape, n_neighbors=10, max_work=cap,
                       rng=np.random.default_rng(1))
    b = item_neighbors(R.rows, R.cols, z, R.shape, n_neighbors=10, max_work=cap,
                       rng=np.random.default_rng(1))
    np.testing.assert_array_equal(a.sim, b.sim)           # reproducible from the rng
    assert not np.allclose(a.sim, full.sim)               # a subset was used
    # the same as the similarities of the users it kept: rebuild from the same draw
    perm = np.random.default_rng(1).permutation(R.shape[0])
    n_keep = int(np.searchsorted(np.cumsum(counts[perm]) * float(R.shape[1]), cap,
                                 side="right"))
    keep = np.isin(R.rows, perm[:n_keep])
    ref = item_neighbors(R.rows[keep], R.cols[keep], z[keep], R.shape, n_neighbors=10)
    np.testing.assert_allclose(a.sim, ref.sim, rtol=1e-6, atol=1e-9)
