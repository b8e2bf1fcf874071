"""``rankfold inspect``: per-layer spectra and ranks of a (compressed) model folder."""

from __future__ import annotations

import argparse
from typing import Any

from ._output import hint, print_json, print_table


def register(sub: Any) -> None:
    p = sub.add_parser(
        "inspect", help="per-layer singular-value spectra and ranks of a model folder",
        description="For every Linear-like layer: shape, stable rank, the ranks keeping "
                    "90%% and 99%% of the spectral energy, the largest rank that still "
                    "saves parameters, and (for a folder written by rankfold compress) the "
                    "rank chosen and the method. --plot writes the normalised spectra.")
    p.add_argument("model_dir", metavar="MODEL_DIR")
    p.add_argument("--targets", help="full-match regex of module names (default: all Linear)")
    p.add_argument("--plot", metavar="PNG", help="write a plot of the spectra")
    p.add_argument("--format", choices=["human", "json"], default="human")
    p.set_defaults(handler=run)


def layer_spectra(model: Any, targets: str | None = None) -> list[dict[str, Any]]:
    """One record per dense or factorized layer (spectra in float64)."""
    import torch
    from torch import nn

    from ..nn.layers import LowRankLinear, dense_matrix, is_conv1d

    out = []
    for name, mod in model.named_modules():
        if targets is not None:
            import re

            if not re.fullmatch(targets, name):
                continue
        if isinstance(mod, LowRankLinear):
            W = (mod.second.weight @ mod.first.weight).detach()
            rank, method = mod.rank, getattr(mod, "rankfold_method", None)
        elif isinstance(mod, nn.Linear) or is_conv1d(mod):
            if any(name.startswith(n + ".") for n in [r["layer"] for r in out]):
                continue
            W = dense_matrix(mod).detach()
            # layers pruned by "nystrom"'s MLP-pair form stay dense at their new shape
            rank, method = None, getattr(mod, "rankfold_method", None)
        else:
            continue
        if name.endswith((".first", ".second")):
            continue
        s = torch.linalg.svdvals(W.to(torch.float64))
        e = torch.cumsum(s ** 2, 0) / (s ** 2).sum().clamp_min(1e-300)
        m, n = W.shape
        out.append({
            "layer": name, "shape": [m, n], "rank": rank, "method": method,
            "stable_rank": float((s ** 2).sum() / s[0].clamp_min(1e-300) ** 2),
            "rank_90": int((e < 0.9).sum()) + 1, "rank_99": int((e < 0.99).sum()) + 1,
            "breakeven_rank": (m * n - 1) // (m + n),
            "spectrum": (s / s[0].clamp_min(1e-300)).tolist(),
        })
    return out


def run(args: argparse.Namespace) -> int:
    from .compress import load_model
    from .main import UsageError

    model, _ = load_model(args.model_dir)
    recs = layer_spectra(model, args.targets)
    if not recs:
        raise UsageError("No Linear layer matches --targets.")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.2))
        for r in recs:
            ax.semilogy(r["spectrum"], lw=0.8, alpha=0.7)
            if r["rank"] is not None:
                ax.axvline(r["rank"], color="k", lw=0.3, alpha=0.3)
        ax.set_xlabel("index i")
        ax.set_ylabel("s_i / s_1")
        ax.set_title(f"singular values of {len(recs)} layers")
        fig.tight_layout()
        from .._io import atomic_path

        with atomic_path(args.plot, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
        hint(f"wrote {args.plot}")
    if args.format == "json":
        print_json(recs)
        return 0
    rows = [[r["layer"], f"{r['shape'][0]}x{r['shape'][1]}",
             "dense" if r["rank"] is None else r["rank"], r["method"] or "-",
             round(r["stable_rank"], 2), r["rank_90"], r["rank_99"], r["breakeven_rank"]]
            for r in recs]
    print_table(f"rankfold inspect {args.model_dir}",
                ["layer", "shape", "rank", "method", "stable rank", "r(90%)", "r(99%)",
                 "break-even r"], rows)
    return 0
