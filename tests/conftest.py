"""Shared fixtures: backends (CPU Numba / numba.cuda, real or simulated), data, seeds."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("NUMBA_NUM_THREADS", "2")

from _support import Backend, cuda_available, needs_cuda_kernels, simulator_enabled  # noqa: E402,F401


def pytest_report_header(config):
    mode = "simulator" if simulator_enabled() else ("GPU" if cuda_available() else "none")
    return f"hotops: numba.cuda kernels: {mode}"


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


@pytest.fixture(scope="session")
def shared_data():
    """The data folder (``$HOTOPS_DATA`` or ``../shared/data``); skips with a reason if absent."""
    from hotops.data import data_root

    root = data_root(required=False)
    if root is None:
        pytest.skip("data sets not found: set HOTOPS_DATA or put the data folder at ../shared/data")
    return root


@pytest.fixture(autouse=True)
def _subnormals_survive():
    """Fail the test that leaves denormals flushed to zero (process-wide CPU state, e.g.
    ``torch.set_flush_denormal(True)`` not undone): every later float test would change."""
    yield
    tiny = np.array([2.0 ** -130], dtype=np.float32)
    assert (tiny * np.float32(1.0))[0] != 0, "this test left the CPU flushing subnormal floats to zero"


@pytest.fixture(scope="module")
def torch_one_thread():
    """torch on one thread for a module of tiny-tensor tests (its pool costs more than it
    saves there), restored afterwards. Use: ``pytestmark = pytest.mark.usefixtures(...)``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
