"""Small models and calibration data for the rankfold.nn tests (no download)."""

from __future__ import annotations

import pytest
import torch
from torch import nn


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class MLP(nn.Module):
    def __init__(self, d: int = 48, h: int = 96, out: int = 8, dtype=torch.float32) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d, h, dtype=dtype)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(h, d, dtype=dtype)
        self.head = nn.Linear(d, out, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.fc2(self.act(self.fc1(x))) + x)


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1, stride=2)
        self.fc = nn.Linear(32 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.fc(x.flatten(1))


class CTR(nn.Module):
    """Embeddings of categorical fields + an MLP (a DLRM-like click model)."""

    def __init__(self, vocab: int = 200, d: int = 16, fields: int = 4) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.mlp = nn.Sequential(nn.Linear(fields * d, 64), nn.ReLU(), nn.Linear(64, 32),
                                 nn.ReLU(), nn.Linear(32, 1))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.emb(ids).flatten(1)).squeeze(-1)


def mlp_batches(n: int = 4, rows: int = 64, d: int = 48, seed: int = 0,
                dtype=torch.float32) -> list[torch.Tensor]:
    g = gen(seed)
    # correlated inputs: whitening must matter
    mix = torch.randn(d, d, generator=g, dtype=torch.float64) * torch.logspace(
        0, -2, d, dtype=torch.float64)
    return [(torch.randn(rows, d, generator=g, dtype=torch.float64) @ mix).to(dtype)
            for _ in range(n)]


@pytest.fixture
def mlp() -> MLP:
    m = MLP()
    g = gen(3)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return m.eval()


def seeded(model: nn.Module, seed: int = 0) -> nn.Module:
    g = gen(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.1)
    return model.eval()


def tiny_bert():
    from transformers import BertConfig, BertModel

    cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    return seeded(BertModel(cfg), 1), cfg


def tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=100, n_positions=64, n_embd=32, n_layer=2, n_head=2)
    return seeded(GPT2LMHeadModel(cfg), 2), cfg


def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                      max_position_embeddings=64)
    return seeded(LlamaForCausalLM(cfg), 3), cfg


def token_batches(n: int = 3, b: int = 4, t: int = 16, vocab: int = 100, seed: int = 0,
                  pad: bool = False) -> list[dict[str, torch.Tensor]]:
    g = gen(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(1, vocab, (b, t), generator=g)
        mask = torch.ones(b, t, dtype=torch.long)
        if pad:
            mask[0, t // 2:] = 0
        out.append({"input_ids": ids, "attention_mask": mask})
    return out
