"""compress(..., refine_epochs=k): the opt-in distillation of the factors."""

from __future__ import annotations

import functools

import pytest
import torch
from _nn_models import MLP, SmallCNN, gen, mlp_batches, seeded, tiny_bert, token_batches
from torch import nn

import rankfold.nn._refine as refine_mod
from rankfold._errors import ConvergenceError, InvalidParameterError
from rankfold.nn import (
    LowRankConv2d,
    LowRankLinear,
    compress,
    load_compressed,
    save_compressed,
)
from rankfold.nn._refine import relative_error


def _rel(model: nn.Module, dense: nn.Module, batches: list) -> float:
    num = den = 0.0
    with torch.no_grad():
        for b in batches:
            y, yd = model(b), dense(b)
            num += float(((y - yd) ** 2).sum())
            den += float((yd ** 2).sum())
    return num / den


def test_relative_error_ignores_padding() -> None:
    g = gen(0)
    ref, out = torch.randn(2, 5, 3, generator=g), torch.randn(2, 5, 3, generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]])
    got = relative_error(out, ref, {"attention_mask": mask})
    keep = mask.bool()
    want = ((out[keep] - ref[keep]) ** 2).sum() / (ref[keep] ** 2).sum()
    assert torch.allclose(got, want)
    # garbage at the padded positions changes nothing
    out2 = out.clone()
    out2[~keep] = 1e6
    assert torch.allclose(relative_error(out2, ref, {"attention_mask": mask}), want)
    full = ((out - ref) ** 2).sum() / (ref ** 2).sum()
    assert torch.allclose(relative_error(out, ref, torch.zeros(2, 5)), full)


def test_refine_lowers_calibration_error_same_ranks(mlp: nn.Module) -> None:
    data = mlp_batches(4)
    dense = seeded(MLP(), 3)
    a, b = seeded(MLP(), 3), seeded(MLP(), 3)
    kw = dict(ratio=0.6, method="whiten", allocation="uniform", calibration=data,
              targets=["fc1", "fc2"])
    ra = compress(a, **kw)
    rb = compress(b, **kw, refine_epochs=20, refine_lr=1e-2)
    assert ra.ranks == rb.ranks and ra.params_after == rb.params_after
    # whitening fits each layer alone; training the two layers jointly on the model's
    # output must do much better on the calibration data (measured 0.029 -> 0.005)
    ea, eb = _rel(a, dense, data), _rel(b, dense, data)
    assert eb < 0.4 * ea, (ea, eb)
    # the report's layer errors are those of the refined factors
    assert [r.rel_error for r in ra.layers] != [r.rel_error for r in rb.layers]
    # the dense model's gradients and flags are untouched; no grads left on the factors
    assert all(p.grad is None for p in b.parameters())


def test_refine_keeps_requires_grad_flags_and_is_deterministic() -> None:
    data = mlp_batches(3)
    outs = []
    for _ in range(2):
        m = seeded(MLP(), 3)
        for p in m.parameters():
            p.requires_grad_(False)
        compress(m, ratio=0.5, allocation="uniform", calibration=data, refine_epochs=2,
                 generator=gen(5))
        assert isinstance(m.fc1, LowRankLinear)
        assert not m.fc1.second.weight.requires_grad
        with torch.no_grad():
            outs.append(m(data[0]))
    assert torch.equal(outs[0], outs[1])


def test_recomputed_targets_match_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    data = mlp_batches(3)
    a, b = seeded(MLP(), 3), seeded(MLP(), 3)
    compress(a, ratio=0.5, allocation="uniform", calibration=data, refine_epochs=2)
    monkeypatch.setattr(refine_mod, "refine",
                        functools.partial(refine_mod.refine, max_target_bytes=0))
    compress(b, ratio=0.5, allocation="uniform", calibration=data, refine_epochs=2)
    with torch.no_grad():
        assert torch.allclose(a(data[0]), b(data[0]), atol=1e-6)


def test_failed_refine_leaves_model_untouched(mlp: nn.Module,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    before = {k: v.clone() for k, v in mlp.state_dict().items()}

    def nan_error(out, ref, batch):
        return (out - ref).sum() * float("nan")

    monkeypatch.setattr(refine_mod, "relative_error", nan_error)
    with pytest.raises(ConvergenceError, match="refine"):
        compress(mlp, ratio=0.5, calibration=mlp_batches(2), refine_epochs=1)
    after = mlp.state_dict()
    assert set(after) == set(before)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(isinstance(m, LowRankLinear) for m in mlp.modules())


def test_bad_refine_arguments(mlp: nn.Module) -> None:
    with pytest.raises(InvalidParameterError, match="refine_epochs"):
        compress(mlp, ratio=0.5, method="svd", refine_epochs=1)
    with pytest.raises(InvalidParameterError, match="refine_epochs"):
        compress(mlp, ratio=0.5, calibration=mlp_batches(1), refine_epochs=-1)
    with pytest.raises(InvalidParameterError, match="refine_lr"):
        compress(mlp, ratio=0.5, calibration=mlp_batches(1), refine_epochs=1, refine_lr=0.0)
    with pytest.raises(InvalidParameterError, match="generator"):
        compress(mlp, ratio=0.5, calibration=mlp_batches(1), refine_epochs=1, generator=3)
    assert isinstance(mlp.fc1, nn.Linear)


def test_refined_bert_and_cnn_round_trip(tmp_path) -> None:
    pytest.importorskip("transformers")
    from transformers import BertModel

    model, cfg = tiny_bert()
    data = token_batches(3, pad=True)
    compress(model, ratio=0.5, calibration=data, refine_epochs=2)
    save_compressed(model, tmp_path / "bert")
    back = load_compressed(seeded(BertModel(cfg), 7), tmp_path / "bert").eval()
    with torch.no_grad():
        assert torch.equal(model(**data[0]).last_hidden_state,
                           back(**data[0]).last_hidden_state)

    cnn = seeded(SmallCNN(), 2)
    imgs = [torch.randn(4, 3, 8, 8, generator=gen(i)) for i in range(2)]
    before = cnn.conv2.weight.detach().clone()
    rep = compress(cnn, ratio=0.3, targets=["conv2", "fc"], allocation="uniform",
                   calibration=imgs, refine_epochs=2, refine_lr=1e-2)
    assert isinstance(cnn.conv2, LowRankConv2d)
    # the refined factors moved away from the one-shot ones (and are reported)
    assert rep.layers[0].rel_error > 0
    assert not torch.allclose(cnn.conv2.to_dense().weight, before)
    save_compressed(cnn, tmp_path / "cnn")
    back = load_compressed(seeded(SmallCNN(), 9), tmp_path / "cnn").eval()
    with torch.no_grad():
        assert torch.equal(cnn(imgs[0]), back(imgs[0]))


def test_cli_refine_epochs(tmp_path, capsys) -> None:
    import json

    from test_cli_nn import _model_dir

    from rankfold.cli.main import main

    d, texts = _model_dir(tmp_path)
    rc = main(["compress", str(d), "--ratio", "0.4", "--calibration", str(texts),
               "--refine-epochs", "1", "--out", str(tmp_path / "out"), "--format", "json"])
    assert rc == 0
    assert 0.35 < json.loads(capsys.readouterr().out)["param_ratio_removed"] < 0.45
    assert main(["compress", str(d), "--ratio", "0.4", "--refine-epochs", "1",
                 "--out", str(tmp_path / "o2")]) != 0
