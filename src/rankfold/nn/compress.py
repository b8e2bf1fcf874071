"""One-shot low-rank compression of a model: :func:`compress` and :func:`plan`.

Pipeline (nothing in the model changes before step 7):

1. validate every argument and resolve ``targets`` / ``exclude`` (peft rules);
2. stream the calibration data through the model: per-layer input statistics
   (float64 Gram matrices), and loss gradients when the method needs them;
3. one decomposition per layer with the chosen method;
4. allocate ranks under the budget (``ratio`` or ``params_budget``);
5. ``whiten_update``: refit each layer on inputs propagated through the already
   compressed blocks;
6. build every factorized module and check it is finite;
7. swap the modules in (all or nothing).
"""

from __future__ import annotations

import copy
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn

from .._errors import ConvergenceError, InvalidParameterError
from .._progress import progress
from .._validation import check_bool, check_exactly_one, check_float, check_int, check_option
from .allocation import ALLOCATIONS, Unit, get_allocation
from .calibration import (
    Calibration,
    LayerStats,
    _eval_mode,
    check_batches,
    collect_stats,
    compute_loss,
    fisher_rows,
    layer_inputs,
    main_output,
    prepare_calibration,
    replay,
    substitute,
    sym_gram,
)
from .layers import LowRankConv2d, LowRankEmbedding, LowRankLinear, dense_matrix
from .methods import (
    METHODS,
    NEEDS,
    Decomposition,
    Factors,
    LayerContext,
    get_method,
    output_error,
    refit_projected,
    refit_update,
)
from .pairs import PairDecomposition, build_pair, find_pairs, pair_decomposition, swapped
from .targets import find_targets

__all__ = ["compress", "plan", "CompressionReport", "LayerReport", "DEFAULT_METHOD",
           "DEFAULT_ALLOCATION"]

logger = logging.getLogger("rankfold.nn")

#: measured on all-MiniLM-L6-v2 and two small LMs (docs/nn.md): "whiten_update" is a little
#: better than "whiten" on MiniLM and the Llama-style LM and equal on GPT-2, at about 2.3x
#: the compression time, so "whiten" is the default; "sensitivity" allocation beat every
#: other allocation at every ratio. Without calibration data the allocation falls back to
#: "uniform" (``allocation=None``).
DEFAULT_METHOD = "whiten"
DEFAULT_ALLOCATION = "sensitivity"

#: the refinement modes of ``compress(..., refine=)`` and their default learning rates
REFINE_LR = {"model": 3e-4, "blockwise": 1e-3}
REFINE_MODES = tuple(REFINE_LR)


def resolve_allocation(allocation: str | None, calibration: Any) -> str:
    """``None`` means "sensitivity" with calibration data and "uniform" without."""
    if allocation is None:
        return DEFAULT_ALLOCATION if calibration is not None else "uniform"
    return allocation


class LayerReport(NamedTuple):
    """One targeted layer: shape, rank chosen (None = kept dense), parameters and FLOPs."""

    name: str
    kind: str
    shape: tuple[int, int]
    rank: int | None
    full_rank: int
    params_before: int
    params_after: int
    flops_before: int
    flops_after: int
    rel_error: float


@dataclass
class CompressionReport:
    """What :func:`compress` did, in parameters AND in ranks.

    ``param_ratio`` is the fraction of the targeted layers' parameters removed (the
    ``ratio`` argument); ``rank_ratio`` the fraction of the targeted layers' full ranks
    removed (``1 - sum(rank) / sum(min(m, n))``, dense layers counting at full rank).
    The two differ: a rank-r factor of an m x n matrix keeps r (m + n) parameters.
    """

    layers: list[LayerReport]
    method: str
    allocation: str
    model_params_before: int
    model_params_after: int
    seconds: float
    applied: bool
    model: nn.Module | None = field(default=None, repr=False)

    @property
    def params_before(self) -> int:
        return sum(r.params_before for r in self.layers)

    @property
    def params_after(self) -> int:
        return sum(r.params_after for r in self.layers)

    @property
    def param_ratio(self) -> float:
        return 1.0 - self.params_after / max(self.params_before, 1)

    @property
    def rank_ratio(self) -> float:
        full = sum(r.full_rank for r in self.layers)
        kept = sum(r.full_rank if r.rank is None else r.rank for r in self.layers)
        return 1.0 - kept / max(full, 1)

    @property
    def flops_ratio(self) -> float:
        before = sum(r.flops_before for r in self.layers)
        return 1.0 - sum(r.flops_after for r in self.layers) / max(before, 1)

    @property
    def ranks(self) -> dict[str, int | None]:
        return {r.name: r.rank for r in self.layers}

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method, "allocation": self.allocation, "applied": self.applied,
            "seconds": self.seconds,
            "targeted_params_before": self.params_before,
            "targeted_params_after": self.params_after,
            "param_ratio_removed": self.param_ratio, "rank_ratio_removed": self.rank_ratio,
            "flops_ratio_removed": self.flops_ratio,
            "model_params_before": self.model_params_before,
            "model_params_after": self.model_params_after,
            "layers": [r._asdict() for r in self.layers],
        }

    def table(self) -> str:
        """Per-layer table and the totals, as plain text."""
        head = ["layer", "shape", "rank", "params", "FLOPs", "rel.err"]
        rows = []
        for r in self.layers:
            rank = "dense" if r.rank is None else f"{r.rank}/{r.full_rank}"
            rows.append([r.name, f"{r.shape[0]}x{r.shape[1]}", rank,
                         f"{r.params_before}->{r.params_after}",
                         f"{r.flops_before}->{r.flops_after}", f"{r.rel_error:.4f}"])
        widths = [max(len(h), *(len(x[i]) for x in rows)) for i, h in enumerate(head)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)),
                 "  ".join("-" * w for w in widths)]
        lines += ["  ".join(c.ljust(w) for c, w in zip(x, widths, strict=True)) for x in rows]
        lines.append(
            f"targeted layers: {self.params_before} -> {self.params_after} parameters "
            f"({100 * self.param_ratio:.1f}% removed); ranks {100 * self.rank_ratio:.1f}% "
            f"removed; FLOPs {100 * self.flops_ratio:.1f}% removed")
        lines.append(f"model: {self.model_params_before} -> {self.model_params_after} "
                     f"parameters; method={self.method}, allocation={self.allocation}, "
                     f"{self.seconds:.1f} s" + ("" if self.applied else " (dry run)"))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


# ------------------------------------------------------------------ layer geometry

def _kind(mod: nn.Module) -> str:
    if isinstance(mod, nn.Embedding):
        return "embedding"
    if isinstance(mod, nn.Conv2d):
        return "conv2d"
    return "linear"


def _unit(name: str, mod: nn.Module, spectrum: torch.Tensor) -> Unit:
    W = dense_matrix(mod)
    m, n = W.shape
    bias = getattr(mod, "bias", None)
    fixed = n if isinstance(mod, nn.Embedding) else (0 if bias is None else bias.numel())
    dense = sum(p.numel() for p in mod.parameters(recurse=False))
    max_rank = (dense - fixed - 1) // (m + n)
    return Unit(name, dense, m + n, fixed, min(max_rank, min(m, n)), spectrum)


def _max_rank(mod: nn.Module) -> int:
    return _unit("", mod, torch.zeros(1)).max_rank


def _flops(mod: nn.Module, rank: int | None) -> int:
    """Multiply-adds per output position (token / pixel / lookup)."""
    m, n = dense_matrix(mod).shape
    if isinstance(mod, nn.Embedding):
        return 0 if rank is None else rank * n
    return m * n if rank is None else rank * (m + n)


def _context(name: str, mod: nn.Module, stats: LayerStats | None,
             fisher: torch.Tensor | None, options: dict[str, Any]) -> LayerContext:
    W = dense_matrix(mod).detach().to(torch.float64)
    bias = getattr(mod, "bias", None)
    b = None if bias is None or isinstance(mod, nn.Embedding) else bias.detach().to(
        torch.float64)
    return LayerContext(name, _kind(mod), W, b, stats, fisher, options)


def build_module(mod: nn.Module, f: Factors) -> nn.Module:
    """The factorized replacement of ``mod`` from float64 factors (cast to its dtype)."""
    w = dense_matrix(mod)
    dt, dev = w.dtype, w.device

    def cast(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.to(device=dev, dtype=dt)

    A, B, bias, fb = cast(f.A), cast(f.B), cast(f.bias), cast(f.first_bias)
    for t in (A, B, bias, fb):
        if t is not None and not bool(torch.isfinite(t).all()):
            raise ConvergenceError(
                f"Factors overflow {dt} (non-finite after the cast); use a wider dtype.")
    if isinstance(mod, nn.Embedding):
        new = LowRankEmbedding.from_factors(mod, A, B, bias)
    elif isinstance(mod, nn.Conv2d):
        new = LowRankConv2d.from_factors(mod, A, B, bias, fb)
    else:
        new = LowRankLinear.from_factors(A, B, bias, fb)
    new.train(mod.training)
    for p_old, p_new in zip((mod.weight,), (new.second.weight if hasattr(new, "second")
                                             else new.proj.weight,), strict=True):
        p_new.requires_grad_(p_old.requires_grad)
    return new


def _replace(model: nn.Module, replacements: dict[str, nn.Module]) -> None:
    """Swap modules in; on any failure put back the ones already swapped."""
    done: list[tuple[nn.Module, str, nn.Module]] = []
    try:
        for qname, new in replacements.items():
            parent_name, _, child = qname.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            old = getattr(parent, child)
            setattr(parent, child, new)
            done.append((parent, child, old))
    except BaseException:
        for parent, child, old in reversed(done):
            setattr(parent, child, old)
        raise


def _pair_unit(down: str, ups: list[str], modules: dict[str, nn.Module],
               spectrum: torch.Tensor) -> Unit:
    """An MLP pair as one allocation unit; its "rank" is the kept intermediate channels."""
    md = modules[down]
    m, h = dense_matrix(md).shape
    dense = sum(p.numel() for n in [*ups, down] for p in modules[n].parameters(recurse=False))
    per = m + sum(dense_matrix(modules[u]).shape[1]
                  + (0 if getattr(modules[u], "bias", None) is None else 1) for u in ups)
    fixed = 0 if getattr(md, "bias", None) is None else md.bias.numel()
    return Unit(down, dense, per, fixed, h - 1, spectrum)


def _pair_rows(dec: PairDecomposition, modules: dict[str, nn.Module], k: int | None,
               new_modules: dict[str, nn.Module]) -> list[LayerReport]:
    """Report rows of a pruned pair (``rank`` = kept channels of ``full_rank`` = h)."""
    h = dec.C.shape[0]
    if k is not None:
        new_modules.update(build_pair(dec, modules, k))
    rows = []
    for n in [*dec.ups, dec.down]:
        m = modules[n]
        shape = tuple(dense_matrix(m).shape)
        before = sum(p.numel() for p in m.parameters(recurse=False))
        fl = shape[0] * shape[1]
        if k is None:
            rows.append(LayerReport(n, "linear", shape, None, h, before, before, fl, fl, 0.0))
            continue
        after = sum(p.numel() for p in new_modules[n].parameters(recurse=False))
        fl_after = k * (shape[1] if n != dec.down else shape[0])
        err = dec.rel_error(k) if n == dec.down else 0.0
        rows.append(LayerReport(n, "linear", shape, k, h, before, after, fl, fl_after, err))
    return rows


# ------------------------------------------------------------------ sensitivity

def _make_measure(model: nn.Module, modules: dict[str, nn.Module],
                  decomps: dict[str, Decomposition], calib: Calibration, n_batches: int,
                  loss_fn: Callable | None, func: str,
                  pair_decs: dict[str, PairDecomposition] | None = None
                  ) -> Callable[[str, int], float]:
    """``measure(name, rank)``: loss (or output) change with that one layer truncated.

    The dense outputs of the model's blocks (``find_blocks``) are recorded once per
    batch; a measurement for a layer in block ``i`` replays blocks ``0 .. i-1`` from
    the record, so only the blocks from ``i`` on are recomputed.
    """
    from ._sequential import _no_cache, find_blocks

    batches = []
    for i, b in enumerate(calib):
        if i >= n_batches:
            break
        batches.append(b)
    # the loss only when the user gives loss_fn: a model's own .loss on one batch was
    # too noisy (small GPT-2: truncations "lowered" it, perplexity 138 vs 105 at 40%)
    use_loss = loss_fn is not None
    refs: list[torch.Tensor] = []
    found = find_blocks(model, list(modules))
    blocks: list[nn.Module] = list(found[1]) if found is not None else []
    block_of: dict[str, int] = {}
    if found is not None:
        pre = found[0] + "." if found[0] else ""
        for n in modules:
            head = n[len(pre):].split(".")[0] if n.startswith(pre) else ""
            if head.isdigit():
                block_of[n] = int(head)
    recorded: list[list[Any]] = [[None] * len(blocks) for _ in batches]
    with torch.no_grad(), _eval_mode(model), _no_cache(model):
        handles = []
        cur = [0]
        calls = [[0] * len(blocks) for _ in batches]
        for j, blk in enumerate(blocks):
            def rec(m: nn.Module, a: tuple, o: Any, j: int = j) -> None:
                recorded[cur[0]][j] = o
                calls[cur[0]][j] += 1
            handles.append(blk.register_forward_hook(rec))
        try:
            base = 0.0
            for i, b in enumerate(batches):
                cur[0] = i
                if use_loss:
                    base += float(compute_loss(model, b, calib, loss_fn, first=False,
                                               func=func)) / len(batches)
                else:
                    refs.append(main_output(calib.run(model, b)).detach())
        finally:
            for h in handles:
                h.remove()
    if any(c != 1 for calls_b in calls for c in calls_b):
        block_of = {}  # a block skipped or run twice (shared weights): no replay

    def measure(name: str, rank: int) -> float:
        mod = modules[name]
        if pair_decs and name in pair_decs:  # pruned shapes: really swapped in, then back
            ctx = swapped(model, build_pair(pair_decs[name], modules, rank))
            skip = blocks[:min(block_of.get(n, 0) for n in
                               [name, *pair_decs[name].ups])]
        else:
            ctx = substitute({mod: build_module(mod, decomps[name].factors(rank))})
            skip = blocks[:block_of.get(name, 0)]
        total = num = den = 0.0
        with torch.no_grad(), _eval_mode(model), _no_cache(model), ctx:
            for i, b in enumerate(batches):
                with replay(skip, recorded[i]):
                    if use_loss:
                        total += float(compute_loss(model, b, calib, loss_fn, first=False,
                                                    func=func)) / len(batches)
                        continue
                    out = main_output(calib.run(model, b))
                num += float(((out - refs[i]).to(torch.float64) ** 2).sum())
                den += float((refs[i].to(torch.float64) ** 2).sum())
        if use_loss:
            return total - base
        return num / max(den, 1e-300)

    return measure


# ------------------------------------------------------------------ whiten_update

def _dense_refit(ctx: LayerContext, B: torch.Tensor) -> Factors:
    st = ctx.stats
    G, mu = st.second_moment, st.mean
    return refit_update(ctx.W, ctx.bias, B, mean_dense=mu, mean_comp=mu, cross=G,
                        gram_comp=G, ridge=float(ctx.options.get("ridge", 1e-6)))


def _with_hidden(args: tuple, kwargs: dict, h: torch.Tensor) -> tuple[tuple, dict]:
    """The next block's arguments: its hidden states replaced by ``h``."""
    if args:
        return (h,) + tuple(args[1:]), kwargs
    return args, {**kwargs, "hidden_states": h}


def _sequential_update(model: nn.Module, modules: dict[str, nn.Module],
                       ctxs: dict[str, LayerContext], decomps: dict[str, Decomposition],
                       ranks: dict[str, int | None],
                       calib: Calibration, max_batches: int | None) -> dict[str, Factors]:
    from ._sequential import capture_block_inputs, find_blocks, layer_stages, run_block

    todo = {n for n, r in ranks.items() if r is not None and ctxs[n].kind != "embedding"}
    out: dict[str, Factors] = {}
    found = find_blocks(model, sorted(todo))
    in_blocks: dict[int, list[str]] = {}
    if found is not None:
        prefix, blocks = found
        pre = prefix + "." if prefix else ""
        for n in todo:
            if n.startswith(pre) and n[len(pre):].split(".")[0].isdigit():
                in_blocks.setdefault(int(n[len(pre):].split(".")[0]), []).append(n)
    for n in todo - {x for v in in_blocks.values() for x in v}:
        out[n] = _dense_refit(ctxs[n], decomps[n].factors(ranks[n]).B)  # dense inputs
    if not in_blocks:
        return out
    captured = capture_block_inputs(model, blocks[0], calib, max_batches)
    if not captured:
        raise InvalidParameterError("No calibration batch reached the model's blocks.")
    dense_h = [(a, k) for a, k, _ in captured]
    comp_h = list(dense_h)
    masks = [m for _, _, m in captured]
    with _eval_mode(model):
        for i, block in enumerate(blocks):
            names = sorted(in_blocks.get(i, []))
            new_dense, new_comp = [], []
            if names:
                (da0, dk0), mask0 = dense_h[0], masks[0]
                stages = layer_stages(block, da0, dk0, mask0, {modules[n]: n for n in names})
                reps: dict[nn.Module, nn.Module] = {}
                for stage in stages:
                    first = {n: decomps[n].factors(ranks[n]).B for n in stage}
                    last = stage is stages[-1]
                    acc = _refit_moments(block, stage, modules, ctxs, first, dense_h, comp_h,
                                         masks, reps, new_dense if last else None)
                    for n in stage:
                        a, c = acc[n], max(acc[n]["count"], 1)
                        my, mz = a["y"] / c, a["z"] / c
                        out[n] = refit_projected(
                            ctxs[n].bias, first[n], mean_out=my, mean_z=mz,
                            cov_out_z=a["yz"] / c - torch.outer(my, mz),
                            cov_z=a["zz"] / c - torch.outer(mz, mz),
                            ridge=float(ctxs[n].options.get("ridge", 1e-6)))
                        reps[modules[n]] = build_module(modules[n], out[n])
                for (ca, ck), mask in zip(comp_h, masks, strict=True):
                    with substitute(reps):
                        hc = run_block(block, ca, ck, mask)
                    new_comp.append(_with_hidden(ca, ck, hc))
            else:
                for (da, dk), (ca, ck), mask in zip(dense_h, comp_h, masks, strict=True):
                    new_dense.append(_with_hidden(da, dk, run_block(block, da, dk, mask)))
                    new_comp.append(_with_hidden(ca, ck, run_block(block, ca, ck, mask)))
            dense_h, comp_h = new_dense, new_comp
            if i >= max(in_blocks):
                break
    return out


def _refit_moments(block: nn.Module, stage: list[str], modules: dict[str, nn.Module],
                   ctxs: dict[str, LayerContext], first: dict[str, torch.Tensor],
                   dense_h: list, comp_h: list, masks: list,
                   reps: dict[nn.Module, nn.Module], new_dense: list | None
                   ) -> dict[str, dict[str, Any]]:
    """Projected moments of the layers of one stage (see :func:`refit_projected`): sums
    of ``y = W x_d`` (inputs from the dense stream), ``z = B x_c`` (inputs from the
    compressed stream, the earlier stages of this block already replaced by ``reps``),
    ``y z^T`` and ``z z^T``. Products per batch in the working precision (float32 at
    least), summed in float64. With ``new_dense`` given, the dense block's outputs are
    appended to it (the dense block then runs to its end)."""
    from ._sequential import run_block

    acc: dict[str, dict[str, Any]] = {
        n: {"y": 0.0, "z": 0.0, "yz": 0.0, "zz": 0.0, "count": 0} for n in stage}
    work = {}
    for n in stage:
        W, B = ctxs[n].W, first[n]
        dt = W.dtype if W.dtype == torch.float64 else torch.float32
        work[n] = (W.to(dt).t().contiguous(), B.to(dt).t().contiguous(), dt)
    for (da, dk), (ca, ck), mask in zip(dense_h, comp_h, masks, strict=True):
        ys: dict[str, list[torch.Tensor]] = {n: [] for n in stage}  # per call, in order

        def keep(mod: nn.Module, x: torch.Tensor, n: str, ys: dict = ys) -> None:
            Wt, _, dt = work[n]
            ys[n].append(layer_inputs(mod, x).to(dt) @ Wt)

        def pair(mod: nn.Module, x: torch.Tensor, n: str, ys: dict = ys) -> None:
            _, Bt, dt = work[n]
            y, z = ys[n].pop(0), layer_inputs(mod, x).to(dt) @ Bt
            a = acc[n]
            a["y"] = a["y"] + y.sum(0, dtype=torch.float64)
            a["z"] = a["z"] + z.sum(0, dtype=torch.float64)
            a["yz"] = a["yz"] + (y.t() @ z).to(torch.float64)
            a["zz"] = a["zz"] + sym_gram(z).to(torch.float64)
            a["count"] += z.shape[0]

        # the block only runs up to the stage's layers, except for the dense outputs
        hd = run_block(block, da, dk, mask, {
            modules[n]: (lambda m, x, n=n: keep(m, x, n)) for n in stage},
            stop_early=new_dense is None)
        with substitute(reps):
            run_block(block, ca, ck, mask, {
                modules[n]: (lambda m, x, n=n: pair(m, x, n)) for n in stage},
                stop_early=True)
        if new_dense is not None:
            new_dense.append(_with_hidden(da, dk, hd))
    return acc


# ------------------------------------------------------------------ public API

def _validate(model: Any, ratio: Any, params_budget: Any, method: Any, allocation: Any,
              inplace: Any, func: str) -> None:
    if not isinstance(model, nn.Module):
        raise InvalidParameterError(
            f"The 'model' parameter of {func} must be a torch.nn.Module. "
            f"Got {type(model).__name__} instead.")
    check_exactly_one(func, ratio=ratio, params_budget=params_budget)
    if ratio is not None:
        check_float(ratio, "ratio", func, low=0.0, high=1.0, closed_low=False,
                    closed_high=False)
    if params_budget is not None:
        check_int(params_budget, "params_budget", func, low=1)
    check_option(method, "method", func, METHODS)
    check_option(allocation, "allocation", func, ALLOCATIONS)
    check_bool(inplace, "inplace", func)


def _run(model: nn.Module, *, ratio: float | None, params_budget: int | None, method: str,
         allocation: str, calibration: Any, targets: Any, exclude: Any, inplace: bool,
         loss_fn: Callable | None, tokenizer: Any, max_length: int, batch_size: int,
         forward_fn: Callable | None, max_stats_bytes: int, sensitivity_batches: int,
         update_batches: int | None, method_options: dict[str, Any] | None,
         show_progress: bool | None, dry_run: bool, func: str, refine_epochs: int = 0,
         refine_lr: float | None = None, generator: torch.Generator | None = None,
         refine: str = "model") -> CompressionReport:
    t0 = time.perf_counter()
    allocation = resolve_allocation(allocation, calibration)
    _validate(model, ratio, params_budget, method, allocation, inplace, func)
    check_int(max_length, "max_length", func, low=1)
    check_int(batch_size, "batch_size", func, low=1)
    check_int(sensitivity_batches, "sensitivity_batches", func, low=1)
    check_int(update_batches, "update_batches", func, low=1, allow_none=True)
    check_int(max_stats_bytes, "max_stats_bytes", func, low=1)
    check_int(refine_epochs, "refine_epochs", func, low=0)
    check_option(refine, "refine", func, REFINE_MODES)
    if refine_lr is None:
        refine_lr = REFINE_LR[refine]
    check_float(refine_lr, "refine_lr", func, low=0.0, high=1.0, closed_low=False)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise InvalidParameterError(
            f"The 'generator' parameter of {func} must be a torch.Generator or None. "
            f"Got {type(generator).__name__} instead.")
    if refine_epochs and calibration is None:
        raise InvalidParameterError(
            f"{func} with refine_epochs={refine_epochs} needs calibration data (the "
            "refinement matches the dense model's outputs on it).")
    get_method(method, func)
    get_allocation(allocation, func)
    if loss_fn is not None and not callable(loss_fn):
        raise InvalidParameterError(
            f"The 'loss_fn' parameter of {func} must be a callable loss_fn(model, batch) "
            f"or None. Got {type(loss_fn).__name__} instead.")
    needs = set(NEEDS[method])
    if allocation == "sensitivity":
        needs.add("stats")
    if needs and calibration is None:
        what = f"method={method!r}" if NEEDS[method] else f"allocation={allocation!r}"
        raise InvalidParameterError(
            f"{func} with {what} needs calibration data: pass calibration=... (batches, a "
            "DataLoader, or texts with tokenizer=...), or use method='svd' with a "
            "data-free allocation.")

    found = find_targets(model, targets, exclude, func=func)
    modules = {n: m for n, m in found.items() if _max_rank(m) >= 1}
    if not modules:
        raise InvalidParameterError(
            f"None of the {len(found)} matched modules of {func} gets smaller when "
            f"factorized: {', '.join(list(found)[:8])}.")
    if not inplace and not dry_run:
        memo = copy.deepcopy(model)
        names = set(modules)
        modules = {n: memo.get_submodule(n) for n in names}
        model = memo
        modules = dict(sorted(modules.items(), key=lambda kv: list(found).index(kv[0])))
    targeted = sum(sum(p.numel() for p in m.parameters(recurse=False))
                   for m in modules.values())
    total = sum(p.numel() for p in model.parameters())
    if params_budget is not None:
        low = total - targeted
        if not low < params_budget < total:
            raise InvalidParameterError(
                f"The 'params_budget' parameter of {func} must be an int in "
                f"({low}, {total}) (the model's parameters outside the targeted layers, "
                f"and all of them). Got {params_budget} instead.")
        ratio = (total - params_budget) / targeted
    keep = int((1.0 - ratio) * targeted)

    calib = None
    if calibration is not None:
        calib = prepare_calibration(calibration, model, tokenizer=tokenizer,
                                    max_length=max_length, batch_size=batch_size,
                                    forward_fn=forward_fn, func=func)
        check_batches(model, calib, func)
    if method == "fwsvd" and loss_fn is None:
        with torch.no_grad(), _eval_mode(model):
            out = calib.run(model, next(iter(calib)))
        if getattr(out, "loss", None) is None:
            raise InvalidParameterError(
                f"Method 'fwsvd' of {func} needs a loss: pass loss_fn=lambda model, batch: "
                "... or batches whose model output carries .loss (e.g. with labels).")

    stats: dict[str, LayerStats] = {}
    fisher: dict[str, torch.Tensor] = {}
    with progress(f"{func}: calibration", total=None, enabled=show_progress):
        if calib is not None:
            stats = collect_stats(model, modules, calib, max_stats_bytes=max_stats_bytes,
                                  func=func)
        if "fisher" in needs:
            fisher = fisher_rows(model, {n: m for n, m in modules.items()
                                         if not isinstance(m, nn.Embedding)}, calib,
                                 loss_fn, func=func)
    options = dict(method_options or {})
    pairs: dict[str, list[str]] = {}
    if method == "nystrom" and calib is not None and options.pop("pairs", True):
        pairs = find_pairs(model, modules, calib)
        pairs = {d: us for d, us in pairs.items() if stats.get(d) is not None
                 and stats[d].gram is not None}
    in_pair = {u: d for d, us in pairs.items() for u in us}
    pair_decs: dict[str, PairDecomposition] = {}
    fn = METHODS[method]
    ctxs, decomps, units = {}, {}, []
    with progress(f"{func}: {method}", total=len(modules), enabled=show_progress) as bar:
        for n, m in modules.items():
            if n in in_pair:
                bar.advance(1)
                continue
            if n in pairs:
                pair_decs[n] = pair_decomposition(
                    n, pairs[n], m, stats[n].second_moment,
                    float(options.get("ridge_lambda", 1e-2)))
                units.append(_pair_unit(n, pairs[n], modules, pair_decs[n].spectrum))
                bar.advance(1)
                continue
            ctxs[n] = _context(n, m, stats.get(n), fisher.get(n), options)
            if method == "fwsvd" and ctxs[n].kind == "embedding":
                ctxs[n].fisher = torch.ones(1, dtype=torch.float64)
            decomps[n] = fn(ctxs[n])
            units.append(_unit(n, m, decomps[n].spectrum))
            bar.advance(1)
    smallest = sum(u.params(1) for u in units)
    if keep < smallest:
        raise InvalidParameterError(
            f"The 'ratio' parameter of {func} removes more than rank 1 everywhere allows: "
            f"at most {1 - smallest / targeted:.4f} of the targeted parameters can go. "
            f"Got {ratio} instead.")
    measure = None
    if allocation == "sensitivity":
        measure = _make_measure(model, modules, decomps, calib, sensitivity_batches, loss_fn,
                                func, pair_decs)
    with progress(f"{func}: allocation ({allocation})", total=None, enabled=show_progress):
        ranks = ALLOCATIONS[allocation](units, keep, measure=measure)

    factors: dict[str, Factors] = {}
    if method == "whiten_update" and calib is not None:
        with progress(f"{func}: update", total=None, enabled=show_progress):
            factors = _sequential_update(model, modules, ctxs, decomps, ranks, calib,
                                         update_batches)
    new_modules: dict[str, nn.Module] = {}
    rows = []
    for u in units:
        n, m, r = u.name, modules[u.name], ranks[u.name]
        full = min(dense_matrix(m).shape)
        if n in pair_decs:
            rows += _pair_rows(pair_decs[n], modules, r, new_modules)
            continue
        if r is None:
            rows.append(LayerReport(n, _kind(m), tuple(dense_matrix(m).shape), None, full,
                                    u.dense_params, u.dense_params, _flops(m, None),
                                    _flops(m, None), 0.0))
            continue
        f = factors.get(n) or decomps[n].factors(r)
        new_modules[n] = build_module(m, f)
        new_modules[n].rankfold_method = method
        rows.append(LayerReport(n, _kind(m), tuple(dense_matrix(m).shape), r, full,
                                u.dense_params, u.params(r), _flops(m, None), _flops(m, r),
                                output_error(ctxs[n], f)))
    after = total - sum(r.params_before - r.params_after for r in rows)
    if not dry_run:
        _replace(model, new_modules)
        if refine_epochs and calib is not None:
            with progress(f"{func}: refine", total=None, enabled=show_progress):
                rows = _refine_factors(model, modules, new_modules, ctxs, rows, calib,
                                       refine_epochs, refine_lr, generator, refine, func)
    return CompressionReport(rows, method, allocation, total, after,
                             time.perf_counter() - t0, not dry_run,
                             None if dry_run else model)


def _module_factors(mod: nn.Module) -> Factors | None:
    """The float64 factors of a refined low-rank module (None for other kinds)."""
    if not isinstance(mod, LowRankLinear | LowRankConv2d):
        return None
    first, second = mod.first, mod.second

    def f64(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.detach().to(torch.float64)

    A = second.weight.reshape(second.weight.shape[0], -1)
    B = first.weight.reshape(first.weight.shape[0], -1)
    return Factors(f64(A), f64(B), f64(second.bias), f64(first.bias))


def _refine_factors(model: nn.Module, modules: dict[str, nn.Module],
                    new_modules: dict[str, nn.Module], ctxs: dict[str, LayerContext],
                    rows: list[LayerReport], calib: Calibration, epochs: int, lr: float,
                    generator: torch.Generator | None, mode: str = "model",
                    func: str = "compress") -> list[LayerReport]:
    """Train the swapped-in factors (see :mod:`rankfold.nn._refine`); undo on failure."""
    from ._refine import find_blocks, refine, refine_blocks

    old = {n: modules[n] for n in new_modules}
    trained = [n for n, m in new_modules.items() if isinstance(m, LowRankLinear
                                                                | LowRankConv2d)]
    params = [p for n in trained for p in new_modules[n].parameters()]
    flags = [p.requires_grad for p in params]
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    blocks = []
    if mode == "blockwise":
        found = find_blocks(model, trained)
        if not found:
            _replace(model, old)
            raise InvalidParameterError(
                f"{func} with refine='blockwise' needs the factorized layers inside the "
                "blocks of an nn.ModuleList or nn.Sequential (e.g. a transformer's layers); "
                "none holds any. Use refine='model'.")
        blocks = [(q, [p for n in trained if n == q or n.startswith(q + ".")
                       for p in new_modules[n].parameters()]) for q, _ in found]
    swap = lambda on: _replace(model, new_modules if on else old)  # noqa: E731
    try:
        for p in params:
            p.requires_grad_(True)
        if mode == "blockwise":
            refine_blocks(model, calib, swap, blocks, epochs=epochs, lr=lr, generator=gen)
        else:
            refine(model, calib, swap, params, epochs=epochs, lr=lr, generator=gen)
    except BaseException:
        _replace(model, old)
        raise
    finally:
        for p, f in zip(params, flags, strict=True):
            p.requires_grad_(f)
    errors = {n: output_error(ctxs[n], _module_factors(new_modules[n])) for n in trained
              if n in ctxs}
    return [r._replace(rel_error=errors[r.name]) if r.name in errors else r for r in rows]


def compress(model: nn.Module, *, ratio: float | None = None, params_budget: int | None = None,
             method: str = DEFAULT_METHOD, allocation: str | None = None,
             calibration: Any = None, targets: Any = None, exclude: Any = None,
             inplace: bool = True, loss_fn: Callable[[nn.Module, Any], torch.Tensor] | None
             = None, tokenizer: Any = None, max_length: int = 128, batch_size: int = 16,
             forward_fn: Callable[[nn.Module, Any], Any] | None = None,
             max_stats_bytes: int = 2 << 30, sensitivity_batches: int = 1,
             update_batches: int | None = None, method_options: dict[str, Any] | None = None,
             show_progress: bool | None = None, refine_epochs: int = 0,
             refine_lr: float | None = None, generator: torch.Generator | None = None,
             refine: str = "model") -> CompressionReport:
    """Replace the model's layers by low-rank factorizations, one shot, no retraining.

    Parameters
    ----------
    model : torch.nn.Module
        Any model (transformers models included); modified in place unless
        ``inplace=False``.
    ratio : float in (0, 1), optional
        Fraction of the targeted layers' parameters to remove (0.4 = 40% fewer).
        Exactly one of ``ratio`` / ``params_budget``.
    params_budget : int, optional
        Parameters the whole model may keep after compression.
    method : str, default "whiten"
        One of :data:`rankfold.nn.methods.METHODS`: "svd", "fwsvd", "asvd", "whiten",
        "whiten_update", "afm", "nystrom".
    allocation : str, optional
        One of "uniform", "energy", "welore", "sensitivity". Default (None):
        "sensitivity" when ``calibration`` is given, else "uniform".
    calibration : iterable of batches, DataLoader, or list of str, optional
        Tensors (``model(x)``), dicts (``model(**x)``) or tuples (``model(*x)``);
        texts need ``tokenizer``. Required by every method except "svd".
    targets, exclude : str or list of str, optional
        peft rules: a string is a full-match regex on qualified module names; a list
        matches exact names or dotted suffixes. Default: every ``nn.Linear`` / ``Conv1D``
        that factorization makes smaller (heads tied to embeddings excluded).
    inplace : bool, default True
        ``False`` compresses a deep copy (``report.model``).
    loss_fn : callable(model, batch) -> scalar tensor, optional
        Loss for "fwsvd" (without it the model output's ``.loss``) and for
        "sensitivity" (without it the relative change of the model's main output, which
        measured more reliably than a model's own ``.loss`` on one batch).
    tokenizer, max_length, batch_size
        Used when ``calibration`` is a list of texts.
    forward_fn : callable(model, batch), optional
        How to run a batch (default: by its type, see above).
    max_stats_bytes : int, default 2 GiB
        Memory for per-layer statistics; more layers take more passes over the data.
    sensitivity_batches : int, default 1
        Calibration batches used to measure sensitivity (one forward pass of them per
        targeted layer and point of :data:`rankfold.nn.allocation.SENSITIVITY_GRID`).
    update_batches : int, optional
        Calibration batches propagated by "whiten_update" (default: all).
    method_options : dict, optional
        ``alpha`` (asvd, 0.5), ``ridge`` (whitening, 1e-6), ``ridge_lambda`` (nystrom, 1e-2).
    show_progress : bool, optional
        Progress bars on stderr (default: only on a terminal).
    refine_epochs : int, default 0
        Opt-in: after the one-shot factorization, train the factors of every
        ``LowRankLinear`` / ``LowRankConv2d`` for this many passes over the calibration
        batches (Adam, learning rate ``refine_lr`` decaying linearly to 0) so that the
        model's output matches the dense model's (relative squared error over non-padding
        positions). Each pass costs about three forward passes of the calibration data;
        on all-MiniLM-L6-v2 at 40% two passes raised the mean cosine to the dense
        embeddings from 0.90 to 0.93, and 40 passes with ``batch_size=8`` to 0.95 at
        about 20x the one-shot time (docs/nn.md). Ranks do not change; on failure the
        dense modules are put back.
    refine_lr : float, optional
        Initial Adam learning rate of the refinement (default: 3e-4 for
        ``refine="model"``, 1e-3 for ``refine="blockwise"``).
    refine : {"model", "blockwise"}, default "model"
        What the refinement matches. "model": the model's main output (end to end, as
        above). "blockwise": block by block, in order, each block's output (the blocks
        are the children of the ``nn.ModuleList`` / ``nn.Sequential`` holding the most
        factorized layers, e.g. a transformer's layers): block ``i``'s factors are
        trained for ``refine_epochs`` passes so that its output on the inputs from the
        compressed model (blocks before it already refined) matches the dense block's
        output on the dense inputs (Adam, cosine decay); each step runs one block only.
        Factorized layers outside the blocks are not trained. On all-MiniLM-L6-v2 at
        40%, 7 passes per block (``batch_size=4``, ``refine_lr=5e-4``) reached the
        cosine of 40 end-to-end passes (0.951) in 147 s of CPU instead of 622 s
        (docs/nn.md). A model without such blocks raises ``InvalidParameterError``.
    generator : torch.Generator, optional
        Order of the batches in the refinement (default: seeded with 0).

    Returns
    -------
    CompressionReport
        Per layer: rank, parameters and FLOPs before/after, relative output error on the
        calibration data; totals as parameter ratio AND rank ratio.

    Raises
    ------
    InvalidParameterError
        Bad arguments, no matching module, calibration batches the model cannot run, a
        method needing a loss without one. The model is untouched.
    ConvergenceError
        Non-finite factors. The model is untouched.

    Examples
    --------
    >>> import torch
    >>> from rankfold.nn import compress
    >>> model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(),
    ...                             torch.nn.Linear(64, 64))
    >>> x = [torch.randn(32, 64, generator=torch.Generator().manual_seed(0))]
    >>> rep = compress(model, ratio=0.5, calibration=x)
    >>> round(rep.param_ratio, 1)
    0.5
    """
    return _run(model, ratio=ratio, params_budget=params_budget, method=method,
                allocation=allocation, calibration=calibration, targets=targets,
                exclude=exclude, inplace=inplace, loss_fn=loss_fn, tokenizer=tokenizer,
                max_length=max_length, batch_size=batch_size, forward_fn=forward_fn,
                max_stats_bytes=max_stats_bytes, sensitivity_batches=sensitivity_batches,
                update_batches=update_batches, method_options=method_options,
                show_progress=show_progress, dry_run=False, func="compress",
                refine_epochs=refine_epochs, refine_lr=refine_lr, generator=generator,
                refine=refine)


def plan(model: nn.Module, *, verbose: bool = True, **kwargs: Any) -> CompressionReport:
    """Dry run of :func:`compress`: same arguments, nothing replaced.

    Returns the :class:`CompressionReport` (shape, rank, parameters and FLOPs before and
    after, estimated relative output error per layer) and, with ``verbose=True``, writes
    its table to stdout.
    """
    kwargs.setdefault("method", DEFAULT_METHOD)
    kwargs.setdefault("allocation", None)
    kwargs.pop("inplace", None)
    defaults = dict(ratio=None, params_budget=None, calibration=None, targets=None,
                    exclude=None, loss_fn=None, tokenizer=None, max_length=128,
                    batch_size=16, forward_fn=None, max_stats_bytes=2 << 30,
                    sensitivity_batches=1, update_batches=None, method_options=None,
                    show_progress=None, refine_epochs=0, refine_lr=None, generator=None,
                    refine="model")
    unknown = set(kwargs) - set(defaults) - {"method", "allocation"}
    if unknown:
        raise InvalidParameterError(
            f"plan got unknown arguments {sorted(unknown)}; it takes compress's arguments.")
    defaults.update(kwargs)
    rep = _run(model, inplace=True, dry_run=True, func="plan", **defaults)
    if verbose:
        sys.stdout.write(rep.table() + "\n")
    return rep

