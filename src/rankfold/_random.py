"""Explicit randomness: one helper turns ``generator=`` arguments into torch Generators.

rankfold never touches the global random state. ``None`` draws fresh entropy from the
operating system for a *new* generator, so two calls differ but neither changes
``torch.random`` or ``numpy.random``.
"""

from __future__ import annotations

import numbers
import secrets
from typing import Any

import numpy as np
import torch

from ._validation import param_error

__all__ = ["check_generator", "GeneratorLike", "numpy_generator", "spawn_seed"]

GeneratorLike = int | torch.Generator | np.random.Generator | None


def check_generator(
    generator: Any, device: torch.device | str | None = None, *, func: str = "rankfold"
) -> torch.Generator:
    """Normalise ``generator`` to a :class:`torch.Generator` on ``device``.

    Parameters
    ----------
    generator : int, torch.Generator, numpy.random.Generator or None
        An int seeds a new generator; a torch Generator is used as is (it must live on
        ``device``'s type, otherwise a new one is seeded from it); a numpy Generator
        supplies the seed; None seeds from the operating system's entropy.
    device : torch.device or str, optional
        Device the random numbers are drawn on (default CPU).
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if isinstance(generator, torch.Generator):
        if generator.device.type == dev.type:
            return generator
        seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    elif generator is None:
        seed = secrets.randbits(62)
    elif isinstance(generator, np.random.Generator):
        seed = int(generator.integers(0, 2**62))
    elif isinstance(generator, numbers.Integral) and not isinstance(generator, bool):
        if int(generator) < 0:
            raise param_error("generator", func, "a non-negative int seed", generator)
        seed = int(generator)
    else:
        raise param_error(
            "generator", func, "an int, a torch.Generator, a numpy.random.Generator or None",
            generator,
        )
    g = torch.Generator(device=dev)
    g.manual_seed(seed)
    return g


def spawn_seed(generator: torch.Generator) -> int:
    """Draw a 62-bit seed from ``generator`` (for handing to numpy or a child routine)."""
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())


def numpy_generator(generator: Any, *, func: str = "rankfold") -> np.random.Generator:
    """A numpy Generator derived from a ``generator=`` argument (for scipy/numpy code paths)."""
    if isinstance(generator, np.random.Generator):
        return generator
    return np.random.default_rng(spawn_seed(check_generator(generator, func=func)))
