"""numba.cuda twins of ``cpu.py``: the same element-wise coupling kernels as grid-stride loops.

Each thread walks the 1-D views with stride ``gridDim * blockDim``. The count of non-finite
(or out-of-range) results goes to one int64 counter with an atomic add, executed only by a
thread that found one, so the common case costs no atomics; reading the counter back is the
only synchronisation and is skipped when the caller does not ask for the check.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _cuda
from . import config

_cuda.numba_cuda()  # raises the install hint when neither a GPU nor the simulator is there
from numba import cuda  # noqa: E402  (module global: the simulator swaps it for its fake)


@cuda.jit
def couple_kernel(y, f, sign, acc, add, do_acc, check, counter):
    start = cuda.grid(1)
    stride = cuda.gridsize(1)
    bad = 0
    i = start
    while i < y.size:
        v = y[i] + sign * f[i]
        y[i] = v
        if do_acc:
            acc[i] += add[i]
        if check and not math.isfinite(v):
            bad += 1
        i += stride
    if bad > 0:
        cuda.atomic.add(counter, 0, bad)


@cuda.jit
def quantize_kernel(x, out, scale, limit, counter):
    start = cuda.grid(1)
    stride = cuda.gridsize(1)
    bad = 0
    i = start
    while i < x.size:
        t = float(x[i]) * scale + 0.5
        if t < limit and t > -limit:  # False for NaN too; checked before flooring
            r = math.floor(t)
            out[i] = int(r)
        else:
            out[i] = 0
            bad += 1
        i += stride
    if bad > 0:
        cuda.atomic.add(counter, 0, bad)


@cuda.jit
def dequantize_kernel(q, out, inv_scale):
    start = cuda.grid(1)
    stride = cuda.gridsize(1)
    i = start
    while i < q.size:
        out[i] = float(q[i]) * inv_scale
        i += stride


@cuda.jit
def quantize_couple_kernel(y, f, sign, scale, limit, acc, add, do_acc, counter):
    start = cuda.grid(1)
    stride = cuda.gridsize(1)
    bad = 0
    i = start
    while i < y.size:
        t = float(f[i]) * scale + 0.5
        if t < limit and t > -limit:  # False for NaN too; checked before flooring
            r = math.floor(t)
            s = y[i] + sign * int(r)
            if s > limit or s < -limit:
                bad += 1
            else:
                y[i] = s
        else:
            bad += 1
        if do_acc:
            acc[i] += add[i]
        i += stride
    if bad > 0:
        cuda.atomic.add(counter, 0, bad)


def _grid(n: int) -> tuple[int, int]:
    threads = int(config.CUDA_THREADS)
    if threads < 1 or threads > 1024:
        raise ValueError(f"config.CUDA_THREADS must be in [1, 1024], got {threads}")
    return min(_cuda.blocks_for(n, threads), max(1, int(config.CUDA_MAX_BLOCKS))), threads


def _counter(stream):
    return cuda.to_device(np.zeros(1, dtype=np.int64), stream=stream)


def _read(counter, stream) -> int:
    host = counter.copy_to_host(stream=stream)
    if stream != 0:
        stream.synchronize()
    return int(host[0])


def couple(y, f, sign, acc, add, check: bool, stream=None, like=None) -> int:
    s = _cuda.stream_for(stream, like=like)
    blocks, threads = _grid(y.size)
    do_acc = acc is not None
    if not do_acc:
        acc, add = y[:1], y[:1]
    counter = _counter(s)
    couple_kernel[blocks, threads, s](y, f, np.dtype(y.dtype).type(sign), acc, add, do_acc, bool(check), counter)
    return _read(counter, s) if check else 0


def quantize(x, out, scale: float, limit: float, stream=None, like=None) -> int:
    s = _cuda.stream_for(stream, like=like)
    blocks, threads = _grid(x.size)
    counter = _counter(s)
    quantize_kernel[blocks, threads, s](x, out, scale, limit, counter)
    return _read(counter, s)


def dequantize(q, out, inv_scale: float, stream=None, like=None) -> None:
    s = _cuda.stream_for(stream, like=like)
    blocks, threads = _grid(q.size)
    dequantize_kernel[blocks, threads, s](q, out, inv_scale)


def quantize_couple(y, f, sign: int, scale: float, limit: float, acc, add, stream=None, like=None) -> int:
    s = _cuda.stream_for(stream, like=like)
    blocks, threads = _grid(y.size)
    do_acc = acc is not None
    if not do_acc:
        acc, add = f[:1], f[:1]
    counter = _counter(s)
    quantize_couple_kernel[blocks, threads, s](y, f, np.int64(sign), scale, limit, acc, add, do_acc, counter)
    return _read(counter, s)
