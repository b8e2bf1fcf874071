"""rankfold.tensor: CP, Tucker and tensor-train formats and decompositions (also with
missing entries), and the Functional Bayesian Tucker decomposition (FunBaT)."""

from __future__ import annotations

__all__: list[str] = []

# --- formats and discrete algorithms -----------------------------------------------------

# --- functional.py (FunBaT) --------------------------------------------------------------
