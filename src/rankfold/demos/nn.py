"""``rankfold demo`` section: one-shot compression of the real all-MiniLM-L6-v2 encoder."""

from __future__ import annotations

import copy
import os
import time

from . import DemoSection, DemoSkipped

TITLE = "Neural-network compression: all-MiniLM-L6-v2 (real weights), Lee news text"
ORDER = 50


def run(quick: bool) -> DemoSection:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np
    import torch

    from .._errors import DataFileError
    from ..nn import compress
    from ..nn._text_data import lee_background, lee_similarity, minilm_path

    try:
        path = str(minilm_path())
        bg = lee_background()
        lee_docs, sim = lee_similarity()
    except DataFileError as exc:
        raise DemoSkipped(str(exc)) from exc
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    dense = AutoModel.from_pretrained(path).eval()
    calib = bg[:24 if quick else 32]
    evals = bg[150:150 + (16 if quick else 32)]
    iu = np.triu_indices(len(lee_docs), 1)
    max_len = 64 if quick else 128

    def embed(model: torch.nn.Module, texts: list[str]) -> torch.Tensor:
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), 32):
                enc = tok(texts[i:i + 32], return_tensors="pt", padding=True,
                          truncation=True, max_length=max_len)
                h = model(**enc).last_hidden_state
                m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
                out.append(torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1))
        return torch.cat(out)

    def lee_r(model: torch.nn.Module) -> float:
        e = embed(model, lee_docs)
        return float(np.corrcoef((e @ e.t()).numpy()[iu], sim[iu])[0, 1])

    ref = embed(dense, evals)
    rows = [["dense", "-", "0%", "0%", 1.0, round(lee_r(dense), 3), 0.0]]
    # plain SVD, then the defaults (whitening, ranks by measured sensitivity)
    for method, alloc, ratio in [("svd", "uniform", 0.4), (None, None, 0.4)]:
        model = copy.deepcopy(dense)
        kw = {} if method is None else {"method": method, "allocation": alloc}
        t = time.perf_counter()
        rep = compress(model, ratio=ratio, calibration=calib, tokenizer=tok,
                       max_length=max_len, batch_size=8, show_progress=False, **kw)
        dt = time.perf_counter() - t
        cos = float((embed(model, evals) * ref).sum(1).mean())
        rows.append([rep.method, rep.allocation + (" (default)" if method is None else ""),
                     f"{rep.param_ratio:.0%}", f"{rep.rank_ratio:.0%}",
                     round(cos, 3), round(lee_r(model), 3), round(dt, 1)])
    notes = [
        f"Calibration: {len(calib)} lee_background documents; cosine on {len(evals)} other "
        "documents; Lee-50 = Pearson r with human similarity ratings of 50 documents.",
        "params removed = fraction of the Linear layers' parameters; ranks removed = fraction "
        "of their summed full ranks (not the same thing).",
        "Code: rankfold.nn.compress(model, ratio=0.4, calibration=texts, tokenizer=tok)",
        "More calibration text helps: with 256 texts the defaults reach cosine 0.90 at "
        "40% (docs/benchmarks/nn.md).",
    ]
    return DemoSection(TITLE, ["method", "allocation", "params removed", "ranks removed",
                               "cosine", "Lee-50 r", "compress s"], rows, notes)
