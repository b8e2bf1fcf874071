"""rankfold.linalg: the randomized numerical core.

Randomized SVD (fixed rank and to a tolerance), sketches, leverage-score and Lewis-weight
sampling, sketch-and-precondition least squares, CUR / interpolative decomposition,
Nystrom, weighted and incremental / concatenated SVD.
"""

from __future__ import annotations

__all__: list[str] = []

# --- rsvd.py -----------------------------------------------------------------------------

# --- sketch.py, sampling.py, lstsq.py ----------------------------------------------------

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
