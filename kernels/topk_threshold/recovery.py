"""Iterative hard thresholding (IHT) on a validated batch of numpy / CuPy samples.

Bafna, Murtagh & Vyas (NeurIPS 2018), Algorithm 1: an attacked sample y = x + e, x k-sparse
in the orthonormal F and e t-sparse in pixel space, is split by

    x^0 = 0;  for p = 1..T:  e^p = H_t(y - F^-1 x^{p-1}),  x^p = H_k(F(y - e^p)).

:func:`run` picks the implementation for the batch ``y2`` (B, *sizes):

* small real images with the DCT: every iteration of every image in one Numba pass
  (``cpu.iht_dct_small``), each image stopping on its own, the same arithmetic as the loop;
* otherwise :func:`iht_loop`: per iteration, the pixel step ``e = H_t(y - x), z = y - e``
  (one Numba pass on numpy, ``cuda.topk_threshold`` on CuPy) and the projection of
  ``project.py``, over the samples that are still running (converged ones drop out).

The op's entry (``__init__.py``) validates the arguments and the finiteness of y.
"""
from __future__ import annotations

import math

import numpy as np

from .project import one_blas_thread, select
from .transforms import dct_mats_2d, forward, inverse, use_dct_matmul, xp_fft


def pixel_step(ya, xa, t, n):
    """(e, y - e) with e = H_t(y - x) per sample (numpy): one Numba pass, no temporaries."""
    from . import cpu

    y2 = np.ascontiguousarray(ya).reshape(-1, n)
    x2 = np.ascontiguousarray(xa).reshape(-1, n)
    e2 = np.empty_like(y2)
    z2 = np.empty_like(y2)
    if y2.shape[0] and cpu.threshold_residual(y2, x2, t, e2, z2).any():
        raise ValueError("c must be finite: the residual y - x holds NaN or inf")
    return e2.reshape(ya.shape), z2.reshape(ya.shape)


def iht_loop(xp, y2, x_hat, e_hat, iters, active, k, t, n, n_iter, tol, transform, sizes, d, w, real_fft):
    """Algorithm 1's iterations on the (b, *sizes) batch y2, one transform call per step."""
    b = y2.shape[0]
    for _p in range(n_iter):
        if active.size == 0:
            break
        full = active.size == b  # every sample still running: no gathers, no scatters
        idx = active if xp is np else xp.asarray(active)
        ya = y2 if full else y2[idx]
        xa = x_hat if full else x_hat[idx]
        if xp is np:  # H_t in pixel space and y - e in one pass, no temporaries
            e_new, z = pixel_step(ya, xa, t, n)
        else:
            from . import cuda

            r = (ya - xa).reshape(active.size, n)
            e_new = cuda.topk_threshold(r, t, 1, r, False, in_place=True).reshape(ya.shape)  # H_t in pixel space
            z = ya - e_new
        C = forward(z, transform, d, w, real_fft)
        C, _ = select(C, k, sizes, real_fft)
        x_new = inverse(C, transform, sizes, w, real_fft, y2.dtype)
        iters[active] += 1
        if tol > 0:
            diff = (x_new - xa).reshape(active.size, n)
            xn = x_new.reshape(active.size, n)
            change = xp.sqrt(xp.einsum("ij,ij->i", diff, diff))
            norm = xp.sqrt(xp.einsum("ij,ij->i", xn, xn))
            done = change <= tol * norm
            done = done.get() if hasattr(done, "get") else np.asarray(done)
        if full:
            x_hat, e_hat = x_new, e_new
        else:
            x_hat[idx] = x_new
            e_hat[idx] = e_new
        if tol > 0:
            active = active[~done]
    return x_hat, e_hat


def run(y2, k, t, n_iter, tol, transform, sizes, workers):
    """(x_hat, e_hat, iters) of Algorithm 1 for the C-contiguous, finite, real (B, *sizes)
    batch y2; iters: (B,) int64, the iterations each sample ran."""
    xp = xp_fft(y2)[0]
    d = len(sizes)
    n = math.prod(sizes)
    b = y2.shape[0]
    x_hat = xp.zeros_like(y2)
    e_hat = xp.zeros_like(y2)
    iters = np.zeros(b, np.int64)
    if transform == "dct" and d == 2 and use_dct_matmul(y2, d):
        # small real images: every iteration of every image in one Numba pass (same arithmetic)
        from . import cpu

        if b:
            with one_blas_thread(True):
                bad = cpu.iht_dct_small(y2, k, t, n_iter, tol, dct_mats_2d(*sizes, y2.dtype), x_hat, e_hat, iters)
            if bad.any():
                raise ValueError(f"the IHT iterates of {int(bad.sum())} sample(s) overflowed (not finite)")
        return x_hat, e_hat, iters
    active = np.arange(b)
    real_fft = transform == "fft"
    with one_blas_thread(xp is np):
        x_hat, e_hat = iht_loop(xp, y2, x_hat, e_hat, iters, active, k, t, n, n_iter, tol, transform, sizes, d,
                                workers, real_fft)
    return x_hat, e_hat, iters
