"""hotops: hand-written Numba CPU and numba.cuda GPU kernels for the hot paths of five
classic papers, behind thin torch bindings.

Importing ``hotops`` is cheap: it imports neither torch nor any kernel and compiles
nothing. Sub-packages load on first use: ``hotops.kernels`` (arrays in, arrays out),
``hotops.bindings`` (torch), ``hotops.models``, ``hotops.data``.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

from ._ops import channel_max_abs

_SUBMODULES = ("kernels", "bindings", "models", "data", "demo", "cli")

__all__ = ["__version__", "channel_max_abs", *_SUBMODULES]


def __getattr__(name: str):
    if name in _SUBMODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
