"""Item-item neighbourhood correction of a factor model's predictions.

A factor model with strong regularisation captures the global structure of a ratings
matrix and misses local item-item effects. The correction predicts the factor model's
residual at ``(u, i)`` from the user's residuals on the items most similar to ``i``
(the "kNN on the residuals of a factorization" of Bell and Koren; Koren 2008)::

    r_hat_ui = factor_ui + scale * sum_j s_ij e_uj / (sum_j |s_ij| + reg)

``j`` runs over the ``k`` items rated by ``u`` that are most similar to ``i`` among the
``M`` stored neighbours of ``i``; ``e_uj = r_uj - factor_uj`` are the training residuals
of the factor model. The similarities are cosines of the centred ratings
``z_ui = r_ui - mu`` (independent of the factor model), shrunk towards 0 for pairs with
few common raters ``n_ij``::

    s_ij = sum_u z_ui z_uj / (||z_i|| ||z_j||) * n_ij / (n_ij + shrink)

Choices measured by 5-fold CV on the training part of the MovieLens-100K split
(benchmarks/completion_tune.py --neighbors): norms over all raters of each item beat
the correlation over the common raters only (Koren 2010's "pearson_baseline", which
also costs four sparse products instead of two); centring by the global mean only beat
removing damped user and item biases first; the factor model's residuals ``e`` and the
baseline residuals gave the same gain (within 0.0004). A model that fits its training
ratings exactly has zero residuals, hence zero correction.

References
----------
Bell, Koren. Scalable collaborative filtering with jointly derived neighborhood
interpolation weights. ICDM 2007. Koren. Factorization meets the neighborhood: a
multifaceted collaborative filtering model. KDD 2008. Koren. Factor in the neighbors:
scalable and accurate collaborative filtering. TKDD 4(1), 2010 (Sec. 2.2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

__all__ = ["ItemNeighbors", "item_neighbors", "neighbor_correction", "SIM_SHRINK",
           "N_STORED", "SIM_WORK"]

#: shrinkage of the similarities towards 0 for items with few common raters
SIM_SHRINK = 30.0
#: similarity work cap (|Omega| n_items multiply-adds); above it a random subset of users
#: is used (MovieLens-100K: 1.3e8 for its 80% split, ml-latest-small: 7.3e8, both below;
#: 4e9 is about a second here)
SIM_WORK = 4e9
#: neighbours stored per item (at least; ``max(N_STORED, 4 k)``)
N_STORED = 50


@dataclass
class ItemNeighbors:
    """The ``M`` most similar items of every item, best first.

    Attributes
    ----------
    index : ndarray (n_items, M) int64
        Neighbour indexes (-1 pads items with fewer than ``M`` other items).
    sim : ndarray (n_items, M) float64
        Their similarities, non-increasing along each row.
    """

    index: np.ndarray
    sim: np.ndarray


def item_neighbors(rows: np.ndarray, cols: np.ndarray, z: np.ndarray,
                   shape: tuple[int, int], *, n_neighbors: int, shrink: float = SIM_SHRINK,
                   max_work: float = SIM_WORK, rng: np.random.Generator | None = None,
                   chunk_elems: int = 1 << 22) -> ItemNeighbors:
    """The ``n_neighbors`` most similar items of every item (shrunk cosine of ``z``).

    Column blocks of the similarity matrix are sparse x dense float32 products
    (``Z^T`` times a dense block of columns of ``Z``, and the same for the 0/1
    pattern): work ``|Omega| n_items`` multiply-adds at BLAS-like speed (sparse x sparse
    products were 10-100x slower per multiply-add here), memory two blocks of
    ``chunk_elems``, never ``n_items^2``. When ``|Omega| n_items > max_work``, only a
    random subset of users (drawn with ``rng``) with ``n_ratings n_items <= max_work``
    enters the similarities, which bounds the cost on large data.
    """
    m, n = shape
    M = max(1, min(int(n_neighbors), n - 1))
    if rows.shape[0] * float(n) > max_work:
        counts = np.bincount(rows, minlength=m)
        rng = rng if rng is not None else np.random.default_rng(0)
        perm = rng.permutation(m)
        n_keep = max(1, int(np.searchsorted(np.cumsum(counts[perm]) * float(n), max_work,
                                            side="right")))
        keep = np.zeros(m, dtype=bool)
        keep[perm[:n_keep]] = True
        sel = keep[rows]
        rows, cols, z = rows[sel], cols[sel], z[sel]
    z64 = z.astype(np.float64)
    norm = np.sqrt(np.bincount(cols, z64 * z64, n))
    inv = np.divide(1.0, norm, out=np.zeros_like(norm), where=norm > 0)
    Z = sp.csr_matrix(((z64 * inv[cols]).astype(np.float32), (rows, cols)), shape=(m, n))
    B = sp.csr_matrix((np.ones(z64.shape[0], dtype=np.float32), (rows, cols)), shape=(m, n))
    ZT, BT = Z.T.tocsr(), B.T.tocsr()
    Zc, Bc = Z.tocsc(), B.tocsc()
    index = np.full((n, M), -1, dtype=np.int64)
    sim = np.zeros((n, M), dtype=np.float64)
    step = max(1, chunk_elems // max(n, m, 1))
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        s = torch.from_numpy(np.ascontiguousarray((ZT @ Zc[:, lo:hi].toarray()).T))
        cnt = torch.from_numpy(np.ascontiguousarray((BT @ Bc[:, lo:hi].toarray()).T))
        if shrink > 0:
            s *= cnt / (cnt + shrink)
        s[torch.arange(hi - lo), torch.arange(lo, hi)] = -torch.inf  # not its own neighbour
        vals, part = torch.topk(s, M, dim=1)
        vals = vals.double().numpy()
        ok = np.isfinite(vals)
        index[lo:hi] = np.where(ok, part.numpy(), -1)
        sim[lo:hi] = np.where(ok, vals, 0.0)
    return ItemNeighbors(index, sim)


def neighbor_correction(nb: ItemNeighbors, seen_indptr: np.ndarray, seen_indices: np.ndarray,
                        seen_resid: np.ndarray, rows: np.ndarray, cols: np.ndarray, *,
                        k: int, reg: float, scale: float, table_elems: int = 1 << 22,
                        chunk: int = 1 << 12) -> np.ndarray:
    """The correction at index pairs (a negative index = unknown: correction 0).

    Pairs are grouped by user; for a block of users a dense ``(users, n_items)`` table
    maps each rated item to its position in the training ratings, so checking the
    ``M`` stored neighbours of a pair's item is ``M`` table lookups.

    Parameters
    ----------
    nb : ItemNeighbors
    seen_indptr, seen_indices : ndarray int64
        The training ratings per user (CSR: user ``u`` rated
        ``seen_indices[seen_indptr[u]:seen_indptr[u + 1]]``).
    seen_resid : ndarray
        The factor model's training residual of each of those ratings.
    rows, cols : ndarray int64
        User and item indexes of the pairs.
    k : int
        Neighbours used per pair (the most similar rated ones).
    reg : float
        Added to the sum of absolute weights (damps pairs with few or weak neighbours).
    scale : float
        Multiplies the interpolated residual.
    """
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    out = np.zeros(rows.shape[0], dtype=np.float64)
    n_users, n_items = seen_indptr.shape[0] - 1, nb.index.shape[0]
    known = np.flatnonzero((rows >= 0) & (cols >= 0) & (rows < n_users) & (cols < n_items))
    if known.size == 0 or k <= 0:
        return out
    known = known[np.argsort(rows[known], kind="stable")]
    users = rows[known]
    block = max(1, table_elems // max(n_items, 1))
    pos_dtype = np.int32 if seen_indices.shape[0] < 2**31 - 1 else np.int64
    table = np.full((min(block, n_users), n_items), -1, dtype=pos_dtype)
    b_lo = 0
    while b_lo < known.size:
        u0 = int(users[b_lo])
        u1 = min(n_users, u0 + block)
        b_hi = int(np.searchsorted(users, u1, side="left"))
        lo_s, hi_s = int(seen_indptr[u0]), int(seen_indptr[u1])
        local = np.repeat(np.arange(u1 - u0), np.diff(seen_indptr[u0:u1 + 1]))
        table[local, seen_indices[lo_s:hi_s]] = np.arange(lo_s, hi_s, dtype=pos_dtype)
        for c_lo in range(b_lo, b_hi, chunk):
            sel = known[c_lo:min(b_hi, c_lo + chunk)]
            cand = nb.index[cols[sel]]
            pos = table[(rows[sel] - u0)[:, None], np.maximum(cand, 0)]
            present = (pos >= 0) & (cand >= 0)
            use = present & (np.cumsum(present, axis=1) <= k)
            w = np.where(use, nb.sim[cols[sel]], 0.0)
            e = np.where(use, seen_resid[np.maximum(pos, 0)], 0.0)
            den = np.abs(w).sum(1) + reg
            num = (w * e).sum(1)
            out[sel] = scale * np.divide(num, den, out=np.zeros_like(num), where=den > 0)
        table[local, seen_indices[lo_s:hi_s]] = -1
        b_lo = b_hi
    return out
