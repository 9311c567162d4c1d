"""Adjustable gradient clipping of VDSR, fused over all gradients (a multi-tensor kernel).

Kim, Lee & Lee, "Accurate Image Super-Resolution Using Very Deep Convolutional Networks"
(CVPR 2016), Sec. 3.1: to train a 20-layer network with a high learning rate, each gradient
element is clipped to [-theta/gamma, theta/gamma], gamma being the current learning rate, so
that the effective step gamma * g stays within [-theta, theta] however gamma is scheduled.
"""
from __future__ import annotations

import functools
import math
import numbers

import numpy as np

from .._backend import CPU, backend_of
from .._validate import check_dtype
from . import config

__all__ = ["clip_grad_adjustable_", "clip_grad_adjustable_addresses_", "clip_bound"]

_CPU_DTYPES = (np.float32, np.float64)
_CUDA_DTYPES = (np.float16, np.float32, np.float64)
_CPU_SET = frozenset(np.dtype(d) for d in _CPU_DTYPES)
# dtype spellings the raw-address entry accepts (a dict lookup per call, not np.dtype())
_ADDRESS_DTYPES = {k: np.dtype(d) for d in _CPU_DTYPES for k in (d, np.dtype(d), np.dtype(d).name)}
_CUDA_SET = frozenset(np.dtype(d) for d in _CUDA_DTYPES)


def _positive(name: str, v) -> float:
    if not isinstance(v, numbers.Real) or isinstance(v, bool):
        raise TypeError(f"{name} must be a real number, got {v!r}")
    v = float(v)
    if not (math.isfinite(v) and v > 0.0):
        raise ValueError(f"{name} must be positive and finite, got {v!r}")
    return v


def clip_bound(theta, lr) -> float:
    """theta / lr after checking both (``ValueError`` for values <= 0 or non-finite)."""
    bound = _positive("theta", theta) / _positive("lr", lr)
    if not math.isfinite(bound):
        raise ValueError(f"theta / lr overflows: theta={theta!r}, lr={lr!r}")
    return bound


@functools.lru_cache(maxsize=256)
def chunk_table(sizes: tuple, chunk: int) -> np.ndarray:
    """Rows (tensor, start, stop) cutting every tensor into chunks of at most ``chunk``."""
    rows = []
    for t, n in enumerate(sizes):
        starts = np.arange(0, n, chunk, dtype=np.int64)
        block = np.empty((starts.size, 3), dtype=np.int64)
        block[:, 0] = t
        block[:, 1] = starts
        block[:, 2] = np.minimum(starts + chunk, n)
        rows.append(block)
    table = np.concatenate(rows) if rows else np.empty((0, 3), np.int64)
    table.setflags(write=False)
    return table


def _flat_view(name: str, g, backend):
    """A 1-D view sharing g's memory (g must be contiguous: C or Fortran order)."""
    if backend == CPU:
        if not (g.flags.c_contiguous or g.flags.f_contiguous):
            raise ValueError(f"{name} must be contiguous (clipping works in place on its memory)")
        if not g.flags.writeable:
            raise ValueError(f"{name} is read-only: it must be writeable")
        return g.reshape(-1, order="F" if not g.flags.c_contiguous else "C")
    from .. import _cuda

    d = _cuda.as_device(g)
    if d.is_c_contiguous():
        return d.reshape(math.prod(d.shape))
    if d.is_f_contiguous():
        return d.T.reshape(math.prod(d.shape))
    raise ValueError(f"{name} must be contiguous (clipping works in place on its memory)")


def _bucket(n: int) -> int:
    b = 1
    while b < n:
        b *= 2
    return b


def clip_grad_adjustable_(grads, theta, lr, *, return_fraction: bool = True, return_count: bool = False, stream=None):
    """Clip every element of every array to [-theta/lr, theta/lr], in place, in one pass.

    Parameters
    ----------
    grads : sequence of arrays
        numpy arrays (float32/float64) or CUDA arrays (float16/float32/float64), all on one
        device, each contiguous (C or Fortran order) and writeable. Any shapes; empty
        arrays and an empty sequence are fine.
    theta : float
        Clipping threshold on the step size (> 0). Kim et al. do not publish it;
        pytorch-vdsr uses 0.4.
    lr : float
        Current learning rate (> 0).
    return_fraction : bool
        Return the fraction of elements that were clipped. On CUDA this reads back one
        counter (a synchronisation); pass False to skip it and get None.
    return_count : bool
        Return ``(clipped, total)`` element counts instead of the fraction.
    stream : int, optional
        CUDA stream handle (torch's current stream in the bindings).

    Returns
    -------
    float or None
        clipped elements / all elements (0.0 when there are none).

    Notes
    -----
    Kim, Lee & Lee (2016, VDSR), Sec. 3.1, adjustable gradient clipping. The bound is
    rounded to each array's dtype (as ``torch.clamp_`` rounds a Python scalar), elements
    equal to it count as not clipped, and NaNs pass through unchanged. Arrays are grouped
    by dtype; each group is one parallel region on the CPU or one kernel launch on the GPU
    (per ``config.MAX_TENSORS_PER_LAUNCH`` tensors).
    """
    bound = clip_bound(theta, lr)
    if isinstance(grads, (str, bytes)) or not hasattr(grads, "__iter__"):
        raise TypeError(f"grads must be a sequence of arrays, got {type(grads).__qualname__}")
    grads = list(grads)
    if not grads:
        return _result(0, 0, return_fraction, return_count)
    if all(type(g) is np.ndarray for g in grads):  # fast path: no per-array kwargs building
        backend = CPU
    else:
        backend = backend_of(**{f"grads[{i}]": g for i, g in enumerate(grads)})
    allowed = _CPU_SET if backend == CPU else _CUDA_SET
    groups: dict = {}
    total = 0
    for i, g in enumerate(grads):
        dtype = g.dtype if backend == CPU else np.dtype(g.dtype)
        if dtype not in allowed:
            check_dtype(f"grads[{i}]", g, _CPU_DTYPES if backend == CPU else _CUDA_DTYPES)  # raises, naming it
        n = math.prod(g.shape)
        total += n
        if n:
            groups.setdefault(dtype, []).append(_flat_view(f"grads[{i}]", g, backend))
    if backend == CPU:
        from . import cpu as impl
    else:
        from . import cuda as impl
    clipped = 0
    for dtype, views in groups.items():
        b = dtype.type(bound)
        step = config.MAX_TENSORS_PER_LAUNCH
        for lo in range(0, len(views), step):
            part = views[lo : lo + step]
            sizes = tuple(int(v.shape[0]) for v in part)
            padded = _bucket(len(part))
            if backend == CPU:
                addresses = np.fromiter((v.__array_interface__["data"][0] for v in part), np.int64, len(part))
                clipped += impl.clip_addresses(addresses, np.asarray(sizes, np.int64), config.CPU_CHUNK, b)
            else:
                from .. import _cuda

                dummy = _cuda.empty((1,), dtype, like=grads[0])
                table = chunk_table(sizes, config.CUDA_CHUNK)
                got = impl.clip(
                    tuple(part) + (_cuda.as_device(dummy),) * (padded - len(part)),
                    table, (sizes, config.CUDA_CHUNK), b, return_fraction, stream=stream, like=grads[0],
                )
                clipped += got or 0
    return _result(clipped, total, return_fraction, return_count)


def clip_grad_adjustable_addresses_(addresses, sizes, dtype, theta, lr) -> tuple[int, int]:
    """CPU clipping of raw memory: ``sizes[i]`` contiguous elements of ``dtype`` at each
    ``addresses[i]``; returns ``(clipped, total)`` element counts.

    For bindings that hold the owning objects (torch tensors) and have checked that each is
    a contiguous, writeable CPU buffer of ``dtype`` (float32 or float64): it skips building
    one numpy view per tensor, which dominated the time for models with many small
    parameters. Everything else is as :func:`clip_grad_adjustable_`.
    """
    bound = clip_bound(theta, lr)
    try:
        dtype = _ADDRESS_DTYPES[dtype]
    except (KeyError, TypeError):  # another spelling, or not a dtype at all
        dtype = np.dtype(dtype)
        if dtype not in _CPU_SET:
            raise TypeError(f"dtype must be float32 or float64, got {dtype}") from None
    addresses = np.asarray(addresses, dtype=np.int64)
    sizes = np.asarray(sizes, dtype=np.int64)
    if addresses.ndim != 1 or addresses.shape != sizes.shape:
        raise ValueError(f"addresses and sizes must be 1-D of one length, got {addresses.shape} and {sizes.shape}")
    if not sizes.size:
        return 0, 0
    from . import cpu as impl

    if not (addresses.flags.c_contiguous and sizes.flags.c_contiguous):
        addresses, sizes = np.ascontiguousarray(addresses), np.ascontiguousarray(sizes)
    clipped = impl.clip_addresses(addresses, sizes, config.CPU_CHUNK, dtype.type(bound))
    if clipped < 0:
        raise ValueError("sizes must be >= 0")
    return clipped, int(sizes.sum())


def _result(clipped: int, total: int, return_fraction: bool, return_count: bool):
    if not return_fraction:
        return None
    if return_count:
        return clipped, total
    return clipped / total if total else 0.0
