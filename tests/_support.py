"""Helpers shared by the tests (a plain module: test files import it, never conftest)."""
from __future__ import annotations

import numpy as np
import pytest

from hotops.kernels import cuda_available, simulator_enabled

try:
    import torch

    HAS_TORCH_CUDA = torch.cuda.is_available()
except Exception:  # pragma: no cover
    HAS_TORCH_CUDA = False

needs_cuda_kernels = pytest.mark.skipif(
    not cuda_available(), reason="numba.cuda kernels need a CUDA GPU or NUMBA_ENABLE_CUDASIM=1"
)
needs_gpu = pytest.mark.skipif(not HAS_TORCH_CUDA or simulator_enabled(), reason="needs a real CUDA GPU")


class Backend:
    """Moves numpy arrays to a kernel backend and back, for tests shared by the twins."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name

    def put(self, a: np.ndarray):
        if self.name == "cpu":
            return a
        from numba import cuda

        return cuda.to_device(a)

    def get(self, a) -> np.ndarray:
        if self.name == "cpu":
            return np.asarray(a)
        if hasattr(a, "copy_to_host"):
            return a.copy_to_host()
        return np.asarray(a.get())  # CuPy


def data_path(*parts: str):
    """A path inside the data folder ($HOTOPS_DATA or ../shared/data), or None if absent."""
    from hotops.data import data_root

    root = data_root(required=False)
    if root is None:
        return None
    path = root.joinpath(*parts)
    return path if path.exists() else None


def needs_data(*parts: str):
    """skipif marker for tests that read ``parts`` inside the data folder."""
    where = "/".join(parts) or "the data folder"
    return pytest.mark.skipif(
        data_path(*parts) is None,
        reason=f"{where} not found in the data folder (set HOTOPS_DATA or put it at ../shared/data)",
    )


#: The one tolerance table of the test suite: (rtol, atol) per dtype for comparing a kernel
#: with an independent float64 reference of the same algorithm, for values of order 1. An
#: op whose arithmetic grows the rounding error (long reductions, iterations) passes a
#: ``scale``, and values of another order their ``magnitude`` (atol grows with it), to
#: :func:`tol`, so the slack a test takes is written where it is taken.
TOLERANCES = {
    "float16": (1e-3, 1e-4),
    "bfloat16": (8e-3, 1e-3),
    "float32": (2e-6, 1e-6),
    "float64": (1e-12, 1e-12),
}


def tol(dtype, scale: float = 1.0, magnitude: float = 1.0) -> dict:
    """``dict(rtol=..., atol=...)`` for ``dtype`` (numpy or torch): the table's entry times
    ``scale``, atol also times ``magnitude``."""
    name = str(dtype).removeprefix("torch.")
    if name not in TOLERANCES:
        name = np.dtype(dtype).name
    rtol, atol = TOLERANCES[name]
    return {"rtol": rtol * scale, "atol": atol * scale * magnitude}
