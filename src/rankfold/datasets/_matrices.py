"""Real matrices shipped inside PyPI wheels: handwritten digits and a hyperspectral image.

- :func:`load_digits_matrix`: scikit-learn's bundled UCI optical digits (1797 images of
  8 x 8 pixels, one image per row), read from ``sklearn/datasets/data/digits.csv.gz``.
- :func:`load_indian_pines`: the AVIRIS "Indian Pines" hyperspectral scene (145 x 145
  pixels, 200 spectral bands after removing the water-absorption bands), shipped in the
  tensorly 0.10.0 wheel as ``tensorly/datasets/data/Indian_pines_corrected.npy``.

The packages are located on disk and never imported (no network, no import cost).
"""

from __future__ import annotations

import gzip
import zipfile

import numpy as np

from .._errors import DataFileError
from ._package_files import package_file

__all__ = ["load_digits_matrix", "load_indian_pines"]

_FLOAT = (np.float32, np.float64)


def _check_dtype(dtype: type | np.dtype, func: str) -> np.dtype:
    from .._validation import param_error

    dt = np.dtype(dtype)
    if dt not in [np.dtype(d) for d in _FLOAT]:
        raise param_error("dtype", func, "numpy.float32 or numpy.float64", dtype)
    return dt


def load_digits_matrix(*, dtype: type | np.dtype = np.float64, return_labels: bool = False,
                       ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """The 1797 x 64 matrix of 8 x 8 handwritten digit images (grey levels 0..16).

    Parameters
    ----------
    dtype : numpy.float32 or numpy.float64, default float64
    return_labels : bool, default False
        Also return the digit (0..9) of each row.

    Returns
    -------
    X : ndarray of shape (1797, 64)
    y : ndarray of shape (1797,), int64 (only with ``return_labels=True``)

    Raises
    ------
    DataFileError
        scikit-learn is not installed or its data file is unreadable.

    References
    ----------
    E. Alpaydin, C. Kaynak, "Optical Recognition of Handwritten Digits", UCI Machine
    Learning Repository, 1998 (the copy bundled with scikit-learn).

    Examples
    --------
    >>> from rankfold.datasets import load_digits_matrix
    >>> load_digits_matrix().shape
    (1797, 64)
    """
    dt = _check_dtype(dtype, "load_digits_matrix")
    path = package_file("sklearn", "datasets/data/digits.csv.gz", "scikit-learn")
    try:
        with gzip.open(path, "rt", encoding="ascii") as fh:
            table = np.loadtxt(fh, delimiter=",", dtype=np.float64, ndmin=2)
    except (OSError, ValueError, EOFError) as exc:
        raise DataFileError(f"{path}: unreadable digits file ({exc}).") from exc
    if table.shape != (1797, 65):
        raise DataFileError(f"{path}: expected 1797 rows of 64 pixels and a label; got "
                            f"shape {table.shape}.")
    X = table[:, :64].astype(dt)
    if return_labels:
        return X, table[:, 64].astype(np.int64)
    return X


def load_indian_pines(*, unfolded: bool = True, dtype: type | np.dtype = np.float32,
                      ) -> np.ndarray:
    """The Indian Pines hyperspectral image (AVIRIS, 145 x 145 pixels, 200 bands).

    Parameters
    ----------
    unfolded : bool, default True
        Return the pixels x bands matrix of shape (21025, 200) (row ``i * 145 + j`` is
        pixel ``(i, j)``); ``False`` returns the (145, 145, 200) tensor.
    dtype : numpy.float32 or numpy.float64, default float32
        The stored values are uint16 radiances (about 955..9604).

    Raises
    ------
    DataFileError
        tensorly 0.10.0 is not installed, or the file is unreadable.

    References
    ----------
    M. F. Baumgardner, L. L. Biehl, D. A. Landgrebe, "220 Band AVIRIS Hyperspectral
    Image Data Set: June 12, 1992 Indian Pine Test Site 3", Purdue University Research
    Repository, 2015 (the corrected 200-band version shipped with tensorly).

    Examples
    --------
    >>> from rankfold.datasets import load_indian_pines
    >>> load_indian_pines().shape
    (21025, 200)
    """
    dt = _check_dtype(dtype, "load_indian_pines")
    if not isinstance(unfolded, bool | np.bool_):
        from .._validation import param_error

        raise param_error("unfolded", "load_indian_pines", "a bool", unfolded)
    path = package_file("tensorly", "datasets/data/Indian_pines_corrected.npy",
                        "tensorly==0.10.0")
    try:
        cube = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataFileError(f"{path}: unreadable Indian Pines file ({exc}).") from exc
    if cube.shape != (145, 145, 200):
        raise DataFileError(f"{path}: expected shape (145, 145, 200); got {cube.shape}.")
    cube = cube.astype(dt)
    return cube.reshape(145 * 145, 200) if unfolded else cube
