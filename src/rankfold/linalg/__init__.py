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
