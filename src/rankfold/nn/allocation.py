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
``sensitivity``  global greedy on the measured calibration-loss increase per layer and
                 rank (or the change of the model's output when there is no loss) [2]_
===============  =========================================================================

References
----------
.. [1] Jaiswal et al., "From GaLore to WeLore: How low-rank weights non-uniformly emerge
   from low-rank gradients", 2024.
.. [2] Yuan et al., "ASVD", 2023 (sensitivity-based truncation rank search).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .._errors import InvalidParameterError

__all__ = ["Unit", "ALLOCATIONS", "get_allocation", "SENSITIVITY_GRID"]

#: fractions of a layer's parameters kept, tried by "sensitivity"
SENSITIVITY_GRID = (0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85)


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


def sensitivity(units: list[Unit], target: int, *, measure: Measure | None = None
                ) -> Allocation:
    """Global greedy on measured loss increase per parameter saved (ASVD-style).

    Each layer is tried alone at the ranks keeping :data:`SENSITIVITY_GRID` of its
    parameters; starting from the dense model, the step with the smallest increase of
    the loss per parameter removed is taken until the budget is met. The measured
    increase is made monotone in the rank (a smaller rank never counts as better).
    """
    if measure is None:
        raise InvalidParameterError("The 'sensitivity' allocation needs calibration data.")
    levels: dict[str, list[tuple[int, int, float]]] = {}
    for u in units:
        ranks = sorted({u.rank_for_params(f * u.dense_params) for f in SENSITIVITY_GRID},
                       reverse=True)
        steps, worst = [], 0.0
        for r in ranks:
            worst = max(worst, float(measure(u.name, r)))
            steps.append((r, u.params(r), worst))
        levels[u.name] = steps
    pos = {u.name: -1 for u in units}  # -1 = dense
    cur_params = {u.name: u.dense_params for u in units}
    cur_loss = {u.name: 0.0 for u in units}
    total = sum(cur_params.values())
    last = None
    while total > target:
        best, best_cost = None, math.inf
        for u in units:
            nxt = pos[u.name] + 1
            if nxt >= len(levels[u.name]):
                continue
            r, p, loss = levels[u.name][nxt]
            saved = cur_params[u.name] - p
            if saved <= 0:
                continue
            cost = (loss - cur_loss[u.name]) / saved
            if cost < best_cost:
                best, best_cost = u.name, cost
        if best is None:
            break
        pos[best] += 1
        last = best
        r, p, loss = levels[best][pos[best]]
        total -= cur_params[best] - p
        cur_params[best], cur_loss[best] = p, loss
    out: Allocation = {u.name: None if pos[u.name] < 0 else levels[u.name][pos[u.name]][0]
                       for u in units}
    if last is not None and out[last] is not None:
        # the grid overshoots the budget: give the slack back to the last layer lowered
        u = next(x for x in units if x.name == last)
        slack = target - _total(units, out)
        out[last] = min(u.max_rank, out[last] + max(0, slack) // u.per_rank)
    return out


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
