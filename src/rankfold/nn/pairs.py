"""MoDeGPT's Nystrom compression of MLP pairs (type-I modules): structured channel pruning.

For an up/down pair -- layers ``U_1 .. U_g`` (``d -> h``; one for GPT-2 / BERT, gate and
up for a gated Llama MLP) whose outputs reach the down layer ``D`` (``h -> d_out``) only
through an elementwise function ``z = f(U_1 x, .., U_g x)`` -- the intermediate Gram
``C = E[z z^T]`` (``D``'s input statistics, float64) ranks the ``h`` intermediate channels
by ridge leverage ``diag(C (C + lambda I)^-1)``. Keeping the top ``k`` channels ``S``:
every ``U_i`` keeps its rows ``S`` (and ``bias[S]``), and ``D`` becomes
``D C_{:,S} C_{S,S}^+`` (the least-squares map from the kept channels to ``D``'s output on
the calibration data; exact when ``z`` has rank ``<= k`` there). Both become smaller dense
layers of the same type (``nn.Linear`` / transformers ``Conv1D``): ``k (sum in_i + d_out)``
weights instead of ``h (...)``.

Pairs are found by data flow, not by names: candidates ``U`` are targeted layers of the
same block (``D``'s grandparent prefix) whose output width is ``D``'s input width; one
probe forward per candidate perturbs ``U``'s output at a random half of its entries and
checks that ``D``'s input changes there and only there (elementwise dependence; attention
mixes tokens and fails the check, so value/output pairs are never pruned by this).

Reference: Lin et al., "MoDeGPT: Modular decomposition for large language model
compression", ICLR 2025 (Sec. 3.2, type-I module, Nystrom approximation).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._errors import ConvergenceError
from .calibration import Calibration, _eval_mode
from .layers import dense_matrix, is_conv1d

__all__ = ["PairDecomposition", "find_pairs", "pair_decomposition", "make_dense"]


def _is_dense(mod: nn.Module) -> bool:
    return isinstance(mod, nn.Linear) or is_conv1d(mod)


def _grandparent(name: str) -> str:
    parts = name.split(".")
    return ".".join(parts[:-2])


def _few_rows(batch: Any, rows: int = 2) -> Any:
    """The first ``rows`` samples of a tensor / dict-of-tensors batch (probes are cheap)."""
    if isinstance(batch, torch.Tensor):
        return batch[:rows] if batch.dim() >= 2 else batch
    if isinstance(batch, dict) and batch and all(
            isinstance(v, torch.Tensor) and v.dim() >= 1 for v in batch.values()):
        n = {v.shape[0] for v in batch.values()}
        if len(n) == 1:
            return {k: v[:rows] for k, v in batch.items()}
    return batch


def find_pairs(model: nn.Module, modules: dict[str, nn.Module], calib: Calibration,
               *, seed: int = 0) -> dict[str, list[str]]:
    """Verified pairs: down-layer name -> its up-layer names (module order).

    A candidate up layer ``U`` for a down layer ``D``: both targeted ``nn.Linear`` /
    ``Conv1D``, ``U`` before ``D`` in ``modules``, ``U`` inside ``D``'s grandparent
    module, ``U``'s output width equal to ``D``'s input width. It is verified on the first
    calibration batch (see the module docstring), then the group is pruned at a random
    half of its channels for real and must give the model's output with those channels
    zeroed at ``D``'s input (this rejects residual connections and any other use of the
    outputs). An up layer verified for two down layers is left out; in a chain
    ``U -> D -> D2`` the first pair wins.
    """
    names = [n for n, m in modules.items() if _is_dense(m)]
    shape = {n: tuple(dense_matrix(modules[n]).shape) for n in names}
    cands: dict[str, list[str]] = {}
    for j, d in enumerate(names):
        pre = _grandparent(d)
        for u in names[:j]:
            if shape[u][0] == shape[d][1] and (not pre or u.startswith(pre + ".")):
                cands.setdefault(u, []).append(d)
    if not cands:
        return {}
    batch = _few_rows(next(iter(calib)))
    watch = sorted({d for ds in cands.values() for d in ds} | set(cands))
    outs: dict[str, Any] = {}
    ins: dict[str, Any] = {}
    calls: dict[str, int] = {n: 0 for n in watch}

    def record(name: str) -> Callable:
        def hook(m: nn.Module, a: tuple, o: Any) -> None:
            calls[name] += 1
            outs[name] = o.detach() if isinstance(o, torch.Tensor) else None
            ins[name] = a[0].detach() if a and isinstance(a[0], torch.Tensor) else None
        return hook

    with torch.no_grad(), _eval_mode(model):
        hs = [modules[n].register_forward_hook(record(n)) for n in watch]
        try:
            calib.run(model, batch)
        finally:
            for h in hs:
                h.remove()
    ok = {n for n in watch if calls[n] == 1 and outs.get(n) is not None
          and ins.get(n) is not None}
    clean_in = {n: ins[n] for n in ok}
    g = torch.Generator().manual_seed(seed)
    verified: dict[str, list[str]] = {}
    got: dict[str, torch.Tensor] = {}

    def pre(name: str) -> Callable:
        def hook(m: nn.Module, a: tuple) -> None:
            got[name] = a[0].detach()
        return hook

    for u, downs in cands.items():
        downs = [d for d in downs if d in ok]
        if u not in ok or not downs:
            continue
        o = outs[u]
        mask = (torch.rand(o.shape, generator=g) < 0.5).to(o.device)
        scale = float(o.abs().mean()) + 1e-3
        delta = (torch.randn(o.shape, generator=g, dtype=torch.float64) * scale).to(
            o.dtype).to(o.device) * mask
        got.clear()

        with torch.no_grad(), _eval_mode(model):
            hs = [modules[u].register_forward_hook(lambda m, a, out, _d=delta: out + _d)]
            hs += [modules[d].register_forward_pre_hook(pre(d)) for d in downs]
            try:
                calib.run(model, batch)
            except Exception:  # noqa: BLE001 - a model that rejects the probe: no pair
                got.clear()
            finally:
                for h in hs:
                    h.remove()
        for d in downs:
            x0, x1 = clean_in[d], got.get(d)
            if x1 is None or x1.shape != o.shape:
                continue
            diff = (x1 - x0).abs()
            tol = 1e-6 * (float(x0.abs().max()) + 1e-30)
            if bool((diff[~mask] <= tol).all()) and bool((diff[mask] > tol).any()):
                verified.setdefault(u, []).append(d)
    groups: dict[str, list[str]] = {}
    for u, ds in verified.items():
        if len(ds) == 1:
            groups.setdefault(ds[0], []).append(u)
    order = list(modules)
    used: set[str] = set()
    out: dict[str, list[str]] = {}
    for d, us in sorted(groups.items(), key=lambda kv: order.index(kv[0])):
        us = sorted(us, key=order.index)
        # a layer in two pairs (a chain U -> D -> D2): the first pair wins
        if used.isdisjoint([d, *us]) and _swap_check(model, modules, calib, batch, d, us,
                                                     g):
            out[d] = us
            used.update([d, *us])
    return out


def _swap(model: nn.Module, new: dict[str, nn.Module]) -> dict[str, nn.Module]:
    old = {}
    for name, mod in new.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        old[name] = getattr(parent, child)
        setattr(parent, child, mod)
    return old


@contextlib.contextmanager
def swapped(model: nn.Module, new: dict[str, nn.Module]) -> Iterator[None]:
    """Temporarily put the modules ``new`` (qualified name -> module) into ``model``."""
    old = _swap(model, new)
    try:
        yield
    finally:
        _swap(model, old)


def _swap_check(model: nn.Module, modules: dict[str, nn.Module], calib: Calibration,
                batch: Any, down: str, ups: list[str], g: torch.Generator) -> bool:
    """Pruning a random half of the channels == zeroing them at ``down``'s input.

    Runs the model with the really pruned layers swapped in (restored afterwards); a
    residual connection or any other use of the up layers' outputs fails here (shape
    error or a different output).
    """
    from .calibration import main_output

    md = modules[down]
    h = dense_matrix(md).shape[1]
    if h < 2:
        return False
    S = torch.sort(torch.randperm(h, generator=g)[: h // 2]).values
    keep = torch.zeros(h, dtype=torch.bool)
    keep[S] = True
    new: dict[str, nn.Module] = {}
    for u in ups:
        mu = modules[u]
        b = getattr(mu, "bias", None)
        new[u] = make_dense(mu, dense_matrix(mu).detach()[S.to(mu.weight.device)],
                            None if b is None else b.detach()[S.to(b.device)])
    b = getattr(md, "bias", None)
    new[down] = make_dense(md, dense_matrix(md).detach()[:, S.to(md.weight.device)],
                           None if b is None else b.detach())

    def zero(m: nn.Module, a: tuple) -> tuple:
        return (a[0] * keep.to(a[0].device, a[0].dtype),) + tuple(a[1:])

    with torch.no_grad(), _eval_mode(model):
        h_ = md.register_forward_pre_hook(zero)
        try:
            ref = main_output(calib.run(model, batch)).detach()
        finally:
            h_.remove()
        old = _swap(model, new)
        try:
            got = main_output(calib.run(model, batch)).detach()
        except Exception:  # noqa: BLE001 - the pruned shapes do not fit: not a pair
            return False
        finally:
            _swap(model, old)
    if got.shape != ref.shape:
        return False
    err = float((got - ref).to(torch.float64).norm())
    return err <= 1e-3 * float(ref.to(torch.float64).norm()) + 1e-12


@dataclass
class PairDecomposition:
    """Ridge-leverage channel ranking of one pair; ``make(k)`` gives the pruned weights."""

    down: str
    ups: list[str]
    spectrum: torch.Tensor  # leverage, decreasing
    order: torch.Tensor
    C: torch.Tensor
    W_down: torch.Tensor  # float64 (d_out, h)

    def kept(self, k: int) -> torch.Tensor:
        return torch.sort(self.order[:k]).values

    def down_weight(self, k: int) -> torch.Tensor:
        S = self.kept(k)
        Css = self.C[S][:, S]
        Wn = (self.W_down @ self.C[:, S]) @ torch.linalg.pinv(Css, hermitian=True, rtol=1e-13)
        if not bool(torch.isfinite(Wn).all()):
            raise ConvergenceError(
                f"The Nystrom down projection of '{self.down}' at {k} channels holds NaN or "
                "infinity; try method='whiten' or more calibration data.")
        return Wn

    def rel_error(self, k: int) -> float:
        """``sqrt(tr(E C E^T) / tr(W C W^T))`` on the calibration data (bias cancels)."""
        S = self.kept(k)
        E = self.W_down.clone()
        E[:, S] -= self.down_weight(k)
        num = (E @ self.C * E).sum().clamp_min(0)
        den = (self.W_down @ self.C * self.W_down).sum().clamp_min(1e-300)
        return float((num / den).sqrt())


def pair_decomposition(down: str, ups: list[str], mod_down: nn.Module, C: torch.Tensor,
                       ridge_lambda: float = 1e-2) -> PairDecomposition:
    """Leverage ranking of the intermediate channels from ``D``'s input second moment ``C``."""
    h = C.shape[0]
    lam = ridge_lambda * C.diagonal().mean().clamp_min(1e-30)
    eye = torch.eye(h, dtype=C.dtype, device=C.device)
    lev = torch.linalg.solve(C + lam * eye, C).diagonal()
    order = torch.argsort(lev, descending=True)
    W = dense_matrix(mod_down).detach().to(torch.float64)
    return PairDecomposition(down, ups, lev[order].clamp_min(0), order, C, W)


def make_dense(template: nn.Module, W: torch.Tensor, bias: torch.Tensor | None,
               method: str = "nystrom") -> nn.Module:
    """A dense layer of ``template``'s type (Linear / Conv1D) with weight ``W`` (out x in)."""
    ref = dense_matrix(template)
    dt, dev = ref.dtype, ref.device
    m, n = W.shape
    if is_conv1d(template):
        new = type(template)(m, n)
        new.to(device=dev, dtype=dt)
        with torch.no_grad():
            new.weight.copy_(W.t())
            new.bias.copy_(bias if bias is not None else torch.zeros(m))
    else:
        new = nn.Linear(n, m, bias=bias is not None, device=dev, dtype=dt)
        with torch.no_grad():
            new.weight.copy_(W)
            if bias is not None:
                new.bias.copy_(bias)
    for p in new.parameters():
        if not bool(torch.isfinite(p).all()):
            raise ConvergenceError(
                f"Pruned weights overflow {dt} (non-finite after the cast); use a wider dtype.")
        p.requires_grad_(template.weight.requires_grad)
    new.train(template.training)
    new.rankfold_pruned = True
    new.rankfold_method = method
    return new


def build_pair(dec: PairDecomposition, modules: dict[str, nn.Module], k: int,
               method: str = "nystrom") -> dict[str, nn.Module]:
    """The pruned replacements (name -> module) of one pair at ``k`` channels."""
    S = dec.kept(k)
    out: dict[str, nn.Module] = {}
    for u in dec.ups:
        mod = modules[u]
        W = dense_matrix(mod).detach().to(torch.float64)[S.to(mod.weight.device)]
        b = getattr(mod, "bias", None)
        out[u] = make_dense(mod, W, None if b is None else b.detach().to(torch.float64)[S],
                            method)
    md = modules[dec.down]
    b = getattr(md, "bias", None)
    out[dec.down] = make_dense(md, dec.down_weight(k),
                               None if b is None else b.detach().to(torch.float64), method)
    return out
