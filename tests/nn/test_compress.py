"""compress / plan: budgets, reports, every method x allocation, errors, atomicity."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from _nn_models import CTR, MLP, SmallCNN, gen, mlp_batches, seeded, tiny_bert, token_batches
from torch import nn

from rankfold._errors import ConvergenceError, InvalidParameterError
from rankfold.nn import (
    ALLOCATIONS,
    METHODS,
    LowRankConv2d,
    LowRankEmbedding,
    LowRankLinear,
    compress,
    plan,
)
from rankfold.nn.calibration import collect_stats, prepare_calibration


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _loss(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    return model(batch).pow(2).mean()


def _run_one(method: str, allocation: str) -> None:
    model = seeded(MLP(), 3)
    data = mlp_batches(3)
    with torch.no_grad():
        ref = model(data[0])
    rep = compress(model, ratio=0.4, method=method, allocation=allocation, calibration=data,
                   loss_fn=_loss)
    assert rep.applied and rep.method == method and rep.allocation == allocation
    assert 0.36 <= rep.param_ratio <= 0.46
    assert rep.params_after == sum(
        sum(p.numel() for p in model.get_submodule(r.name).parameters()) for r in rep.layers)
    with torch.no_grad():
        out = model(data[0])
    assert torch.isfinite(out).all()
    assert float((out - ref).norm() / ref.norm()) < 1.0
    # "nystrom" prunes the fc1/fc2 pair (smaller nn.Linear layers) instead of factorizing
    assert any(isinstance(m, LowRankLinear) or getattr(m, "rankfold_pruned", False)
               for m in model.modules())


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_runs(method: str) -> None:
    _run_one(method, "energy")


@pytest.mark.parametrize("allocation", sorted(ALLOCATIONS))
def test_every_allocation_runs(allocation: str) -> None:
    _run_one("whiten", allocation)


@pytest.mark.slow
@pytest.mark.parametrize(("method", "allocation"),
                         list(itertools.product(sorted(METHODS), sorted(ALLOCATIONS))))
def test_every_method_and_allocation_runs(method: str, allocation: str) -> None:
    _run_one(method, allocation)


def test_report_parameters_and_ranks(mlp: nn.Module) -> None:
    rep = compress(mlp, ratio=0.5, method="svd", allocation="uniform")
    for r in rep.layers:
        m, n = r.shape
        assert r.params_after == r.rank * (m + n) + m
        assert r.flops_after == r.rank * (m + n) and r.flops_before == m * n
        assert r.params_after < r.params_before
    full = sum(r.full_rank for r in rep.layers)
    assert rep.rank_ratio == pytest.approx(1 - sum(r.rank for r in rep.layers) / full)
    assert abs(rep.param_ratio - 0.5) < 0.03
    text = rep.table()
    assert "parameters" in text and "ranks" in text and "fc1" in text
    d = rep.to_dict()
    assert d["param_ratio_removed"] == rep.param_ratio
    assert d["rank_ratio_removed"] == rep.rank_ratio


def test_data_aware_beats_svd_and_update_beats_whiten() -> None:
    model, _ = tiny_bert()
    data = token_batches(4, pad=True)

    def err(method: str) -> float:
        m = copy.deepcopy(model)
        compress(m, ratio=0.5, method=method, allocation="uniform", calibration=data)
        num = den = 0.0
        with torch.no_grad():
            for b in data:
                ref = model(**b).last_hidden_state
                num += float((m(**b).last_hidden_state - ref).pow(2).sum())
                den += float(ref.pow(2).sum())
        return num / den

    e_svd, e_w, e_u = err("svd"), err("whiten"), err("whiten_update")
    assert e_w < e_svd
    assert e_u < e_w


def test_whitening_layer_error_matches_output(mlp: nn.Module) -> None:
    data = mlp_batches(2)
    rep = plan(mlp, ratio=0.5, method="whiten", allocation="uniform", calibration=data,
               verbose=False)
    dense = copy.deepcopy(mlp)
    compress(mlp, ratio=0.5, method="whiten", allocation="uniform", calibration=data)
    X = torch.cat(data)
    with torch.no_grad():
        y = dense.fc1(X).double()
        y2 = mlp.fc1(X).double()
    expect = float((y - y2).norm() / y.norm())
    got = next(r.rel_error for r in rep.layers if r.name == "fc1")
    assert got == pytest.approx(expect, rel=1e-3)


def test_plan_changes_nothing(mlp: nn.Module, capsys: pytest.CaptureFixture) -> None:
    before = _state(mlp)
    rep = plan(mlp, ratio=0.4, calibration=mlp_batches(2))
    assert not rep.applied and rep.model is None
    assert _same_state(before, _state(mlp))
    assert "fc1" in capsys.readouterr().out


def test_params_budget_and_inplace_false(mlp: nn.Module) -> None:
    total = sum(p.numel() for p in mlp.parameters())
    before = _state(mlp)
    rep = compress(mlp, params_budget=int(total * 0.7), calibration=mlp_batches(2),
                   inplace=False)
    assert _same_state(before, _state(mlp))
    assert sum(p.numel() for p in rep.model.parameters()) <= int(total * 0.7)
    assert rep.model_params_after == sum(p.numel() for p in rep.model.parameters())


def test_targets_and_exclude(mlp: nn.Module) -> None:
    rep = plan(mlp, ratio=0.4, method="svd", targets=["fc1", "fc2"], verbose=False)
    assert [r.name for r in rep.layers] == ["fc1", "fc2"]
    rep = plan(mlp, ratio=0.4, method="svd", targets=r"fc\d", exclude=["fc2"], verbose=False)
    assert [r.name for r in rep.layers] == ["fc1"]
    # a regex must match the whole name
    with pytest.raises(InvalidParameterError, match=r"targets='fc'"):
        plan(mlp, ratio=0.4, method="svd", targets="fc", verbose=False)


def test_bad_input_errors(mlp: nn.Module) -> None:
    data = mlp_batches(2)
    for bad in (0, 1, 1.5, -0.2, float("nan")):
        with pytest.raises(InvalidParameterError, match=r"'ratio' parameter of compress"):
            compress(mlp, ratio=bad, method="svd")
    with pytest.raises(InvalidParameterError, match="exactly one of 'ratio' or "):
        compress(mlp, method="svd")
    with pytest.raises(InvalidParameterError, match="No module of the model matches targets="
                                                    r"\['nope', 'q_proj'\]"):
        compress(mlp, ratio=0.4, method="svd", targets=["nope", "q_proj"])
    with pytest.raises(InvalidParameterError, match="'method' parameter.*'whiten'"):
        compress(mlp, ratio=0.4, method="wihten", calibration=data)
    with pytest.raises(InvalidParameterError, match="'allocation' parameter.*'welore'"):
        compress(mlp, ratio=0.4, allocation="x", calibration=data)
    with pytest.raises(InvalidParameterError, match="needs calibration data"):
        compress(mlp, ratio=0.4, method="whiten")
    with pytest.raises(InvalidParameterError, match="'calibration' parameter.*cannot run"):
        compress(mlp, ratio=0.4, calibration=[torch.randn(4, 7)])
    with pytest.raises(InvalidParameterError, match="'fwsvd' of compress needs a loss"):
        compress(mlp, ratio=0.4, method="fwsvd", calibration=data)
    with pytest.raises(InvalidParameterError, match="'tokenizer' must be given"):
        compress(mlp, ratio=0.4, calibration=["some text", "more text"])
    with pytest.raises(InvalidParameterError, match="'params_budget' parameter"):
        compress(mlp, params_budget=10**9, method="svd")
    with pytest.raises(InvalidParameterError, match="'model' parameter"):
        compress("model", ratio=0.4)


def test_failure_leaves_model_untouched(mlp: nn.Module) -> None:
    before = _state(mlp)
    bad = [torch.full((8, 48), float("nan"))]
    with pytest.raises((ConvergenceError, InvalidParameterError)):
        compress(mlp, ratio=0.4, method="whiten", calibration=bad)
    assert _same_state(before, _state(mlp))
    assert not any(isinstance(m, LowRankLinear) for m in mlp.modules())


def test_failure_during_swap_is_rolled_back(mlp: nn.Module) -> None:
    class Guard(nn.Module):
        def __init__(self, inner: nn.Linear) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x)

        def __setattr__(self, name: str, value: object) -> None:
            if name == "inner" and "inner" in self._modules:
                raise RuntimeError("read-only")
            super().__setattr__(name, value)

    mlp.head = Guard(mlp.head)
    before = _state(mlp)
    with pytest.raises(RuntimeError, match="read-only"):
        compress(mlp, ratio=0.3, method="svd", allocation="uniform")
    assert _same_state(before, _state(mlp))
    assert isinstance(mlp.fc1, nn.Linear)


def test_sensitivity_with_and_without_loss(mlp: nn.Module) -> None:
    data = mlp_batches(3)
    a = plan(mlp, ratio=0.4, allocation="sensitivity", calibration=data, verbose=False)
    b = plan(mlp, ratio=0.4, allocation="sensitivity", calibration=data, loss_fn=_loss,
             verbose=False)
    for rep in (a, b):
        assert 0.38 <= rep.param_ratio <= 0.45


def test_calibration_forms_and_streaming(mlp: nn.Module) -> None:
    data = mlp_batches(3)
    mods = {"fc1": mlp.fc1, "fc2": mlp.fc2}
    one = collect_stats(mlp, mods, prepare_calibration(data, mlp))
    # a generator is materialised; tight memory makes one pass per layer
    two = collect_stats(mlp, mods, prepare_calibration((b for b in data), mlp),
                        max_stats_bytes=1)
    loader = torch.utils.data.DataLoader(torch.cat(data), batch_size=64)
    three = collect_stats(mlp, mods, prepare_calibration(loader, mlp))
    for n in mods:
        torch.testing.assert_close(one[n].gram, two[n].gram)
        torch.testing.assert_close(one[n].gram, three[n].gram)
        assert one[n].count == 3 * 64
    X = torch.cat(data).double()
    torch.testing.assert_close(one["fc1"].gram, X.t() @ X, rtol=1e-5, atol=1e-6)


def test_stats_of_layers_with_equal_shapes_do_not_mix() -> None:
    model, _ = tiny_bert()
    data = token_batches(2, pad=True)
    names = ["encoder.layer.0.attention.self.query", "encoder.layer.0.attention.output.dense",
             "encoder.layer.1.attention.self.key"]
    mods = {n: model.get_submodule(n) for n in names}
    seen: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    hooks = [mods[n].register_forward_hook(
        lambda m, a, o, n=n: seen[n].append(a[0].detach().clone())) for n in names]
    with torch.no_grad():
        for b in data:
            model(**b)
    for h in hooks:
        h.remove()
    st = collect_stats(model, mods, prepare_calibration(data, model))
    for n in names:
        X = torch.cat([x[b["attention_mask"].bool()] for x, b in zip(seen[n], data,
                                                                       strict=True)]).double()
        torch.testing.assert_close(st[n].gram, X.t() @ X, rtol=1e-5, atol=1e-5)


def test_padding_is_ignored() -> None:
    model, _ = tiny_bert()
    data = token_batches(1, pad=True)
    calib = prepare_calibration(data, model)
    st = collect_stats(model, {"encoder.layer.0.attention.self.query":
                               model.encoder.layer[0].attention.self.query}, calib)
    assert next(iter(st.values())).count == int(data[0]["attention_mask"].sum())


def test_texts_with_tokenizer(mlp: nn.Module) -> None:
    class Tok:
        def __call__(self, texts, **kw):
            g = gen(len(texts))
            return {"x": torch.randn(len(texts), 48, generator=g)}

    class Wrap(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x)

    model = Wrap(mlp)
    rep = compress(model, ratio=0.3, calibration=["a b", "c d", "e"] * 10, tokenizer=Tok(),
                   batch_size=8)
    assert rep.applied


def test_cnn_and_ctr_models() -> None:
    cnn = seeded(SmallCNN(), 4)
    imgs = [torch.randn(8, 3, 8, 8, generator=gen(i)) for i in range(2)]
    rep = compress(cnn, ratio=0.3, targets=["conv2", "fc"], method="whiten",
                   allocation="uniform", calibration=imgs)
    assert isinstance(cnn.conv2, LowRankConv2d)
    assert torch.isfinite(cnn(imgs[0])).all() and rep.param_ratio > 0.25

    ctr = seeded(CTR(), 5)
    ids = [torch.randint(0, 200, (32, 4), generator=gen(i)) for i in range(3)]
    ref = ctr(ids[0])
    rep = compress(ctr, ratio=0.3, targets=r"emb|mlp\.[024]", calibration=ids,
                   allocation="uniform")
    assert isinstance(ctr.emb, LowRankEmbedding)
    assert torch.isfinite(ctr(ids[0])).all()
    assert float((ctr(ids[0]) - ref).norm() / ref.norm()) < 0.9
