"""rankfold.tensor: CP, Tucker and tensor-train formats and decompositions (also with
missing entries), and the Functional Bayesian Tucker decomposition (FunBaT)."""

from __future__ import annotations

__all__: list[str] = []

# --- formats and discrete algorithms -----------------------------------------------------
from ._formats import CPTensor, TTTensor, TuckerTensor  # noqa: E402
from ._unfold import fold, khatri_rao, mode_dot, mttkrp, multi_mode_dot, unfold  # noqa: E402
from .tt import tensor_train  # noqa: E402

__all__ += [
    "CPTensor", "TuckerTensor", "TTTensor",
    "unfold", "fold", "khatri_rao", "mode_dot", "multi_mode_dot", "mttkrp",
    "tensor_train",
]

# --- functional.py (FunBaT) --------------------------------------------------------------
from .functional import (  # noqa: E402
    FunBaTResult,
    FunctionalCP,
    FunctionalTucker,
    funbat,
    funbat_latent,
    funbat_predict,
    plot_latent_functions,
)

__all__ += [
    "FunctionalTucker", "FunctionalCP", "FunBaTResult", "funbat", "funbat_predict",
    "funbat_latent", "plot_latent_functions",
]
