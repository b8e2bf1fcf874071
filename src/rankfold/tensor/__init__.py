"""rankfold.tensor: CP, Tucker and tensor-train formats and decompositions (also with
missing entries), and the Functional Bayesian Tucker decomposition (FunBaT)."""

from __future__ import annotations

__all__: list[str] = []

# --- formats and discrete algorithms -----------------------------------------------------
from ._formats import CPTensor, TTTensor, TuckerTensor  # noqa: E402
from ._unfold import fold, khatri_rao, mode_dot, mttkrp, multi_mode_dot, unfold  # noqa: E402
from .complete import cp_complete, tucker_complete  # noqa: E402
from .cp import CPResult, cp  # noqa: E402
from .estimators import CP, CPCompletion, TensorTrain, Tucker, TuckerCompletion  # noqa: E402
from .tt import tensor_train  # noqa: E402
from .tucker import TuckerResult, tucker  # noqa: E402

__all__ += [
    "CPTensor", "TuckerTensor", "TTTensor",
    "unfold", "fold", "khatri_rao", "mode_dot", "multi_mode_dot", "mttkrp",
    "cp", "CPResult", "tucker", "TuckerResult", "tensor_train",
    "cp_complete", "tucker_complete",
    "CP", "Tucker", "TensorTrain", "CPCompletion", "TuckerCompletion",
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
