"""The one place that maps an array to its backend, and detects the GPU once.

numpy arrays go to the Numba CPU kernels; CuPy arrays, numba device arrays and any other
object exposing ``__cuda_array_interface__`` go to the numba.cuda kernels. Under
``NUMBA_ENABLE_CUDASIM=1`` numba's simulator stands in for the GPU and its ``FakeCUDAArray``
device arrays count as CUDA arrays, so every GPU kernel can be exercised on a CPU.
"""
from __future__ import annotations

import functools
import os
import sys

import numpy as np

INSTALL_HINT = "hotops was installed without CUDA support: pip install hotops[cuda12]"

CPU = "cpu"
CUDA = "cuda"


def is_torch(x) -> bool:
    """Whether ``x`` is a torch tensor, decided without importing torch (an object of a torch
    type exists only once torch is imported)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def is_cupy(x) -> bool:
    """Whether ``x`` is a CuPy array (or another object of a ``cupy``/``cupyx`` module)."""
    return type(x).__module__.split(".")[0] in ("cupy", "cupyx")


def simulator_enabled() -> bool:
    """True when numba's CUDA simulator is switched on (``NUMBA_ENABLE_CUDASIM=1``)."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


@functools.lru_cache(maxsize=None)
def cuda_available() -> bool:
    """Whether numba.cuda kernels can run here (a real GPU, or the simulator).

    Detected once per process and cached; ``cuda_available.cache_clear()`` re-detects.
    """
    if simulator_enabled():
        return True
    try:
        from numba import cuda
    except Exception:  # numba built without its CUDA target
        return False
    try:
        return bool(cuda.is_available())
    except Exception:  # no driver, broken driver
        return False


def require_cuda(what: str = "this operation") -> None:
    """Raise a clear ``RuntimeError`` when no CUDA device (or simulator) is usable."""
    if not cuda_available():
        raise RuntimeError(f"{INSTALL_HINT} (needed for {what}: no usable CUDA device was found)")


def is_simulated_device_array(x) -> bool:
    """A device array of numba's CUDA simulator (it has no ``__cuda_array_interface__``)."""
    cls = type(x)
    return cls.__name__ == "FakeCUDAArray" and cls.__module__.startswith("numba.cuda.simulator")


def has_cuda_array_interface(x) -> bool:
    # torch's CPU tensors define the attribute as a property that raises: hasattr is not enough.
    try:
        return getattr(x, "__cuda_array_interface__", None) is not None
    except Exception:
        return False


def kind_of(x) -> str | None:
    """``'cpu'``, ``'cuda'`` or ``None`` (not an array hotops' kernels accept)."""
    if isinstance(x, np.ndarray):
        return CPU
    if is_simulated_device_array(x) or has_cuda_array_interface(x):
        return CUDA
    return None


def _describe(x) -> str:
    cls = type(x)
    return f"{cls.__module__}.{cls.__qualname__}"


def backend_of(**arrays) -> str:
    """Backend shared by all the named arrays (``None`` values are ignored).

    Raises
    ------
    TypeError
        If an argument is not a numpy or CUDA array (torch tensors belong to
        ``hotops.bindings``), or if the arguments live on different devices; the message
        names the arguments.
    """
    kinds: dict[str, str] = {}
    for name, x in arrays.items():
        if x is None:
            continue
        kind = kind_of(x)
        if kind is None:
            hint = ""
            if type(x).__module__.split(".")[0] == "torch":
                hint = " (torch tensors go through hotops.bindings or the hotops.* functions)"
            raise TypeError(
                f"{name} must be a numpy array or a CUDA array (CuPy, numba device array, "
                f"__cuda_array_interface__), got {_describe(x)}{hint}"
            )
        kinds[name] = kind
    if not kinds:
        raise TypeError("no array argument was given")
    if len(set(kinds.values())) > 1:
        where = ", ".join(f"{name} on {kind}" for name, kind in kinds.items())
        raise TypeError(f"arguments are on different devices: {where}")
    backend = next(iter(kinds.values()))
    if backend == CUDA:
        require_cuda("a CUDA array argument")
    return backend
