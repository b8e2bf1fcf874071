"""Rank allocation: the sensitivity greedy against a brute-force optimum."""

from __future__ import annotations

import itertools

import pytest
import torch

from rankfold.nn.allocation import Unit, sensitivity
from rankfold.nn.calibration import sym_gram


def _units(seed: int) -> list[Unit]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i, (m, n) in enumerate([(40, 30), (50, 20), (30, 30)]):
        s = torch.sort(torch.rand(min(m, n), generator=g, dtype=torch.float64) * 3,
                       descending=True).values * torch.linspace(1, 0.1, min(m, n),
                                                                dtype=torch.float64)
        max_rank = (m * n - 1) // (m + n)
        out.append(Unit(f"l{i}", m * n, m + n, 0, max_rank, s))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sensitivity_greedy_matches_brute_force(seed: int) -> None:
    units = _units(seed)
    gains = {"l0": 1.0, "l1": 5.0, "l2": 0.2}

    def tail(u: Unit, r: int) -> float:
        return float((u.spectrum[r:] ** 2).sum())

    def measure(name: str, r: int) -> float:  # exactly the model the allocation assumes
        u = next(x for x in units if x.name == name)
        return gains[name] * tail(u, r)

    target = int(0.6 * sum(u.dense_params for u in units))
    got = sensitivity(units, target, measure=measure, grid=(0.5,))
    params = sum(u.params(got[u.name]) for u in units)
    assert params <= target

    def loss(alloc: dict) -> float:
        return sum(0.0 if alloc[u.name] is None else gains[u.name] * tail(u, alloc[u.name])
                   for u in units)

    def best(budget: int) -> float:
        return min(loss(a) for a in (
            dict(zip([u.name for u in units], c, strict=True)) for c in itertools.product(
                *[[None, *range(1, u.max_rank + 1)] for u in units]))
            if sum(u.params(a[u.name]) for u in units) <= budget)

    # greedy along convex hulls is optimal at its own parameter count, which is within
    # one rank step of the budget: never worse than the optimum two rank steps lower
    step = max(u.per_rank for u in units)
    assert loss(got) <= best(target - 2 * step) * (1 + 1e-12)
    assert loss(got) >= best(target) * (1 - 1e-12)
    uniform_loss = loss({u.name: u.rank_for_params(0.6 * u.dense_params) for u in units})
    assert loss(got) < uniform_loss


def test_sensitivity_keeps_sensitive_layers() -> None:
    units = _units(0)
    gains = {"l0": 100.0, "l1": 1.0, "l2": 1.0}
    got = sensitivity(units, int(0.7 * sum(u.dense_params for u in units)),
                      measure=lambda n, r: gains[n] * float(r < 99), grid=(0.5,))
    frac = {u.name: u.params(got[u.name]) / u.dense_params for u in units}
    assert frac["l0"] >= max(frac["l1"], frac["l2"])


@pytest.mark.parametrize("n", [7, 300, 1100])
def test_sym_gram(n: int) -> None:
    X = torch.randn(50, n, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    torch.testing.assert_close(sym_gram(X), X.t() @ X)


@pytest.mark.parametrize("which", ["bert", "gpt2_loss", "llama"])
def test_sensitivity_measure_replays_blocks_exactly(which: str) -> None:
    """The measure replays the dense blocks before the layer: same value as a full run."""
    import importlib

    from _nn_models import tiny_bert, tiny_gpt2, tiny_llama, token_batches

    from rankfold.nn.calibration import main_output, prepare_calibration, substitute
    from rankfold.nn.methods import svd_method

    C = importlib.import_module("rankfold.nn.compress")
    model = {"bert": tiny_bert, "gpt2_loss": tiny_gpt2, "llama": tiny_llama}[which]()[0]
    model.eval()
    data = token_batches(2, pad=which == "bert")
    if which == "gpt2_loss":
        data = [{**b, "labels": b["input_ids"]} for b in data]
    calib = prepare_calibration(data, model)
    mods = {n: m for n, m in C.find_targets(model, None, None, func="t").items()}
    decomps = {n: svd_method(C._context(n, m, None, None, {})) for n, m in mods.items()}
    loss_fn = (lambda mdl, b: mdl(**b).loss) if which == "gpt2_loss" else None
    measure = C._make_measure(model, mods, decomps, calib, 2, loss_fn, "t")
    last = [n for n in mods if ".1." in n][-1]  # a layer of the second block
    for name in (next(iter(mods)), last):
        rep = C.build_module(mods[name], decomps[name].factors(1))
        with torch.no_grad():
            if which == "gpt2_loss":
                base = sum(float(model(**b).loss) for b in data) / 2
                with substitute({mods[name]: rep}):
                    cur = sum(float(model(**b).loss) for b in data) / 2
                want = cur - base
            else:
                refs = [main_output(model(**b)) for b in data]
                with substitute({mods[name]: rep}):
                    outs = [main_output(model(**b)) for b in data]
                want = sum(float(((o - r).double() ** 2).sum()) for o, r in zip(
                    outs, refs, strict=True)) / sum(float((r.double() ** 2).sum())
                                                    for r in refs)
        got = measure(name, 1)
        assert got == pytest.approx(want, rel=1e-3, abs=1e-12)
        assert abs(want) > 1e-10
    # blocks are left with their own forward
    assert all("forward" not in m.__dict__ for m in model.modules())


def test_sensitivity_nonpositive_loss_change_is_not_free() -> None:
    units = _units(1)
    vals = {"l0": -1e-3, "l1": 2.0, "l2": 1.0}
    got = sensitivity(units, int(0.6 * sum(u.dense_params for u in units)),
                      measure=lambda n, r: vals[n] * float((units[int(n[1])].spectrum[r:] ** 2
                                                           ).sum()), grid=(0.5,))
    assert got["l0"] is None or got["l0"] > 1


def test_sensitivity_measure_no_replay_for_shared_blocks() -> None:
    """A block run twice per forward (shared weights) is not replayed: exact values."""
    import importlib

    from torch import nn

    from rankfold.nn.calibration import prepare_calibration, substitute
    from rankfold.nn.methods import svd_method

    C = importlib.import_module("rankfold.nn.compress")

    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            g = torch.Generator().manual_seed(0)
            self.layers = nn.ModuleList([nn.Linear(12, 12), nn.Linear(12, 12)])
            for p in self.parameters():
                p.data = torch.randn(p.shape, generator=g) * 0.5

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for _ in range(2):  # the stack is applied twice
                for blk in self.layers:
                    x = torch.tanh(blk(x))
            return x

    model = Shared()
    data = [torch.randn(20, 12, generator=torch.Generator().manual_seed(1))]
    mods = {"layers.0": model.layers[0], "layers.1": model.layers[1]}
    decomps = {n: svd_method(C._context(n, m, None, None, {})) for n, m in mods.items()}
    measure = C._make_measure(model, mods, decomps, prepare_calibration(data, model), 1,
                              None, "t")
    rep = C.build_module(mods["layers.1"], decomps["layers.1"].factors(1))
    with torch.no_grad():
        ref = model(data[0])
        with substitute({mods["layers.1"]: rep}):
            out = model(data[0])
    want = float(((out - ref).double() ** 2).sum() / (ref.double() ** 2).sum())
    assert measure("layers.1", 1) == pytest.approx(want, rel=1e-6)
