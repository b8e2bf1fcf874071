"""rankfold.linalg: the randomized numerical core.

Randomized SVD (fixed rank and to a tolerance), sketches, leverage-score and Lewis-weight
sampling, sketch-and-precondition least squares, CUR / interpolative decomposition,
Nystrom, weighted and incremental / concatenated SVD.
"""

from __future__ import annotations

__all__: list[str] = []

# --- rsvd.py -----------------------------------------------------------------------------
from ._spmm import free_workspace  # noqa: E402
from .rsvd import RSVD, RSVD_METHODS, SVDResult, rsvd  # noqa: E402

__all__ += ["rsvd", "RSVD", "RSVD_METHODS", "SVDResult", "free_workspace"]

# --- sketch.py, sampling.py, lstsq.py ----------------------------------------------------
from .lstsq import LSTSQ_METHODS, LstsqInfo, LstsqResult, lstsq  # noqa: E402
from .sampling import (  # noqa: E402
    LEVERAGE_METHODS,
    LEWIS_METHODS,
    SAMPLING_SCORES,
    leverage_scores,
    lewis_weights,
    lp_sensitivities,
    row_scores,
    sample_by_scores,
    sample_rows,
    sensitivity_bounds,
)
from .sketch import (  # noqa: E402
    SKETCHES,
    CountSketch,
    GaussianSketch,
    SketchOperator,
    SparseSignSketch,
    SRHTSketch,
    make_sketch,
    sketch,
)

__all__ += [
    "sketch", "make_sketch", "SketchOperator", "GaussianSketch", "SRHTSketch",
    "CountSketch", "SparseSignSketch", "SKETCHES",
    "leverage_scores", "lewis_weights", "sensitivity_bounds", "sample_rows", "row_scores",
    "sample_by_scores", "lp_sensitivities",
    "LEVERAGE_METHODS", "LEWIS_METHODS", "SAMPLING_SCORES",
    "lstsq", "LstsqResult", "LstsqInfo", "LSTSQ_METHODS",
]

# --- cur.py, weighted.py, incremental.py -------------------------------------------------
from .cur import (  # noqa: E402
    CURResult,
    IDResult,
    NystromResult,
    cur,
    interpolative,
    nystrom,
)
from .incremental import (  # noqa: E402
    ConcatenatedBound,
    IncrementalSVD,
    SVDUpdate,
    concatenated_error_bound,
    group_for_compression,
    svd_update,
)
from .weighted import WeightedSVDInfo, WeightedSVDResult, weighted_svd  # noqa: E402

__all__ += [
    "IDResult", "CURResult", "NystromResult", "interpolative", "cur", "nystrom",
    "WeightedSVDInfo", "WeightedSVDResult", "weighted_svd",
    "IncrementalSVD", "SVDUpdate", "svd_update", "ConcatenatedBound",
    "concatenated_error_bound", "group_for_compression",
]
