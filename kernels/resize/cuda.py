"""numba.cuda twin of ``cpu.py``: the same axis pass, finite check and uint8 rounding.

One thread per output element (a, i, b) of the (outer, L_out, B) view; consecutive threads
take consecutive b, so a warp reads a contiguous run of each source row (coalesced) for the
height pass, and neighbouring taps of one row for the width pass. Taps are summed in float64
in the same order as the CPU kernel (tap 0 first). The weight/index tables are uploaded once
per (axis key, device) and cached: after the first call at a given size no host-to-device
copy happens; the non-finite check reads back one int32 flag (a synchronisation), which
callers can skip with ``check_finite=False``.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _cuda
from . import config

_cuda.numba_cuda()  # raises the install hint when neither a GPU nor the simulator is there
from numba import cuda  # noqa: E402  (module global: the simulator swaps it for its fake)


@cuda.jit
def pass_kernel(src, dst, idx, w, quantize):
    n_outer, n_out, inner = dst.shape
    t = cuda.grid(1)
    if t >= n_outer * n_out * inner:
        return
    b = t % inner
    r = t // inner
    i = r % n_out
    a = r // n_out
    acc = 0.0
    for k in range(idx.shape[1]):
        acc += w[i, k] * src[a, idx[i, k], b]
    if quantize:
        if acc <= 0.0:
            acc = 0.0
        elif acc >= 255.0:
            acc = 255.0
        else:
            acc = math.floor(acc + 0.5)
    dst[a, i, b] = acc


@cuda.jit
def nonfinite_kernel(flat, flag):
    p = cuda.grid(1)
    if p < flat.size:
        d = flat[p] - flat[p]
        if d != d:
            flag[0] = 1


@cuda.jit
def copy2_kernel(src, dst):
    t = cuda.grid(1)
    n0, n1 = dst.shape
    if t < n0 * n1:
        dst[t // n1, t % n1] = src[t // n1, t % n1]


@cuda.jit
def copy3_kernel(src, dst):
    t = cuda.grid(1)
    n0, n1, n2 = dst.shape
    if t < n0 * n1 * n2:
        k = t % n2
        r = t // n2
        dst[r // n1, r % n1, k] = src[r // n1, r % n1, k]


@cuda.jit
def copy4_kernel(src, dst):
    t = cuda.grid(1)
    n0, n1, n2, n3 = dst.shape
    if t < n0 * n1 * n2 * n3:
        q = t % n3
        r = t // n3
        k = r % n2
        r = r // n2
        dst[r // n1, r % n1, k, q] = src[r // n1, r % n1, k, q]


_COPY = {2: copy2_kernel, 3: copy3_kernel, 4: copy4_kernel}


def device_table(indices: np.ndarray, weights: np.ndarray, key):
    """Device copies of one gather table, uploaded once per (key, device) and cached."""
    return _cuda.cached_device_arrays(("resize", key), indices, weights)


def _launch(kernel, total, stream, like, *args):
    threads = config.CUDA_THREADS
    kernel[_cuda.blocks_for(total, threads), threads, _cuda.stream_for(stream, like=like)](*args)


def run_pass(src, dst, indices, weights, key, quantize, stream=None) -> None:
    """One axis pass on device arrays (outer, L_in, B) -> (outer, L_out, B)."""
    n_outer, n_out, inner = dst.shape
    total = n_outer * n_out * inner
    if total == 0:
        return
    d_idx, d_w = device_table(indices, weights, key)
    _launch(pass_kernel, total, stream, src, _cuda.as_device(src), _cuda.as_device(dst), d_idx, d_w, bool(quantize))


def resize4(x4, out4, steps, quantize, stream=None) -> None:
    """Run the axis passes ``steps`` = [(axis, indices, weights, key), ...] on (pre, H, W, post).

    One launch per pass on 3-D views: the height pass sees (pre, H, W * post), the width pass
    (pre * H', W, post); intermediates come from the caller's allocator family.
    """
    if not steps:
        copy(x4, out4, stream=stream)
        return
    cur = x4
    pre, h, w, post = x4.shape
    for n, (axis, indices, weights, key) in enumerate(steps):
        n_out = indices.shape[0]
        new_h, new_w = (n_out, w) if axis == 0 else (h, n_out)
        dst = out4 if n == len(steps) - 1 else _cuda.empty((pre, new_h, new_w, post), x4.dtype, like=x4)
        if axis == 0:
            src3, dst3 = cur.reshape(pre, h, w * post), dst.reshape(pre, new_h, w * post)
        else:
            src3, dst3 = cur.reshape(pre * h, w, post), dst.reshape(pre * h, new_w, post)
        run_pass(src3, dst3, indices, weights, key, quantize, stream=stream)
        cur, h, w = dst, new_h, new_w


def copy(src, dst, stream=None) -> None:
    """dst[...] = src for any strides of src (dst C-contiguous, same shape, ndim 2 to 4)."""
    total = math.prod(dst.shape)
    if total == 0:
        return
    _launch(_COPY[len(dst.shape)], total, stream, src, _cuda.as_device(src), _cuda.as_device(dst))


def count_nonfinite(x, stream=None) -> int:
    """1 when a C-contiguous device array holds a NaN or inf, else 0.

    The flag is written and read back on the launch stream (torch's current stream in the
    bindings, which may be a non-blocking stream), then that stream is synchronised.
    """
    flat = _cuda.as_device(x).reshape(math.prod(x.shape))
    s = _cuda.stream_for(stream, like=x)
    flag = cuda.to_device(np.zeros(1, dtype=np.int32), stream=s)
    if flat.size:
        threads = config.CUDA_THREADS
        nonfinite_kernel[_cuda.blocks_for(flat.size, threads), threads, s](flat, flag)
    host = flag.copy_to_host(stream=s)
    if s != 0:
        s.synchronize()
    return int(host[0])
