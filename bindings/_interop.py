"""The one place that moves torch tensors to kernels and back without copies.

* CPU tensors become numpy views of the same memory (``Tensor.numpy()`` on the detached
  tensor, any strides); numpy results become tensors with ``torch.from_numpy``.
* CUDA tensors become CuPy arrays through DLPack (or, without CuPy, are handed to numba as
  ``__cuda_array_interface__`` objects); results come back through DLPack.
* GPU kernels launch on torch's current stream: ``stream_of(t)`` gives its handle.

Outputs are allocated by torch (``torch.empty``) and passed to the kernels as ``out=``, so
memory comes from torch's caching allocator and autograd sees ordinary tensors.
"""
from __future__ import annotations

import numpy as np
import torch

_NUMPY_DTYPES = {
    torch.float16: np.float16,
    torch.float32: np.float32,
    torch.float64: np.float64,
    torch.int32: np.int32,
    torch.int64: np.int64,
    torch.uint8: np.uint8,
    torch.bool: np.bool_,
}


def check_tensor(name: str, t, *, dtypes=None) -> None:
    """``TypeError`` naming the argument unless ``t`` is a tensor of an allowed dtype."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__module__}.{type(t).__qualname__}")
    if dtypes is not None and t.dtype not in dtypes:
        names = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"{name} must have dtype {names}; got {str(t.dtype).replace('torch.', '')}")


def check_same_device(**tensors) -> torch.device:
    """The device shared by all named tensors; ``TypeError`` naming them when they differ."""
    devices = {name: t.device for name, t in tensors.items() if t is not None}
    if len(set(devices.values())) > 1:
        where = ", ".join(f"{name} on {dev}" for name, dev in devices.items())
        raise TypeError(f"arguments are on different devices: {where}")
    return next(iter(devices.values()))


def _cupy():
    try:
        import cupy
    except Exception:
        return None
    return cupy


def to_kernel(t: torch.Tensor):
    """Zero-copy view of ``t`` for a kernel: numpy (CPU) or a CUDA array (CUDA)."""
    t = t.detach()
    if t.device.type == "cpu":
        if t.dtype not in _NUMPY_DTYPES:
            raise TypeError(f"dtype {t.dtype} has no numpy equivalent for hotops' CPU kernels")
        if t.is_conj() or t.is_neg():
            t = t.resolve_conj().resolve_neg()
        return t.numpy()
    if t.device.type == "cuda":
        cupy = _cupy()
        if cupy is not None:
            return cupy.from_dlpack(t)
        return t  # numba reads __cuda_array_interface__ directly
    raise TypeError(f"hotops kernels run on CPU and CUDA tensors, got a tensor on {t.device}")


def from_kernel(a, device: torch.device | None = None) -> torch.Tensor:
    """Zero-copy tensor over a kernel's output array."""
    if isinstance(a, torch.Tensor):
        return a
    if isinstance(a, np.ndarray):
        return torch.from_numpy(a)
    if hasattr(a, "__dlpack__"):
        return torch.from_dlpack(a)
    return torch.as_tensor(a, device=device)  # __cuda_array_interface__ (numba device arrays)


def stream_of(t: torch.Tensor) -> int | None:
    """Handle of torch's current stream on ``t``'s device (None on CPU)."""
    if t.device.type != "cuda":
        return None
    return torch.cuda.current_stream(t.device).cuda_stream
