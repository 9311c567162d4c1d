"""numba.cuda twin of ``cpu.py``: one thread per pixel, the same arithmetic (float64
accumulation, max-shifted log-sum-exp over the K components, lower triangle of A_k only).

The K components' parameters are tiny (K*(D*D + D + 1) values) and read by every thread
from global memory, where they stay in L1/L2. D is at most ``config.MAX_DIM`` (the
difference vector is a per-thread local array of that size).
"""
from __future__ import annotations

import math

from .. import _cuda
from . import config

_cuda.numba_cuda()  # raises the install hint when neither a GPU nor the simulator is there
from numba import cuda  # noqa: E402  (module global: the simulator swaps it for its fake)
import numba  # noqa: E402

MAX_DIM = config.MAX_DIM


@cuda.jit
def loglik_kernel(x, means, inv_chol, log_const, out):
    p = cuda.grid(1)
    n_pix, dim = x.shape
    if p >= n_pix:
        return
    n_comp = means.shape[0]
    diff = cuda.local.array(MAX_DIM, numba.float64)
    # pass 1: the largest term; pass 2: the shifted sum (no per-thread K-sized buffer)
    best = -math.inf
    for k in range(n_comp):
        for i in range(dim):
            diff[i] = numba.float64(x[p, i]) - means[k, i]
        maha = 0.0
        for i in range(dim):
            z = 0.0
            for j in range(i + 1):
                z += inv_chol[k, i, j] * diff[j]
            maha += z * z
        t = log_const[k] - 0.5 * maha
        if t > best or t != t:  # NaN wins, and stays
            if best == best:
                best = t
    if best == -math.inf or best != best:
        out[p] = best
        return
    acc = 0.0
    for k in range(n_comp):
        for i in range(dim):
            diff[i] = numba.float64(x[p, i]) - means[k, i]
        maha = 0.0
        for i in range(dim):
            z = 0.0
            for j in range(i + 1):
                z += inv_chol[k, i, j] * diff[j]
            maha += z * z
        acc += math.exp(log_const[k] - 0.5 * maha - best)
    out[p] = best + math.log(acc)


def log_likelihood(x, means, inv_chol, log_const, out, stream=None) -> None:
    """Launch on ``stream``; the float64 parameter arrays are host numpy arrays, copied over."""
    n_pix = x.shape[0]
    threads = config.CUDA_THREADS
    launch_stream = _cuda.stream_for(stream, like=x)
    if _cuda.simulator_enabled():
        d_means, d_inv, d_const = (cuda.to_device(a) for a in (means, inv_chol, log_const))
    else:
        d_means, d_inv, d_const = (cuda.to_device(a, stream=launch_stream) for a in (means, inv_chol, log_const))
    loglik_kernel[_cuda.blocks_for(n_pix, threads), threads, launch_stream](
        _cuda.as_device(x), d_means, d_inv, d_const, _cuda.as_device(out)
    )
