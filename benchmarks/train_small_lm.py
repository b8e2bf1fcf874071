"""Train a small GPT-2-style causal language model on real text, for benchmarks/nn.py.

The text is the shortened English Wikipedia dump shipped in gensim's test data
(``pip install --no-deps gensim==4.4.0``). A byte-level BPE tokenizer (4096 tokens) is
trained on the training paragraphs, then a 4-layer GPT-2 (d=128, FFN 512) for a fixed number of
steps. Everything is cached OUTSIDE the repository, in ``$RANKFOLD_CACHE`` or
``~/.cache/rankfold/small_gpt2`` (model + tokenizer via ``save_pretrained``, plus
``split.json`` naming the held-out paragraphs). Re-running with the cache present does nothing.

Usage: python benchmarks/train_small_lm.py [--steps 4000] [--force]

The benchmarked model was trained with ``--steps 4000`` (about 17 minutes on one core;
8.2M tokens, about 10 passes over the training text; held-out perplexity 83). The result
is not bit for bit reproducible: the model initialisation is not seeded.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

ARCHS = ("gpt2", "llama")


def cache_dir(arch: str = "gpt2", width: int = 128, layers: int = 4) -> Path:
    root = Path(os.environ.get("RANKFOLD_CACHE", Path.home() / ".cache" / "rankfold"))
    size = "" if (width, layers) == (128, 4) else f"_{width}x{layers}"
    return root / f"small_{arch}{size}"


def build_model(arch: str, vocab: int, eos: int, width: int = 128, layers: int = 4):
    """A causal LM (default 4 layers, d=128, 4 heads): GPT-2 (LayerNorm, GELU MLP 4d,
    biases) or Llama (RMSNorm, SwiGLU MLP 2.75d, rotary positions, no biases: the
    architecture of the published LLaMA compression numbers); tied input and output
    embeddings."""
    heads = max(width // 32, 1)
    if arch == "llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        return LlamaForCausalLM(LlamaConfig(
            vocab_size=vocab, hidden_size=width, intermediate_size=32 * round(2.75 * width / 32),
            num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
            max_position_embeddings=128, tie_word_embeddings=True, bos_token_id=eos,
            eos_token_id=eos))
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(
        vocab_size=vocab, n_positions=128, n_embd=width, n_layer=layers, n_head=heads,
        n_inner=4 * width, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        bos_token_id=eos, eos_token_id=eos))


def split_paragraphs() -> tuple[list[str], list[str]]:
    """Deterministic split: every 20th paragraph is held out."""
    from rankfold.nn._text_data import wikipedia_text

    paras = wikipedia_text()
    train = [p for i, p in enumerate(paras) if i % 20 != 0]
    held = [p for i, p in enumerate(paras) if i % 20 == 0]
    return train, held


def train_tokenizer(texts: list[str], out: Path):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=4096, min_frequency=2,
                            special_tokens=["<|endoftext|>"])
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>",
                                  bos_token="<|endoftext|>", unk_token="<|endoftext|>",
                                  pad_token="<|endoftext|>")
    tok.save_pretrained(out)
    return tok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--stop-after", type=int, default=None,
                    help="save and stop after this many steps (the learning-rate schedule "
                         "still spans --steps)")
    ap.add_argument("--arch", choices=ARCHS, default="gpt2",
                    help="gpt2 (LayerNorm, GELU) or llama (RMSNorm, SwiGLU); cached in "
                         "small_<arch>; llama reuses the gpt2 cache's tokenizer if present")
    ap.add_argument("--width", type=int, default=128, help="hidden size (default 128)")
    ap.add_argument("--layers", type=int, default=4, help="number of blocks (default 4)")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--resume", action="store_true",
                    help="continue training the cached model for --steps more steps")
    args = ap.parse_args()
    out = cache_dir(args.arch, args.width, args.layers)
    if (out / "split.json").exists() and not (args.force or args.resume):
        print(f"cached model in {out}")
        return 0
    torch.set_num_threads(int(os.environ.get("RANKFOLD_THREADS", "1")))
    from transformers import AutoModelForCausalLM, AutoTokenizer

    train, held = split_paragraphs()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    prev: dict = {}
    if args.resume:
        tok = AutoTokenizer.from_pretrained(str(out))
        prev = json.loads((out / "split.json").read_text())
    elif args.arch != "gpt2" and (cache_dir("gpt2") / "tokenizer.json").exists():
        tok = AutoTokenizer.from_pretrained(str(cache_dir("gpt2")))  # same vocabulary
        tok.save_pretrained(out)
    else:
        tok = train_tokenizer(train, out)
    ids = []
    for p in train:
        ids.extend(tok(p)["input_ids"] + [tok.eos_token_id])
    data = torch.tensor(ids, dtype=torch.long)
    print(f"tokenizer + encoding {time.perf_counter() - t0:.0f} s, {data.numel()} tokens",
          flush=True)
    g = torch.Generator().manual_seed(0)
    model = (AutoModelForCausalLM.from_pretrained(str(out)) if args.resume
             else build_model(args.arch, len(tok), tok.eos_token_id, args.width,
                              args.layers))
    # GPT-2 / nanoGPT practice: weight decay on the matrices only, not on LayerNorm
    # gains and biases (decaying them pulls the activations towards isotropy)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.95))
    warm = min(100, args.steps // 10)

    def lr_at(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warm) / (args.steps - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    t0 = time.perf_counter()
    done = args.steps if args.stop_after is None else min(args.steps, args.stop_after)
    for step in range(done):
        starts = torch.randint(0, data.numel() - args.seq - 1, (args.batch,), generator=g)
        x = torch.stack([data[s:s + args.seq] for s in starts.tolist()])
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0 or step == done - 1:
            print(f"step {step} loss {loss.item():.3f} ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
    model.eval()
    model.save_pretrained(out)
    meta = {"arch": args.arch, "width": args.width, "layers": args.layers,
            "steps": done + prev.get("steps", 0), "schedule_steps": args.steps,
            "batch": args.batch, "seq": args.seq,
            "train_tokens": int(data.numel()), "held_out_every": 20,
            "train_seconds": time.perf_counter() - t0 + prev.get("train_seconds", 0.0)}
    (out / "split.json").write_text(json.dumps(meta, indent=2))
    print(f"saved to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
