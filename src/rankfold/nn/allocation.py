"""Rank allocation under one parameter budget (registry ``ALLOCATIONS``).

Every allocation gets the compressible units (one per layer: its dense parameter
count, the parameters per unit of rank, the largest rank that still saves parameters,
and the method's spectrum) and a budget ``target`` (parameters the units may keep), and
returns ``name -> rank`` where ``None`` keeps the layer dense.

===============  =========================================================================
``uniform``      the same fraction of parameters kept in every layer
``energy``       one global threshold on the fraction of spectral energy (sum s_i^2) kept
``welore``       one global threshold on min-max normalised singular values [1]_; a layer
                 stays dense unless enough of its spectrum falls below it
``sensitivity``  each layer measured alone at one rank (change of the model's output,
                 or of ``loss_fn``), extrapolated to every rank with the layer's spectrum;
                 global greedy on the increase per parameter saved [2]_
===============  =========================================================================

References
----------
.. [1] Jaiswal et al., "From GaLore to WeLore: How low-rank weights non-uniformly emerge
   from low-rank gradients", 2024.
.. [2] Yuan et al., "ASVD", 2023 (sensitivity-based truncation rank search).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .._errors import InvalidParameterError

__all__ = ["Unit", "ALLOCATIONS", "get_allocation", "SENSITIVITY_GRID"]

#: fractions of a layer's parameters kept at which "sensitivity" measures each layer (the
#: loss at other ranks is extrapolated with the layer's spectrum; on MiniLM one point on
#: one batch matched the former 8 points on 2 batches: 0.894 cosine at 40% both)
SENSITIVITY_GRID = (0.5,)


@dataclass
class Unit:
    """One compressible layer as the allocator sees it."""

    name: str
    dense_params: int
    per_rank: int  # parameters added per unit of rank
    fixed: int  # parameters that do not depend on the rank (biases)
    max_rank: int  # largest rank that still saves parameters (>= 1)
    spectrum: torch.Tensor

    def params(self, rank: int | None) -> int:
        return self.dense_params if rank is None else rank * self.per_rank + self.fixed

    def rank_for_params(self, budget: float) -> int:
        return max(1, min(self.max_rank, int((budget - self.fixed) // self.per_rank)))


Allocation = dict[str, int | None]
Measure = Callable[[str, int], float]


def _total(units: list[Unit], ranks: Allocation) -> int:
    return sum(u.params(ranks[u.name]) for u in units)


def uniform(units: list[Unit], target: int, *, measure: Measure | None = None) -> Allocation:
    """Every layer keeps the same fraction ``target / sum(dense)`` of its parameters."""
    keep = target / sum(u.dense_params for u in units)
    return {u.name: u.rank_for_params(keep * u.dense_params) for u in units}


def _threshold_search(units: list[Unit], target: int,
                      ranks_at: Callable[[float], Allocation], increasing: bool) -> Allocation:
    """Bisection on a scalar threshold t in [0, 1] for the largest kept budget <= target."""
    lo, hi = 0.0, 1.0
    # 'increasing': params grow with t; else they shrink
    best = ranks_at(0.0 if increasing else 1.0)
    for _ in range(60):
        mid = (lo + hi) / 2
        ranks = ranks_at(mid)
        fits = _total(units, ranks) <= target
        if fits:
            best = ranks
        if fits == increasing:
            lo = mid
        else:
            hi = mid
    if _total(units, best) > target:
        return uniform(units, target)
    return best


def energy(units: list[Unit], target: int, *, measure: Measure | None = None) -> Allocation:
    """Smallest rank keeping a fraction ``t`` of spectral energy, one ``t`` for all layers."""
    cums = []
    for u in units:
        e = u.spectrum.to(torch.float64) ** 2
        cums.append(torch.cumsum(e, 0) / e.sum().clamp_min(1e-300))

    def ranks_at(t: float) -> Allocation:
        out: Allocation = {}
        for u, c in zip(units, cums, strict=True):
            r = int(torch.searchsorted(c, torch.tensor(t, dtype=c.dtype, device=c.device))) + 1
            out[u.name] = None if r > u.max_rank else max(1, r)
        return out

    return _threshold_search(units, target, ranks_at, increasing=True)


def welore(units: list[Unit], target: int, *, measure: Measure | None = None) -> Allocation:
    """Min-max normalised singular values below one global threshold are pruned."""
    norms = []
    for u in units:
        s = u.spectrum.to(torch.float64)
        norms.append((s - s.min()) / (s.max() - s.min()).clamp_min(1e-300))

    def ranks_at(t: float) -> Allocation:
        out: Allocation = {}
        for u, s in zip(units, norms, strict=True):
            r = int((s > t).sum())
            out[u.name] = None if r > u.max_rank else max(1, r)
        return out

    return _threshold_search(units, target, ranks_at, increasing=False)


def _tails(u: Unit) -> torch.Tensor:
    """``tail[r]`` = sum of the squared spectrum from index ``r`` on (r = 0 .. len)."""
    e = u.spectrum.to(torch.float64).clamp_min(0) ** 2
    t = torch.flip(torch.cumsum(torch.flip(e, [0]), 0), [0])
    return torch.cat([t, t.new_zeros(1)])


def sensitivity(units: list[Unit], target: int, *, measure: Measure | None = None,
                grid: tuple[float, ...] | None = None) -> Allocation:
    """Global greedy on the calibration-loss increase per parameter saved (ASVD-style).

    Each layer is truncated alone to the rank keeping each fraction of :data:`grid`
    (default :data:`SENSITIVITY_GRID`) of its parameters and the increase of the loss
    (or of the model's output change) is measured. The increase at any other rank is
    modelled as ``s_l * tail_l(r)``, where ``tail_l(r)`` is the energy of the method's
    spectrum beyond rank ``r`` (for the whitening methods: exactly the layer's squared
    output error on the calibration data) and ``s_l`` the layer's measured gain (least
    squares through the origin on the measured points). Starting from the dense model,
    the rank step with the smallest increase per parameter saved is taken until the
    budget is met, over every rank of every layer (not only the measured ones).
    """
    if measure is None:
        raise InvalidParameterError("The 'sensitivity' allocation needs calibration data.")
    import heapq

    grid = SENSITIVITY_GRID if grid is None else grid
    gains: dict[str, float] = {}
    tails: dict[str, torch.Tensor] = {}
    for u in units:
        t = _tails(u)
        tails[u.name] = t
        num = den = 0.0
        for r in sorted({u.rank_for_params(f * u.dense_params) for f in grid}):
            tr = float(t[min(r, t.numel() - 1)])
            num += float(measure(u.name, r)) * tr
            den += tr * tr
        gains[u.name] = num / den if den > 0 else 0.0
    # a loss measured on few batches can "improve" under truncation (noise, first-order
    # terms): such a layer is not free to crush, it gets the smallest positive gain
    positive = [g for g in gains.values() if g > 0]
    floor = min(positive) if positive else 1.0
    gains = {k: g if g > 0 else floor for k, g in gains.items()}

    def loss(u: Unit, r: int) -> float:
        t = tails[u.name]
        return gains[u.name] * float(t[min(r, t.numel() - 1)])

    # per layer, the lower convex hull of (parameters saved, modelled loss) over
    # dense, max_rank, ..., 1: the greedy walks along hull edges (cheapest slope first),
    # so a rank that saves few parameters (dense -> max_rank) cannot block the others
    hulls: dict[str, list[tuple[int, float, int | None]]] = {}
    for u in units:
        hull: list[tuple[int, float, int | None]] = [(0, 0.0, None)]
        for r in range(u.max_rank, 0, -1):
            pt = (u.dense_params - u.params(r), loss(u, r), r)
            if pt[0] <= hull[-1][0]:
                continue
            while len(hull) >= 2:
                (x0, y0, _), (x1, y1, _) = hull[-2], hull[-1]
                if (y1 - y0) * (pt[0] - x1) >= (pt[1] - y1) * (x1 - x0):
                    hull.pop()
                else:
                    break
            hull.append(pt)
        hulls[u.name] = hull
    by_name = {u.name: u for u in units}
    pos = {u.name: 0 for u in units}
    total = sum(u.dense_params for u in units)
    heap: list[tuple[float, int, str]] = []

    def push(i: int, name: str) -> None:
        h, k = hulls[name], pos[name]
        if k + 1 < len(h):
            heapq.heappush(heap, ((h[k + 1][1] - h[k][1]) / (h[k + 1][0] - h[k][0]), i,
                                  name))

    for i, u in enumerate(units):
        push(i, u.name)
    order = {u.name: i for i, u in enumerate(units)}
    last = None
    while total > target and heap:
        _, _, name = heapq.heappop(heap)
        h, k = hulls[name], pos[name]
        total -= h[k + 1][0] - h[k][0]
        pos[name] = k + 1
        last = name
        push(order[name], name)
    cur: Allocation = {u.name: hulls[u.name][pos[u.name]][2] for u in units}
    if last is not None and cur[last] is not None and total < target:
        u = by_name[last]  # give the overshoot back to the last layer lowered
        cur[last] = min(u.max_rank, cur[last] + (target - total) // u.per_rank)
    return cur


ALLOCATIONS: dict[str, Callable[..., Allocation]] = {
    "uniform": uniform,
    "energy": energy,
    "welore": welore,
    "sensitivity": sensitivity,
}


def get_allocation(name: str, func: str = "compress") -> Callable[..., Allocation]:
    """The registered allocation ``name`` (the error lists the valid names)."""
    from .._validation import check_option

    check_option(name, "allocation", func, ALLOCATIONS)
    return ALLOCATIONS[name]
