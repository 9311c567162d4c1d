"""hotops.kernels: arrays in, arrays out.

The kernel layer never imports torch. Each op is a sub-package with the same shape
(``__init__.py`` validates and dispatches, ``cpu.py`` holds the Numba kernels, ``cuda.py``
their numba.cuda twins). Sub-packages are imported lazily so that ``import hotops.kernels``
compiles nothing and stays cheap.
"""
from __future__ import annotations

import importlib

from ._backend import (
    INSTALL_HINT,
    backend_of,
    cuda_available,
    is_cupy,
    is_torch,
    require_cuda,
    simulator_enabled,
)

# One line per op sub-package (each capability adds its own line).
_OPS = (
    "channel_max",
    "resize",
    "clip",
    "gmm",
    "topk_threshold",
    "reversible",
    "nmf",
)

__all__ = [
    "INSTALL_HINT",
    "backend_of",
    "cuda_available",
    "is_cupy",
    "is_torch",
    "require_cuda",
    "simulator_enabled",
    *_OPS,
]


def __getattr__(name: str):
    if name in _OPS:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
