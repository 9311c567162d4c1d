"""The spine: backend dispatch, GPU detection, zero-copy interop, import costs."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from hotops.bindings._interop import check_same_device, from_kernel, to_kernel
from hotops.kernels import INSTALL_HINT, _backend, backend_of


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()


def test_importing_kernels_does_not_import_torch():
    out = _run("import sys, hotops.kernels, hotops.kernels.channel_max; print('torch' in sys.modules)")
    assert out == "False"


def test_importing_hotops_is_cheap():
    # No torch, no numba, hence no compilation, at `import hotops`.
    out = _run("import sys, hotops; print('torch' in sys.modules, 'numba' in sys.modules)")
    assert out == "False False"


def test_numpy_goes_to_cpu():
    assert backend_of(a=np.zeros(3), b=None) == "cpu"


def test_torch_tensor_in_kernel_layer_is_a_type_error_with_hint():
    with pytest.raises(TypeError, match=r"x must be a numpy array or a CUDA array.*torch tensors go through"):
        backend_of(x=torch.zeros(3))


def test_unsupported_type_names_argument():
    with pytest.raises(TypeError, match=r"weights must be a numpy array .* got builtins.list"):
        backend_of(weights=[1.0])


def test_no_array_at_all():
    with pytest.raises(TypeError, match="no array argument"):
        backend_of(a=None)


class _FakeCudaArray:
    """Any object exposing __cuda_array_interface__ counts as a CUDA array."""

    __cuda_array_interface__ = {"shape": (3,), "typestr": "<f4", "data": (0, False), "version": 3}


def test_mixed_devices_name_the_arguments(monkeypatch):
    monkeypatch.setattr(_backend, "cuda_available", lambda: True)
    with pytest.raises(TypeError, match=r"different devices: g on cpu, out on cuda"):
        backend_of(g=np.zeros(3), out=_FakeCudaArray())


def test_cuda_array_without_gpu_raises_install_hint(monkeypatch):
    monkeypatch.setattr(_backend, "cuda_available", lambda: False)
    with pytest.raises(RuntimeError, match=r"hotops was installed without CUDA support: pip install hotops\[cuda12\]"):
        backend_of(g=_FakeCudaArray())
    assert "pip install hotops[cuda12]" in INSTALL_HINT


def test_gpu_detection_is_cached():
    _backend.cuda_available.cache_clear()
    first = _backend.cuda_available()
    assert _backend.cuda_available() is first
    assert _backend.cuda_available.cache_info().hits >= 1


def test_cpu_tensor_to_kernel_is_zero_copy():
    t = torch.randn(4, 5, requires_grad=True)
    a = to_kernel(t)
    assert isinstance(a, np.ndarray)
    assert a.__array_interface__["data"][0] == t.data_ptr()
    # strided views stay views too
    v = t.detach()[:, ::2]
    av = to_kernel(v)
    assert av.__array_interface__["data"][0] == v.data_ptr() and av.strides == (20, 8)


def test_kernel_output_to_tensor_is_zero_copy():
    a = np.arange(6, dtype=np.float32)
    t = from_kernel(a)
    assert t.data_ptr() == a.__array_interface__["data"][0]


def test_interop_refuses_unsupported_dtype_and_device():
    with pytest.raises(TypeError, match="bfloat16"):
        to_kernel(torch.zeros(2, dtype=torch.bfloat16))
    with pytest.raises(TypeError, match="meta"):
        to_kernel(torch.zeros(2, device="meta"))


def test_check_same_device():
    assert check_same_device(a=torch.zeros(1), b=None).type == "cpu"
    with pytest.raises(TypeError, match=r"different devices: a on cpu, b on meta"):
        check_same_device(a=torch.zeros(1), b=torch.zeros(1, device="meta"))


@pytest.mark.skipif(_backend.cuda_available(), reason="a real CUDA device or the simulator is available here")
def test_cuda_path_without_gpu_is_clear():
    """Kernels' GPU helpers refuse cleanly when CUDA is unavailable."""
    from hotops.kernels import _cuda

    _cuda.numba_cuda.cache_clear()
    with pytest.raises(RuntimeError, match="without CUDA support"):
        _cuda.numba_cuda()
