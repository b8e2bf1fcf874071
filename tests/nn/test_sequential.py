"""The closed-form sequential refit of ``whiten_update``: stages and brute force."""

from __future__ import annotations

import copy

import pytest
import torch
from _nn_models import gen, tiny_bert, tiny_gpt2, tiny_llama, token_batches
from torch import nn

from rankfold.nn import compress
from rankfold.nn._sequential import capture_block_inputs, layer_stages
from rankfold.nn.calibration import prepare_calibration


class Block(nn.Module):
    def __init__(self, d: int = 8, h: int = 16) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, h), nn.Linear(h, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(torch.relu(self.fc1(x)))


class Stack(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([Block(), Block()])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for b in self.blocks:
            x = b(x)
        return x


def _stages(model: nn.Module, blocks: nn.ModuleList, prefix: str, batches: list) -> list:
    calib = prepare_calibration(batches, model)
    args, kwargs, mask = capture_block_inputs(model, blocks[0], calib, 1)[0]
    names = {m: f"{prefix}.0.{n}" for n, m in blocks[0].named_modules()
             if isinstance(m, nn.Linear) or type(m).__name__ == "Conv1D"}
    return [[n.split(".0.", 1)[1] for n in st]
            for st in layer_stages(blocks[0], args, kwargs, mask, names)]


@pytest.mark.parametrize("which", ["bert", "gpt2", "llama"])
def test_stages_follow_the_data_flow(which: str) -> None:
    model, _ = {"bert": tiny_bert, "gpt2": tiny_gpt2, "llama": tiny_llama}[which]()
    batches = token_batches(1, pad=True)
    if which == "bert":
        got = _stages(model, model.encoder.layer, "encoder.layer", batches)
        want = [["attention.self.key", "attention.self.query", "attention.self.value"],
                ["attention.output.dense"], ["intermediate.dense"], ["output.dense"]]
    elif which == "gpt2":
        got = _stages(model, model.transformer.h, "transformer.h", batches)
        want = [["attn.c_attn"], ["attn.c_proj"], ["mlp.c_fc"], ["mlp.c_proj"]]
    else:
        got = _stages(model, model.model.layers, "model.layers", batches)
        want = [["self_attn.k_proj", "self_attn.q_proj", "self_attn.v_proj"],
                ["self_attn.o_proj"], ["mlp.gate_proj", "mlp.up_proj"], ["mlp.down_proj"]]
    assert got == want


def _lstsq_refit(Y: torch.Tensor, Xc: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    Z = torch.cat([Xc @ B.t(), torch.ones(Xc.shape[0], 1, dtype=Xc.dtype)], 1)
    return torch.linalg.lstsq(Z, Y).solution  # (r + 1, m): A^T and the bias


def test_later_layers_are_refitted_on_inputs_of_refitted_earlier_layers() -> None:
    model = Stack().double().eval()
    g = gen(5)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)
    batches = [torch.randn(64, 8, generator=g, dtype=torch.float64) for _ in range(3)]
    dense = copy.deepcopy(model)
    compress(model, ratio=0.5, method="whiten_update", allocation="uniform",
             calibration=batches, show_progress=False, method_options={"ridge": 0.0})
    X = torch.cat(batches)
    with torch.no_grad():
        h_d, h_c = X, X
        for bd, bc in zip(dense.blocks, model.blocks, strict=True):
            # stage 1 (fc1): dense outputs on dense inputs, regressed on the compressed
            # stream's inputs
            sol = _lstsq_refit(bd.fc1(h_d) - bd.fc1.bias, h_c, bc.fc1.first.weight)
            torch.testing.assert_close(bc.fc1.second.weight, sol[:-1].t(), atol=1e-7,
                                       rtol=1e-6)
            # stage 2 (fc2): its compressed-stream inputs come through the *refitted* fc1
            xd2 = torch.relu(bd.fc1(h_d))
            xc2 = torch.relu(bc.fc1(h_c))
            sol = _lstsq_refit(bd.fc2(xd2) - bd.fc2.bias, xc2, bc.fc2.first.weight)
            # (inputs through the dense fc1 instead would give another refit)
            other = _lstsq_refit(bd.fc2(xd2) - bd.fc2.bias, torch.relu(bd.fc1(h_c)),
                                 bc.fc2.first.weight)
            assert (other - sol).abs().max() > 1e-3
            torch.testing.assert_close(bc.fc2.second.weight, sol[:-1].t(), atol=1e-7,
                                       rtol=1e-6)
            torch.testing.assert_close(bc.fc2.second.bias, sol[-1] + bd.fc2.bias,
                                       atol=1e-7, rtol=1e-6)
            h_d, h_c = bd(h_d), bc(h_c)


def test_run_block_stops_after_the_hooked_layers() -> None:
    from rankfold.nn._sequential import run_block

    block = Block().eval()
    x = torch.randn(4, 8, generator=gen(1))
    ran: list[str] = []
    block.fc2.register_forward_pre_hook(lambda m, a: ran.append("fc2"))
    seen: list[torch.Tensor] = []
    out = run_block(block, (x,), {}, None, {block.fc1: lambda m, inp: seen.append(inp)},
                    stop_early=True)
    assert out is None and ran == [] and torch.equal(seen[0], x)
    full = run_block(block, (x,), {}, None, {block.fc1: lambda m, inp: None})
    assert ran == ["fc2"]
    torch.testing.assert_close(full, block(x))
