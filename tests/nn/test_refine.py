"""compress(..., refine_epochs=k): the opt-in distillation of the factors."""

from __future__ import annotations

import functools

import pytest
import torch
from _nn_models import (
    MLP,
    SmallCNN,
    gen,
    mlp_batches,
    seeded,
    tiny_bert,
    tiny_gpt2,
    token_batches,
)
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
    rc = main(["compress", str(d), "--ratio", "0.4", "--calibration", str(texts),
               "--refine-epochs", "1", "--refine", "blockwise", "--out", str(tmp_path / "o3"),
               "--format", "json"])
    assert rc == 0
    assert 0.35 < json.loads(capsys.readouterr().out)["param_ratio_removed"] < 0.45


# ------------------------------------------------------------------ refine="blockwise"

def _bert_rel(model: nn.Module, dense: nn.Module, batches: list) -> float:
    num = den = 0.0
    with torch.no_grad():
        for b in batches:
            y, yd = model(**b).last_hidden_state, dense(**b).last_hidden_state
            k = b["attention_mask"].bool()
            num += float(((y - yd)[k] ** 2).sum())
            den += float((yd[k] ** 2).sum())
    return num / den


BW = dict(ratio=0.85, method="svd", allocation="uniform", refine_lr=1e-2)


def test_blockwise_objective_decreases_and_model_error_falls(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("transformers")
    import copy

    model, _ = tiny_bert()
    dense = copy.deepcopy(model).eval()
    data = token_batches(4, pad=True)
    one_shot = copy.deepcopy(model)
    ra = compress(one_shot, calibration=data, **BW)
    seen: list = []

    def spy(*args, **kwargs):
        seen.append([q for q, _ in args[3]])
        out = refine_mod.refine_blocks.__wrapped__(*args, **kwargs)
        seen.append(out)
        return out

    spy.__wrapped__ = refine_mod.refine_blocks
    monkeypatch.setattr(refine_mod, "refine_blocks", spy)
    rb = compress(model, calibration=data, refine="blockwise", refine_epochs=10, **BW)
    blocks, hist = seen
    assert blocks == ["encoder.layer.0", "encoder.layer.1"]  # BertModel's layers, in order
    assert ra.ranks == rb.ranks and ra.params_after == rb.params_after
    # every block's objective falls (first pass -> last pass)
    assert len(hist) == 2 and all(len(h) == 10 and h[-1] < 0.5 * h[0] for h in hist), hist
    # and so does the model's output error (measured 0.17 -> 0.001)
    ea, eb = _bert_rel(one_shot, dense, data), _bert_rel(model, dense, data)
    assert eb < 0.1 * ea, (ea, eb)
    assert all(p.grad is None for p in model.parameters())


def test_blockwise_recomputed_targets_match_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("transformers")
    data = token_batches(3, pad=True)
    a, b = tiny_bert()[0], tiny_bert()[0]
    compress(a, calibration=data, refine="blockwise", refine_epochs=2, **BW)
    monkeypatch.setattr(refine_mod, "refine_blocks",
                        functools.partial(refine_mod.refine_blocks, max_target_bytes=0))
    compress(b, calibration=data, refine="blockwise", refine_epochs=2, **BW)
    with torch.no_grad():
        assert torch.allclose(a(**data[0]).last_hidden_state,
                              b(**data[0]).last_hidden_state, atol=1e-5)


def test_failed_blockwise_leaves_model_untouched(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("transformers")
    model, _ = tiny_bert()
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def nan_error(out, ref, batch):
        return (out - ref).sum() * float("nan")

    monkeypatch.setattr(refine_mod, "relative_error", nan_error)
    with pytest.raises(ConvergenceError, match="block-wise"):
        compress(model, ratio=0.5, calibration=token_batches(2), refine="blockwise",
                 refine_epochs=1)
    after = model.state_dict()
    assert set(after) == set(before)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(isinstance(m, LowRankLinear) for m in model.modules())


def test_bad_refine_mode(mlp: nn.Module) -> None:
    data = mlp_batches(2)
    with pytest.raises(InvalidParameterError, match="'refine'.*'blockwise'"):
        compress(mlp, ratio=0.5, calibration=data, refine_epochs=1, refine="blocks")
    # the MLP's layers are plain attributes: no blocks to refine one by one
    before = {k: v.clone() for k, v in mlp.state_dict().items()}
    with pytest.raises(InvalidParameterError, match="blockwise.*ModuleList"):
        compress(mlp, ratio=0.5, calibration=data, refine_epochs=1, refine="blockwise")
    assert isinstance(mlp.fc1, nn.Linear)
    assert all(torch.equal(before[k], v) for k, v in mlp.state_dict().items())
    # an nn.Sequential's children are blocks
    seq = seeded(nn.Sequential(nn.Linear(48, 48), nn.ReLU(), nn.Linear(48, 48)), 4)
    compress(seq, ratio=0.5, allocation="uniform", calibration=data, refine_epochs=2,
             refine="blockwise")
    assert isinstance(seq[0], LowRankLinear) and isinstance(seq[2], LowRankLinear)


def test_blockwise_gpt2_with_kv_cache() -> None:
    # GPT-2 passes its key/value cache to every block; blocks trained on recorded
    # inputs must not grow it (it is dropped from the recorded inputs)
    pytest.importorskip("transformers")
    import copy

    model, _ = tiny_gpt2()
    dense = copy.deepcopy(model).eval()
    data = token_batches(3, pad=True)
    one_shot = copy.deepcopy(model)
    compress(one_shot, calibration=data, **BW)
    compress(model, calibration=data, refine="blockwise", refine_epochs=10, **BW)

    def err(m: nn.Module) -> float:
        with torch.no_grad():
            pairs = [(m(**b).logits, dense(**b).logits) for b in data]
        return sum(float(((y - d) ** 2).sum()) for y, d in pairs) / sum(
            float((d ** 2).sum()) for _, d in pairs)

    assert err(model) < 0.2 * err(one_shot)  # measured 0.166 -> 0.006
