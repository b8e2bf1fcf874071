"""Read a matrix from a file: .npy, .npz, Matrix Market (.mtx) or delimited text (.csv).

Used by the command line (``rankfold svd INPUT``). Every failure is a
:class:`~rankfold._errors.DataFileError` that names the file and what is wrong with it.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import scipy.io
import scipy.sparse as sp

from ._errors import DataFileError

__all__ = ["load_matrix", "MATRIX_FORMATS"]

MATRIX_FORMATS = (".npy", ".npz", ".mtx", ".csv", ".tsv")

_SPARSE_NPZ_KEYS = {"format", "shape", "data"}


def _check_array(arr: np.ndarray, path: Path, what: str) -> np.ndarray:
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise DataFileError(
            f"{path}: {what} must hold real numbers; got dtype {arr.dtype}."
        )
    if arr.ndim != 2:
        raise DataFileError(
            f"{path}: {what} must be a 2-D matrix; got an array of shape {arr.shape}."
        )
    if arr.size == 0:
        raise DataFileError(f"{path}: {what} is empty (shape {arr.shape}).")
    return arr


def _load_npy(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataFileError(f"{path}: not a readable .npy file ({exc}).") from exc
    return _check_array(np.asarray(arr), path, "the array")


def _load_npz(path: Path, key: str | None) -> np.ndarray | sp.csr_array:
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.files)
            if _SPARSE_NPZ_KEYS <= set(keys) and key is None:
                fmt = z["format"].item()
                fmt = fmt.decode() if isinstance(fmt, bytes) else str(fmt)
                mat = sp.csr_array(sp.load_npz(path))
                if mat.shape[0] * mat.shape[1] == 0:
                    raise DataFileError(f"{path}: the sparse matrix is empty "
                                        f"(shape {mat.shape}).")
                if mat.dtype.kind not in "biuf":
                    raise DataFileError(f"{path}: the sparse matrix must hold real numbers; "
                                        f"got dtype {mat.dtype} ({fmt} format).")
                return mat
            if key is None:
                if len(keys) != 1:
                    raise DataFileError(
                        f"{path}: holds {len(keys)} arrays ({', '.join(keys) or 'none'}); "
                        "save exactly one array, or a scipy.sparse matrix with "
                        "scipy.sparse.save_npz."
                    )
                key = keys[0]
            if key not in keys:
                raise DataFileError(f"{path}: has no array named {key!r} "
                                    f"(arrays: {', '.join(keys)}).")
            arr = z[key]
    except DataFileError:
        raise
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise DataFileError(f"{path}: not a readable .npz file ({exc}).") from exc
    return _check_array(np.asarray(arr), path, f"array {key!r}")


def _load_mtx(path: Path) -> np.ndarray | sp.csr_array:
    try:
        obj = scipy.io.mmread(path)
    except (ValueError, OSError, EOFError, IndexError, TypeError) as exc:
        raise DataFileError(f"{path}: not a readable Matrix Market file ({exc}).") from exc
    if sp.issparse(obj):
        mat = sp.csr_array(obj)
        if mat.dtype.kind not in "biuf":
            raise DataFileError(f"{path}: the matrix must hold real numbers; got dtype "
                                f"{mat.dtype}.")
        if mat.shape[0] * mat.shape[1] == 0:
            raise DataFileError(f"{path}: the matrix is empty (shape {mat.shape}).")
        return mat
    return _check_array(np.asarray(obj), path, "the matrix")


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _load_text(path: Path, delimiter: str) -> np.ndarray:
    try:
        with open(path, encoding="utf-8") as fh:
            first = fh.readline()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(f"{path}: not a readable text file ({exc}).") from exc
    if not first.strip():
        raise DataFileError(f"{path}: the file is empty.")
    tokens = [t.strip() for t in first.split(delimiter)]
    skip = 0 if all(_is_number(t) for t in tokens if t) else 1  # a header line
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="loadtxt: input contained no data")
            arr = np.loadtxt(path, delimiter=delimiter, skiprows=skip, ndmin=2,
                             dtype=np.float64, encoding="utf-8")
    except ValueError as exc:
        raise DataFileError(
            f"{path}: expected a numeric table with the same number of "
            f"{'commas' if delimiter == ',' else 'tabs'} on every line"
            f"{' after the header' if skip else ''} ({exc})."
        ) from exc
    return _check_array(arr, path, "the table")


def load_matrix(path: str | os.PathLike[str], *, key: str | None = None,
                ) -> np.ndarray | sp.csr_array:
    """Read a 2-D real matrix from ``path``; the format follows the file extension.

    Parameters
    ----------
    path : str or path-like
        ``.npy`` (one array), ``.npz`` (one dense array, or a ``scipy.sparse.save_npz``
        file), ``.mtx`` (Matrix Market, coordinate or array), ``.csv`` / ``.tsv``
        (numbers separated by commas / tabs, an optional header line).
    key : str, optional
        For ``.npz`` files holding several arrays: the one to read.

    Returns
    -------
    numpy.ndarray or scipy.sparse.csr_array
        Dense formats give an array (its dtype kept), sparse ones a CSR array.

    Raises
    ------
    DataFileError
        Missing file, unknown extension, unreadable or corrupt content, not 2-D, empty,
        or not real numbers.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a.npy")
    >>> np.save(p, np.eye(3))
    >>> load_matrix(p).shape
    (3, 3)
    """
    p = Path(path)
    if not p.exists():
        raise DataFileError(f"{p}: no such file.")
    if p.is_dir():
        raise DataFileError(f"{p}: is a directory, not a matrix file.")
    ext = p.suffix.lower()
    if ext == ".npy":
        return _load_npy(p)
    if ext == ".npz":
        return _load_npz(p, key)
    if ext == ".mtx":
        return _load_mtx(p)
    if ext == ".csv":
        return _load_text(p, ",")
    if ext == ".tsv":
        return _load_text(p, "\t")
    raise DataFileError(
        f"{p}: unknown matrix file extension {ext or '(none)'!r}; supported: "
        f"{', '.join(MATRIX_FORMATS)}."
    )
