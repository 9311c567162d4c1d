"""torch binding of VDSR's adjustable gradient clipping (Kim, Lee & Lee 2016, Sec. 3.1).

``clip_grad_adjustable_(model.parameters(), theta, lr)`` clips every gradient element to
[-theta/lr, theta/lr] in place, in one fused pass per device and dtype (the multi-tensor
kernel of ``hotops.kernels.clip``), the way ``torch.nn.utils.clip_grad_value_`` would with
clip_value = theta/lr, but without a Python loop of per-parameter clamps. The gradients are
handed to the kernel zero-copy (numpy views on CPU, DLPack/CUDA-array views on GPU, torch's
current stream).
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from hotops.kernels import clip as _kernel

from ._interop import stream_of, to_kernel

__all__ = ["clip_grad_adjustable_"]

_NUMPY_OF = {torch.float32: "float32", torch.float64: "float64"}
_KERNEL_DTYPES = {"cpu": (torch.float32, torch.float64), "cuda": (torch.float16, torch.float32, torch.float64)}


def _fallback_(g: Tensor, bound: float) -> int:
    # strided or bfloat16 gradients: torch's own clamp (same semantics)
    # a Python scalar takes the tensor's dtype in both the comparison and the clamp
    n = int((g.abs() > bound).sum())
    g.clamp_(-bound, bound)
    return n


_STRIDED = torch.strided
_TENSOR_TYPES = frozenset({Tensor, torch.nn.Parameter})


def _cpu_fast_path(parameters, theta: float, lr: float):
    """(clipped, total) when every gradient is a contiguous CPU tensor of one float32/float64
    dtype (a model on the CPU), else None.

    One list comprehension per check over the gradients, no per-parameter Python branches:
    about 1 us per parameter (VDSR: 40 parameters in ~35 us, where the general loop below
    took ~200 us, more than the clipping itself).
    """
    if not set(map(type, parameters)) <= _TENSOR_TYPES:
        return None  # subclasses and non-tensors: the general path checks and names them
    grads = [p.grad for p in parameters]
    grads = [g for g in grads if g is not None]
    if not grads:
        return 0, 0
    dtypes = {g.dtype for g in grads}
    if len(dtypes) != 1:
        return None
    dtype = _NUMPY_OF.get(dtypes.pop())
    if dtype is None or not all([g.is_cpu and g.layout is _STRIDED and g.is_contiguous() for g in grads]):
        return None
    # raw addresses: `grads` keeps the memory alive during the call
    return _kernel.clip_grad_adjustable_addresses_([g.data_ptr() for g in grads], [g.numel() for g in grads], dtype, theta, lr)


def clip_grad_adjustable_(parameters: Tensor | Iterable[Tensor], theta: float, lr: float, *, return_fraction: bool = True):
    """Clip each gradient element to [-theta/lr, theta/lr] in place; return the fraction clipped.

    Parameters
    ----------
    parameters : Tensor or iterable of Tensors
        Parameters whose ``.grad`` is clipped; parameters without a gradient are skipped.
    theta : float
        Threshold on the step (> 0); the paper leaves it open, pytorch-vdsr uses 0.4.
    lr : float
        Current learning rate (> 0).
    return_fraction : bool
        Return clipped elements / all gradient elements (a float; on CUDA this synchronises).
        With False, nothing is read back and None is returned.

    Returns
    -------
    float or None

    Notes
    -----
    Kim, Lee & Lee (2016, VDSR), Sec. 3.1. Matches a loop of
    ``p.grad.clamp_(-theta / lr, theta / lr)`` bit for bit (the bound is rounded to each
    gradient's dtype; NaN passes through; elements equal to the bound are not counted).
    Contiguous float16 (CUDA), float32 and float64 gradients go through the fused kernel;
    other gradients (strided, bfloat16) through ``clamp_``. Sparse gradients raise TypeError.
    """
    bound = _kernel.clip_bound(theta, lr)
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    elif not isinstance(parameters, (list, tuple)):
        parameters = list(parameters)
    fast = _cpu_fast_path(parameters, theta, lr)
    if fast is not None:
        clipped, total = fast
        if not return_fraction:
            return None
        return clipped / total if total else 0.0
    with torch.no_grad():
        return _general(parameters, theta, lr, bound, return_fraction)


def _general(parameters, theta: float, lr: float, bound: float, return_fraction: bool):
    # any mix of devices, dtypes and layouts; names the offending parameter on bad input
    grads = []
    for i, p in enumerate(parameters):
        if not isinstance(p, Tensor):
            raise TypeError(f"parameters[{i}] must be a torch.Tensor, got {type(p).__qualname__}")
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            raise TypeError(f"parameters[{i}] has a sparse gradient; adjustable clipping needs dense gradients")
        grads.append(p.grad)
    total = sum(g.numel() for g in grads)
    clipped = 0
    by_device: dict = {}
    for g in grads:
        if g.device.type in _KERNEL_DTYPES and g.dtype in _KERNEL_DTYPES[g.device.type] and g.is_contiguous():
            by_device.setdefault(g.device, []).append(g)
        elif g.dtype.is_floating_point:
            clipped += _fallback_(g, bound)
        else:
            raise TypeError(f"gradients must be floating point, got {g.dtype}")
    for device, group in by_device.items():
        if device.type == "cpu":
            # raw addresses: the tensors in `group` keep the memory alive during the call
            for dtype in {g.dtype for g in group}:
                same = [g for g in group if g.dtype == dtype]
                got = _kernel.clip_grad_adjustable_addresses_(
                    [g.data_ptr() for g in same], [g.numel() for g in same],
                    _NUMPY_OF[dtype], theta, lr)
                clipped += got[0]
            continue
        got = _kernel.clip_grad_adjustable_(
            [to_kernel(g) for g in group], theta, lr, return_fraction=return_fraction, return_count=True,
            stream=stream_of(group[0]),
        )
        if return_fraction:
            clipped += got[0]
    if not return_fraction:
        return None
    return clipped / total if total else 0.0
