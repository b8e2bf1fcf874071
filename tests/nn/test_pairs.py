"""Method "nystrom" in MoDeGPT's MLP-pair form: pair detection, exactness, save/load."""

from __future__ import annotations

import copy

import pytest
import torch
from _nn_models import CTR, SmallCNN, gen, seeded, tiny_bert, tiny_gpt2, tiny_llama, token_batches
from torch import nn

from rankfold.nn import LowRankLinear, compress, load_compressed, save_compressed
from rankfold.nn.calibration import main_output, prepare_calibration
from rankfold.nn.pairs import find_pairs
from rankfold.nn.targets import find_targets


def _pairs(model: nn.Module, data) -> dict[str, list[str]]:
    mods = find_targets(model, None, None, func="t")
    calib = prepare_calibration(data, model, tokenizer=None, max_length=128, batch_size=16,
                                forward_fn=None, func="t")
    return find_pairs(model, mods, calib)


def _rel_err(ref: nn.Module, comp: nn.Module, data) -> float:
    num = den = 0.0
    with torch.no_grad():
        for b in data:
            run = (lambda m, b=b: m(**b)) if isinstance(b, dict) else (lambda m, b=b: m(b))
            y0, y1 = main_output(run(ref)), main_output(run(comp))
            num += float((y1 - y0).double().pow(2).sum())
            den += float(y0.double().pow(2).sum())
    return (num / den) ** 0.5


def _planted(d: int = 16, h: int = 48, k: int = 8) -> nn.Sequential:
    """ReLU MLP whose h intermediate channels are positive multiples of k of them."""
    g = gen(5)
    model = nn.Sequential(nn.Linear(d, h, dtype=torch.float64), nn.ReLU(),
                          nn.Linear(h, d, dtype=torch.float64))
    base_w = torch.randn(k, d, generator=g, dtype=torch.float64)
    base_b = torch.randn(k, generator=g, dtype=torch.float64)
    src = torch.arange(h) % k
    scale = torch.where(torch.arange(h) < k, 1.0, 0.1).to(torch.float64) * (
        1 + 0.5 * torch.rand(h, generator=g, dtype=torch.float64))
    with torch.no_grad():
        model[0].weight.copy_(base_w[src] * scale[:, None])
        model[0].bias.copy_(base_b[src] * scale)
        model[2].weight.copy_(torch.randn(d, h, generator=g, dtype=torch.float64))
        model[2].bias.copy_(torch.randn(d, generator=g, dtype=torch.float64))
    return model.eval()


def test_planted_low_rank_intermediate_is_exact() -> None:
    d, h, k = 16, 48, 8
    model = _planted(d, h, k)
    g = gen(6)
    data = [torch.randn(64, d, generator=g, dtype=torch.float64) for _ in range(3)]
    assert _pairs(model, data) == {"2": ["0"]}
    per = d + 1 + d  # parameters per kept channel (U row + bias, D column)
    total = sum(p.numel() for p in model.parameters())
    budget = total - (h * per + d) + k * per + d + per // 2
    comp = copy.deepcopy(model)
    rep = compress(comp, params_budget=budget, method="nystrom", allocation="uniform",
                   calibration=data)
    assert rep.ranks == {"0": k, "2": k}
    assert comp[0].weight.shape == (k, d) and comp[2].weight.shape == (d, k)
    assert rep.params_after == k * per + d
    assert _rel_err(model, comp, data) < 1e-10
    held_out = [torch.randn(32, d, generator=gen(7), dtype=torch.float64)]
    assert _rel_err(model, comp, held_out) < 1e-10
    # one channel fewer cannot be exact; the per-layer form at the same k is not exact
    comp2 = copy.deepcopy(model)
    compress(comp2, params_budget=budget - per, method="nystrom", allocation="uniform",
             calibration=data)
    assert _rel_err(model, comp2, data) > 1e-4


@pytest.mark.parametrize(("make", "targets", "expected"), [
    (tiny_bert, r".*layer\.\d+\.(intermediate|output)\.dense",
     {"encoder.layer.0.output.dense": ["encoder.layer.0.intermediate.dense"]}),
    (tiny_gpt2, r".*mlp\.c_(fc|proj)",
     {"transformer.h.0.mlp.c_proj": ["transformer.h.0.mlp.c_fc"]}),
])
def test_pair_form_beats_per_layer(make, targets, expected) -> None:
    model, _ = make()
    data = token_batches(3)
    pairs = _pairs(model, data)
    for d, us in expected.items():  # attention layers never pair (tokens mix)
        assert pairs[d] == us
    assert all("attention" not in n and "attn" not in n
               for d, us in pairs.items() for n in [d, *us])

    def run(pair: bool, **budget) -> tuple[float, int, int]:
        m = copy.deepcopy(model)
        rep = compress(m, method="nystrom", allocation="uniform", calibration=data,
                       targets=targets, method_options={"pairs": pair}, **budget)
        return _rel_err(model, m, data), rep.params_after, rep.model_params_after

    e_layer, p_layer, total_layer = run(False, ratio=0.4)
    # the pair form at the parameter count the per-layer form reached
    e_pair, p_pair, _ = run(True, params_budget=total_layer + 1)
    assert p_pair <= p_layer
    assert e_pair < 0.7 * e_layer


@pytest.mark.parametrize("make", [tiny_gpt2, tiny_llama])
def test_pair_save_load_identical(make, tmp_path) -> None:
    model, cfg = make()
    data = token_batches(2)
    rep = compress(model, ratio=0.4, method="nystrom", allocation="uniform",
                   calibration=data)
    pruned = [n for n, m in model.named_modules() if getattr(m, "rankfold_pruned", False)]
    assert pruned and all(rep.ranks[n] is not None for n in pruned)
    n_after = sum(p.numel() for p in model.parameters())
    assert n_after == rep.model_params_after
    save_compressed(model, tmp_path)
    fresh, _ = make()
    back = load_compressed(fresh, tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(main_output(model(**data[0])), main_output(back(**data[0])))
    assert sum(p.numel() for p in back.parameters()) == n_after


def test_sensitivity_allocation_with_pairs() -> None:
    model, _ = tiny_bert()
    data = token_batches(2)
    ref = copy.deepcopy(model)
    rep = compress(model, ratio=0.3, method="nystrom", calibration=data)
    assert rep.allocation == "sensitivity"
    assert abs(rep.param_ratio - 0.3) < 0.05
    assert _rel_err(ref, model, data) < 1.0


def test_models_without_pairs_fall_back_to_per_layer() -> None:
    cnn = seeded(SmallCNN(), 2)
    x = [torch.randn(8, 3, 8, 8, generator=gen(1)) for _ in range(2)]
    compress(cnn, ratio=0.3, method="nystrom", calibration=x, allocation="uniform",
             targets=["fc"])
    assert isinstance(cnn.fc, LowRankLinear)
    # a residual MLP: fc2 feeds the head through "+ x": only fc1/fc2 pair
    from _nn_models import MLP, mlp_batches

    mlp = seeded(MLP(), 4)
    data = mlp_batches(2)
    assert _pairs(mlp, data) == {"fc2": ["fc1"]}
    ctr = seeded(CTR(), 3)
    ids = [torch.randint(0, 200, (16, 4), generator=gen(2)) for _ in range(2)]
    assert _pairs(ctr, ids) == {"mlp.2": ["mlp.0"]}
