"""numba.cuda twin of ``cpu.py``: same semantics (NaN rule, ties, backward routing).

One thread per output pixel loops over the C channels, so a warp reads 32 consecutive
addresses of each channel plane (coalesced for NCHW). Strides are honoured by numba's
array indexing, so non-contiguous inputs (channels-last, slices) need no copy. float16
uses numba's native half-precision abs and comparisons (|x| is exact in any precision).
The backward re-derives the winning channel from the saved M, like the CPU kernel.
"""
from __future__ import annotations

import numpy as np

from .. import _cuda
from . import config

_cuda.numba_cuda()  # raises the install hint when neither a GPU nor the simulator is there
from numba import cuda  # noqa: E402  (module global: the simulator swaps it for its fake)


@cuda.jit
def forward_kernel(g, out, argmax, want_argmax):
    n_img, n_ch, height, width = g.shape
    t = cuda.grid(1)
    hw = height * width
    if t >= n_img * hw:
        return
    n = t // hw
    p = t % hw
    i = p // width
    j = p % width
    best = abs(g[n, 0, i, j])
    arg = 0
    for c in range(1, n_ch):
        v = abs(g[n, c, i, j])
        if v > best or (v != v and best == best):
            best = v
            arg = c
    out[n, i, j] = best
    if want_argmax:
        argmax[n, i, j] = arg

@cuda.jit
def backward_kernel(grad_out, g, m, grad_g, zero):
    n_img, n_ch, height, width = grad_g.shape
    t = cuda.grid(1)
    hw = height * width
    if t >= n_img * hw:
        return
    n = t // hw
    p = t % hw
    i = p // width
    j = p % width
    target = m[n, i, j]
    is_nan = target != target
    go = grad_out[n, i, j]
    found = False
    for c in range(n_ch):
        v = g[n, c, i, j]
        a = abs(v)
        hit = False
        if not found:
            if is_nan:
                hit = a != a
            else:
                hit = a == target
        if hit:
            found = True
            if v > zero:
                grad_g[n, c, i, j] = go
            elif v < zero:
                grad_g[n, c, i, j] = -go
            elif v == zero:
                grad_g[n, c, i, j] = zero
            else:
                grad_g[n, c, i, j] = v  # NaN propagates
        else:
            grad_g[n, c, i, j] = zero


def forward(g, out, argmax, stream=None) -> None:
    n, _c, h, w = g.shape
    total = n * h * w
    threads = config.CUDA_THREADS
    dg, dout = _cuda.as_device(g), _cuda.as_device(out)
    want = argmax is not None
    dargmax = _cuda.as_device(argmax if want else _cuda.empty((1, 1, 1), "int32", like=g))
    launch_stream = _cuda.stream_for(stream, like=g)
    forward_kernel[_cuda.blocks_for(total, threads), threads, launch_stream](dg, dout, dargmax, want)


def backward(grad_out, g, m, grad_g, stream=None) -> None:
    n, _c, h, w = g.shape
    total = n * h * w
    threads = config.CUDA_THREADS
    launch_stream = _cuda.stream_for(stream, like=g)
    backward_kernel[_cuda.blocks_for(total, threads), threads, launch_stream](
        _cuda.as_device(grad_out), _cuda.as_device(g), _cuda.as_device(m), _cuda.as_device(grad_g),
        np.zeros((), dtype=grad_g.dtype)[()],
    )
