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
