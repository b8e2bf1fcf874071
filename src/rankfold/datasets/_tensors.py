"""Real multi-way tensors shipped inside the ``tensorly==0.10.0`` wheel.

The ``.npy`` files are read directly (tensorly is never imported). Masks follow rankfold's
convention: True = observed.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._errors import DataFileError
from ._package_files import package_file

__all__ = ["TensorData", "load_kinetic", "load_il2", "load_covid19_serology",
           "load_indian_pines_tensor"]

_PIP = "tensorly==0.10.0"


class TensorData(NamedTuple):
    """A real tensor with its missing-value mask (True = observed; None when complete)."""

    tensor: np.ndarray
    mask: np.ndarray | None
    modes: tuple[str, ...]
    description: str
    reference: str


def _load(name: str) -> np.ndarray:
    path = package_file("tensorly", f"datasets/data/{name}", _PIP)
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataFileError(f"Cannot read '{path}' ({exc}); reinstall it with: "
                            f"pip install --no-deps --force-reinstall {_PIP}") from exc


def load_kinetic() -> TensorData:
    """Kinetic fluorescence data (X60t): shape (64, 12, 10, 60), 1,754 entries missing.

    Modes: concentration (sample), emission wavelength, excitation wavelength, time. The
    missing entries hold 0 in ``tensor``; ``mask`` is False there.

    Examples
    --------
    >>> from rankfold.datasets import load_kinetic
    >>> d = load_kinetic()  # doctest: +SKIP
    >>> d.tensor.shape, int((~d.mask).sum())  # doctest: +SKIP
    ((64, 12, 10, 60), 1754)
    """
    X = _load("Kinetic.npy").astype(np.float64, copy=False)
    missing = _load("Kinetic_missing.npy").astype(bool)
    if missing.shape != X.shape:
        raise DataFileError(f"Kinetic_missing.npy has shape {missing.shape}, expected "
                            f"{X.shape}; reinstall {_PIP}.")
    return TensorData(X, ~missing, ("sample", "emission", "excitation", "time"),
                      "Kinetic fluorescence of catecholamine mixtures over time "
                      "(four-way, with missing measurements).",
                      "Nikolajsen, Booksh, Hansen & Bro (2003). Quantifying catecholamines "
                      "using multi-way kinetic modelling. Analytica Chimica Acta 475, 137-150.")


def load_il2() -> TensorData:
    """IL-2 mutein signaling responses: shape (13, 4, 12, 8), 192 NaN (mask False there).

    Modes: ligand, time point, concentration, cell type.
    """
    X = _load("IL2_Response_Tensor.npy").astype(np.float64, copy=False)
    return TensorData(X, ~np.isnan(X), ("ligand", "time", "concentration", "cell type"),
                      "Signaling responses of 8 cell types to 13 IL-2 muteins at 12 doses "
                      "and 4 times.",
                      "Orcutt-Jahns et al. (2021). Multivalency enhances the specificity of "
                      "Fc-cytokine fusions. bioRxiv.")


def load_covid19_serology() -> TensorData:
    """COVID-19 systems serology: shape (438, 6, 11) (samples x antigens x receptors)."""
    X = _load("COVID19_data.npy").astype(np.float64, copy=False)
    mask = ~np.isnan(X)
    return TensorData(X, None if mask.all() else mask, ("sample", "antigen", "receptor"),
                      "Antibody measurements of 438 samples against 6 antigens and 11 "
                      "receptors/features.",
                      "Tan, Murphy, Alpay, Taylor & Meyer (2021). Tensor-structured "
                      "decomposition improves systems serology analysis. Mol. Syst. Biol. 17.")


def load_indian_pines_tensor(*, dtype: type = np.float64) -> TensorData:
    """Indian Pines hyperspectral image: shape (145, 145, 200) (rows x columns x bands).

    The raw file is uint16; ``dtype`` (default float64) sets the returned type.
    """
    X = _load("Indian_pines_corrected.npy").astype(dtype)
    return TensorData(X, None, ("row", "column", "band"),
                      "AVIRIS hyperspectral image of the Indian Pine test site, 200 bands.",
                      "Baumgardner, Biehl & Landgrebe (2015). 220 Band AVIRIS Hyperspectral "
                      "Image Data Set: June 12, 1992 Indian Pine Test Site 3. Purdue "
                      "University Research Repository. doi:10.4231/R7RX991C")
