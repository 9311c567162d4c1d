"""Shared fixtures: backends (CPU Numba / numba.cuda, real or simulated), data, seeds."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("NUMBA_NUM_THREADS", "2")

from hotops.kernels import cuda_available, simulator_enabled  # noqa: E402

try:
    import torch

    HAS_TORCH_CUDA = torch.cuda.is_available()
except Exception:  # pragma: no cover
    HAS_TORCH_CUDA = False

needs_cuda_kernels = pytest.mark.skipif(
    not cuda_available(), reason="numba.cuda kernels need a CUDA GPU or NUMBA_ENABLE_CUDASIM=1"
)
needs_gpu = pytest.mark.skipif(not HAS_TORCH_CUDA or simulator_enabled(), reason="needs a real CUDA GPU")


def pytest_report_header(config):
    mode = "simulator" if simulator_enabled() else ("GPU" if cuda_available() else "none")
    return f"hotops: numba.cuda kernels: {mode}"


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


@pytest.fixture(
    params=[
        pytest.param("cpu", id="cpu"),
        pytest.param("cuda", id="cuda", marks=[pytest.mark.cudasim, needs_cuda_kernels]),
    ]
)
def backend(request) -> Backend:
    return Backend(request.param)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)
