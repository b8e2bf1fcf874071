"""``rankfold compress``: one-shot low-rank compression of a Hugging Face model folder."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from ._output import hint, print_json, print_table


def register(sub: Any) -> None:
    from ..nn.allocation import ALLOCATIONS
    from ..nn.compress import DEFAULT_ALLOCATION, DEFAULT_METHOD
    from ..nn.methods import METHODS

    p = sub.add_parser(
        "compress", help="compress a transformers model folder with low-rank factors",
        description="Replace the model's Linear layers by low-rank factorizations computed "
                    "from calibration texts, and save the result (safetensors + JSON config "
                    "+ the model's config and tokenizer) to --out.")
    p.add_argument("model_dir", metavar="MODEL_DIR",
                   help="folder with config.json, weights and tokenizer (save_pretrained)")
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--ratio", type=float,
                        help="fraction of the targeted layers' parameters to remove, in (0, 1)")
    budget.add_argument("--params-budget", type=int,
                        help="parameters the whole model may keep")
    p.add_argument("--method", default=DEFAULT_METHOD, choices=sorted(METHODS))
    p.add_argument("--allocation", default=None, choices=sorted(ALLOCATIONS),
                   help=f"default: {DEFAULT_ALLOCATION} (uniform without calibration data)")
    p.add_argument("--calibration", metavar="TEXTS",
                   help="text file, one calibration text per line (needed by every method "
                        "but svd)")
    p.add_argument("--max-texts", type=int, default=256, help="calibration texts used")
    p.add_argument("--max-length", type=int, default=128, help="tokens per text")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--refine-epochs", type=int, default=0,
                   help="opt-in: passes of training the factors to the dense model's outputs "
                        "on the calibration texts (default 0)")
    p.add_argument("--refine", choices=["model", "blockwise"], default="model",
                   help="what --refine-epochs matches: the model's output (model, default) "
                        "or each transformer layer's output in turn (blockwise)")
    p.add_argument("--targets", help="full-match regex of module names to compress")
    p.add_argument("--exclude", help="full-match regex of module names to keep dense")
    p.add_argument("--out", required=True, metavar="OUT_DIR", help="output folder")
    p.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    p.add_argument("--format", choices=["human", "json"], default="human")
    p.set_defaults(handler=run)


def load_model(model_dir: str) -> tuple[Any, Any]:
    """A transformers model (its architecture class when known) and its tokenizer."""
    from .main import UsageError

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = Path(model_dir)
    if not (path / "config.json").exists():
        raise UsageError(f"The 'MODEL_DIR' argument must be a folder with a config.json "
                         f"(transformers save_pretrained). Got {model_dir!r} instead.")
    import transformers

    from ..nn.io import CONFIG_NAME, load_compressed

    config = transformers.AutoConfig.from_pretrained(str(path))
    tok = None
    try:
        tok = transformers.AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError, TypeError):
        tok = None
    if (path / CONFIG_NAME).exists():
        return load_compressed(None, path).eval(), tok
    cls = None
    for arch in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, arch, None)
        if cls is not None:
            break
    cls = cls or transformers.AutoModel
    return cls.from_pretrained(str(path)).eval(), tok


def read_texts(path: str, limit: int) -> list[str]:
    from .main import UsageError

    p = Path(path)
    if not p.exists():
        raise UsageError(f"The '--calibration' file {path!r} does not exist.")
    texts = [ln.strip() for ln in p.read_text(encoding="utf-8", errors="replace").splitlines()
             if ln.strip()]
    if not texts:
        raise UsageError(f"The '--calibration' file {path!r} holds no text.")
    return texts[:limit]


def run(args: argparse.Namespace) -> int:
    from ..nn import compress, plan, save_compressed
    from .main import UsageError

    model, tok = load_model(args.model_dir)
    texts = read_texts(args.calibration, args.max_texts) if args.calibration else None
    if texts is not None and tok is None:
        raise UsageError(f"{args.model_dir!r} has no tokenizer, so --calibration texts cannot "
                         "be encoded.")
    kw = dict(ratio=args.ratio, params_budget=args.params_budget, method=args.method,
              allocation=args.allocation, calibration=texts, tokenizer=tok,
              max_length=args.max_length, batch_size=args.batch_size,
              targets=args.targets, exclude=args.exclude,
              show_progress=None if args.format == "human" else False)
    if args.dry_run:
        rep = plan(model, verbose=False, **kw)
    else:
        rep = compress(model, **kw, refine_epochs=args.refine_epochs, refine=args.refine)
        out = save_compressed(model, args.out)
        if tok is not None:
            tok.save_pretrained(str(out))
    if args.format == "json":
        print_json(rep.to_dict() | ({} if args.dry_run else {"out": str(args.out)}))
        return 0
    rows = [[r.name, f"{r.shape[0]}x{r.shape[1]}",
             "dense" if r.rank is None else f"{r.rank}/{r.full_rank}",
             r.params_before, r.params_after, round(r.rel_error, 4)] for r in rep.layers]
    print_table(f"rankfold compress ({rep.method}, {rep.allocation})",
                ["layer", "shape", "rank", "params before", "params after", "rel. error"],
                rows)
    print(f"targeted parameters removed: {100 * rep.param_ratio:.1f}%  "
          f"ranks removed: {100 * rep.rank_ratio:.1f}%  "
          f"model: {rep.model_params_before} -> {rep.model_params_after} parameters "
          f"({rep.seconds:.1f} s)")
    if not args.dry_run:
        hint(f"saved to {args.out} (load with rankfold.nn.load_compressed(None, dir))")
    return 0
