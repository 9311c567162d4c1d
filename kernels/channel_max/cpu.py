"""Numba CPU kernels for the channel-max saliency reduction (Simonyan et al. 2013, Sec. 3.1).

Forward: M[n, p] = max_c |g[n, c, p]| (p a pixel), optionally with the winning channel.
Backward: dL/dg[n, c, p] = sign(g[n, c, p]) * dL/dM[n, p] for the winning channel c, 0
elsewhere. The winner is re-derived from the saved M (the first channel whose |g| equals M,
or the first NaN channel), so autograd keeps no int index tensor alive between passes.

Memory: one pass over g, no temporary |g| array. For contiguous g the task for one image
chunk walks the C channel planes in order, updating a cache-resident running maximum, so
each byte of g is read once, sequentially. Two details make the inner loops vectorise:
the select is written with bitwise ``|`` (no branch), and every loop runs over a slice
from index 0, so numba can drop its negative-index wraparound check (a loop over
``range(lo, hi)`` of the full array keeps it, and stays scalar).
Strided g (channels-last, slices) goes through generic kernels that index with strides
instead of copying.

NaN rule: a NaN anywhere along the channel axis gives NaN (as ``torch.amax``), and the
argmax is the first NaN channel. Ties keep the lowest channel index.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from . import config


@numba.njit(inline="always")
def _wins(v, best):
    # v replaces the running best when larger, or when v is the first NaN seen.
    return (v > best) | ((v != v) & (best == best))


@numba.njit(inline="always")
def _task_span(task, n_chunks, chunk, n_pix):
    # parallel task -> (image, first pixel, end pixel) of its chunk
    n = task // n_chunks
    lo = (task % n_chunks) * chunk
    return n, lo, min(lo + chunk, n_pix)


@numba.njit(inline="always")
def _sign_times(v, go):
    if v > 0:
        return go
    if v < 0:
        return -go
    if v == 0:
        return 0.0
    return v  # NaN


@numba.njit(parallel=True, cache=True, nogil=True)
def _forward_contig(g, out, chunk):
    # g: (N, C, P) C-contiguous, out: (N, P). Each task owns out[n, lo:hi].
    n_img, n_ch, n_pix = g.shape
    n_chunks = (n_pix + chunk - 1) // chunk
    for task in prange(n_img * n_chunks):
        n, lo, hi = _task_span(task, n_chunks, chunk, n_pix)
        # Slices, then loops from 0: numba then knows the index is non-negative, drops the
        # negative-index wraparound select, and LLVM vectorises (see the module docstring).
        o = out[n, lo:hi]
        g0 = g[n, 0, lo:hi]
        for p in range(o.shape[0]):
            o[p] = abs(g0[p])
        for c in range(1, n_ch):
            gc = g[n, c, lo:hi]
            for p in range(o.shape[0]):
                v = abs(gc[p])
                b = o[p]
                o[p] = v if ((v > b) | (v != v)) else b
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def _forward_argmax_contig(g, out, argmax, chunk):
    n_img, n_ch, n_pix = g.shape
    n_chunks = (n_pix + chunk - 1) // chunk
    for task in prange(n_img * n_chunks):
        n, lo, hi = _task_span(task, n_chunks, chunk, n_pix)
        o = out[n, lo:hi]
        a = argmax[n, lo:hi]
        g0 = g[n, 0, lo:hi]
        for p in range(o.shape[0]):
            o[p] = abs(g0[p])
            a[p] = 0
        for c in range(1, n_ch):
            gc = g[n, c, lo:hi]
            ci = np.int32(c)
            for p in range(o.shape[0]):
                v = abs(gc[p])
                b = o[p]
                w = _wins(v, b)
                o[p] = v if w else b
                a[p] = ci if w else a[p]
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def _forward_strided(g, out, argmax, want_argmax):
    # g: (N, C, H, W) with any strides; channel loop innermost (contiguous for channels-last).
    n_img, n_ch, height, width = g.shape
    for task in prange(n_img * height):
        n = task // height
        i = task % height
        if not want_argmax:
            for j in range(width):
                best = abs(g[n, 0, i, j])
                for c in range(1, n_ch):
                    v = abs(g[n, c, i, j])
                    best = v if ((v > best) | (v != v)) else best
                out[n, i, j] = best
            continue
        for j in range(width):
            best = abs(g[n, 0, i, j])
            arg = 0
            for c in range(1, n_ch):
                v = abs(g[n, c, i, j])
                w = _wins(v, best)
                best = v if w else best
                arg = c if w else arg
            out[n, i, j] = best
            argmax[n, i, j] = arg
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def _backward_contig(grad_out, g, m, grad_g, chunk):
    # grad_out, m: (N, P); g, grad_g: (N, C, P), all C-contiguous.
    n_img, n_ch, n_pix = g.shape
    n_chunks = (n_pix + chunk - 1) // chunk
    for task in prange(n_img * n_chunks):
        n, lo, hi = _task_span(task, n_chunks, chunk, n_pix)
        mt = m[n, lo:hi]
        go = grad_out[n, lo:hi]
        # winner per pixel: the lowest channel with |g| == M, or the first NaN channel
        win = np.empty(hi - lo, np.int32)
        for p in range(win.shape[0]):
            win[p] = n_ch
        for c in range(n_ch - 1, -1, -1):
            gc = g[n, c, lo:hi]
            ci = np.int32(c)
            for p in range(win.shape[0]):
                a = abs(gc[p])
                t = mt[p]
                hit = (a == t) | ((a != a) & (t != t))
                win[p] = ci if hit else win[p]
        for c in range(n_ch):
            gc = g[n, c, lo:hi]
            dc = grad_g[n, c, lo:hi]
            for p in range(dc.shape[0]):
                dc[p] = _sign_times(gc[p], go[p]) if win[p] == c else 0
    return grad_g


@numba.njit(parallel=True, cache=True, nogil=True)
def _backward_strided(grad_out, g, m, grad_g):
    # All (N, C, H, W) / (N, H, W), any strides. Writes every element of grad_g once.
    n_img, n_ch, height, width = grad_g.shape
    for task in prange(n_img * height):
        n = task // height
        i = task % height
        for j in range(width):
            target = m[n, i, j]
            is_nan = target != target
            go = grad_out[n, i, j]
            found = False
            for c in range(n_ch):
                v = g[n, c, i, j]
                a = abs(v)
                hit = (not found) and ((a != a) if is_nan else (a == target))
                if hit:
                    grad_g[n, c, i, j] = _sign_times(v, go)
                    found = True
                else:
                    grad_g[n, c, i, j] = 0
    return grad_g


def forward(g: np.ndarray, out: np.ndarray, argmax: np.ndarray | None) -> None:
    """Fill ``out`` (N, H, W) and, if given, ``argmax`` (N, H, W) int32 from g (N, C, H, W)."""
    n, c, h, w = g.shape
    if g.flags.c_contiguous:
        g3 = g.reshape(n, c, h * w)
        if argmax is None:
            _forward_contig(g3, out.reshape(n, h * w), config.CPU_CHUNK)
        else:
            _forward_argmax_contig(g3, out.reshape(n, h * w), argmax.reshape(n, h * w), config.CPU_CHUNK)
    else:
        dummy = argmax if argmax is not None else np.empty((1, 1, 1), np.int32)
        _forward_strided(g, out, dummy, argmax is not None)


def backward(grad_out: np.ndarray, g: np.ndarray, m: np.ndarray, grad_g: np.ndarray) -> None:
    """Fill ``grad_g`` (N, C, H, W), routing ``grad_out`` to the channel that produced ``m``."""
    n, c, h, w = g.shape
    if g.flags.c_contiguous and grad_out.flags.c_contiguous and m.flags.c_contiguous:
        # keep one task's slab of g (chunk x C values) within ~256 KiB of cache
        chunk = max(64, min(config.CPU_CHUNK, 65536 // c))
        _backward_contig(
            grad_out.reshape(n, h * w), g.reshape(n, c, h * w), m.reshape(n, h * w),
            grad_g.reshape(n, c, h * w), chunk,
        )
    else:
        _backward_strided(grad_out, g, m, grad_g)
