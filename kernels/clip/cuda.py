"""numba.cuda twin of ``cpu.py``: one launch clips every tensor of a group.

The tensors arrive as a tuple of 1-D device arrays and a device chunk table (tensor, start,
stop): block b clips chunk b, its threads striding through it, so one launch covers all
tensors (a multi-tensor apply). Each block counts its clipped elements with a shared-memory
tree reduction and adds the total to one int64 counter with a single atomic. The chunk table
is uploaded once per (tensor sizes, chunk, device) and cached. Reading the count back is the
only synchronisation, and is skipped when the caller does not ask for the fraction.
"""
from __future__ import annotations

import numpy as np

from .. import _cuda
from . import config

_cuda.numba_cuda()  # raises the install hint when neither a GPU nor the simulator is there
from numba import cuda, int64  # noqa: E402  (module global: the simulator swaps it for its fake)

_MAX_THREADS = 1024  # shared-memory slots per block (>= config.CUDA_THREADS)


@cuda.jit
def clip_kernel(grads, table, bound, counter, want_count):
    c = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    nthreads = cuda.blockDim.x
    g = grads[table[c, 0]]
    lo = table[c, 1]
    hi = table[c, 2]
    lower = -bound
    n = 0
    p = lo + tid
    while p < hi:
        v = g[p]
        if v > bound:
            g[p] = bound
            n += 1
        elif v < lower:
            g[p] = lower
            n += 1
        p += nthreads
    if want_count:
        partial = cuda.shared.array(_MAX_THREADS, int64)
        partial[tid] = n
        cuda.syncthreads()
        step = nthreads // 2
        while step > 0:
            if tid < step:
                partial[tid] += partial[tid + step]
            cuda.syncthreads()
            step //= 2
        if tid == 0 and partial[0] > 0:
            cuda.atomic.add(counter, 0, partial[0])


def device_table(table: np.ndarray, key):
    (dev,) = _cuda.cached_device_arrays(("clip", key), table)
    return dev


def clip(views: tuple, table: np.ndarray, key, bound, want_count: bool, stream=None, like=None):
    """Clip the 1-D device arrays ``views`` in place; return the count (or None)."""
    threads = config.CUDA_THREADS
    if threads < 1 or threads > _MAX_THREADS or threads & (threads - 1):
        raise ValueError(f"config.CUDA_THREADS must be a power of two <= {_MAX_THREADS}, got {threads}")
    if table.shape[0] == 0:
        return 0 if want_count else None
    s = _cuda.stream_for(stream, like=like)
    if want_count:
        counter = cuda.to_device(np.zeros(1, dtype=np.int64), stream=s)  # 8 bytes; we sync below anyway
    else:
        counter = device_table(np.zeros(1, dtype=np.int64), "unused-counter")  # never written
    clip_kernel[table.shape[0], threads, s](views, device_table(table, key), bound, counter, bool(want_count))
    if not want_count:
        return None
    host = counter.copy_to_host(stream=s)
    if s != 0:
        s.synchronize()
    return int(host[0])
