"""save_compressed / load_compressed round trips, transformers models, corrupt files."""

from __future__ import annotations

import json

import pytest
import torch
from _nn_models import CTR, MLP, SmallCNN, gen, mlp_batches, seeded, tiny_gpt2, token_batches
from torch import nn

from rankfold._errors import DataFileError
from rankfold.nn import LowRankLinear, compress, load_compressed, save_compressed
from rankfold.nn.io import CONFIG_NAME


def _equal_outputs(a: nn.Module, b: nn.Module, x) -> None:
    with torch.no_grad():
        ya, yb = (a(x), b(x)) if isinstance(x, torch.Tensor) else (a(**x), b(**x))
    if not isinstance(ya, torch.Tensor):
        ya, yb = ya[0], yb[0]
    assert torch.equal(ya, yb)


def test_mlp_round_trip(tmp_path) -> None:
    model = seeded(MLP(), 1)
    data = mlp_batches(2)
    compress(model, ratio=0.5, method="afm", calibration=data)
    save_compressed(model, tmp_path)
    meta = json.loads((tmp_path / CONFIG_NAME).read_text())
    assert meta["modules"]["fc1"]["method"] == "afm"
    assert meta["modules"]["fc1"]["rank"] == model.fc1.rank
    back = load_compressed(MLP(), tmp_path)
    assert isinstance(back.fc1, LowRankLinear)
    assert back.fc1.rankfold_method == "afm"
    _equal_outputs(model, back.eval(), data[0])


def test_cnn_and_embedding_round_trip(tmp_path) -> None:
    cnn = seeded(SmallCNN(), 2)
    compress(cnn, ratio=0.3, targets=["conv2"], method="svd")
    save_compressed(cnn, tmp_path / "cnn")
    _equal_outputs(cnn, load_compressed(SmallCNN(), tmp_path / "cnn"),
                   torch.randn(2, 3, 8, 8, generator=gen()))
    ctr = seeded(CTR(), 3)
    compress(ctr, ratio=0.3, targets=["emb"], method="svd")
    save_compressed(ctr, tmp_path / "ctr")
    _equal_outputs(ctr, load_compressed(CTR(), tmp_path / "ctr"),
                   torch.randint(0, 200, (5, 4), generator=gen()))


def test_gpt2_tied_weights_from_saved_config(tmp_path) -> None:
    model, cfg = tiny_gpt2()
    data = token_batches(2)
    rep = compress(model, ratio=0.4, calibration=data)
    assert "lm_head" not in rep.ranks  # tied to the embedding: left alone
    assert isinstance(model.transformer.h[0].mlp.c_fc, LowRankLinear)  # Conv1D replaced
    save_compressed(model, tmp_path)
    assert (tmp_path / "config.json").exists()
    back = load_compressed(None, tmp_path)  # built from the saved transformers config
    assert back.lm_head.weight is back.transformer.wte.weight
    _equal_outputs(model, back.eval(), data[0])


def test_errors_leave_base_untouched(tmp_path) -> None:
    with pytest.raises(DataFileError, match="not a directory written by save_compressed"):
        load_compressed(MLP(), tmp_path)
    model = seeded(MLP(), 1)
    compress(model, ratio=0.5, method="svd")
    save_compressed(model, tmp_path)
    base = MLP()
    other = nn.Sequential(nn.Linear(48, 96))
    with pytest.raises(DataFileError, match="has no module 'fc1'"):
        load_compressed(other, tmp_path)
    assert isinstance(other[0], nn.Linear)
    wrong = MLP(d=48, h=64)  # fc1 has a different shape: weights do not fit
    with pytest.raises(Exception, match="size|shape|fit"):
        load_compressed(wrong, tmp_path)
    assert isinstance(wrong.fc1, nn.Linear)
    (tmp_path / CONFIG_NAME).write_text("{not json")
    with pytest.raises(DataFileError, match="not valid JSON"):
        load_compressed(base, tmp_path)
    assert isinstance(base.fc1, nn.Linear)


@pytest.mark.parametrize("build", ["bert", "gpt2", "llama"])
def test_transformers_compress_and_round_trip(build: str, tmp_path) -> None:
    from _nn_models import tiny_bert, tiny_llama

    model, _ = {"bert": tiny_bert, "gpt2": tiny_gpt2, "llama": tiny_llama}[build]()
    data = token_batches(2, pad=build == "bert")
    with torch.no_grad():
        ref = model(**data[0])[0]
    rep = compress(model, ratio=0.3, calibration=data)  # default method and allocation
    assert rep.applied and 0.25 < rep.param_ratio < 0.35
    assert sum(isinstance(m, LowRankLinear) for m in model.modules()) >= 4
    with torch.no_grad():
        out = model(**data[0])[0]
    assert torch.isfinite(out).all()
    assert float((out - ref).norm() / ref.norm()) < 0.5
    save_compressed(model, tmp_path)
    back = load_compressed(None, tmp_path)
    _equal_outputs(model, back.eval(), data[0])
