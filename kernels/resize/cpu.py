"""Numba CPU kernels of the separable MATLAB-bicubic resize.

The image is handled as a C-contiguous 4-D view (pre, H, W, post): ``pre`` is everything
before the height axis (N*C for (N, C, H, W)), ``post`` everything after the width axis (C
for (H, W, C)). One pass resamples the axis that is *outermost* in the buffer it reads,

    dst[a, i, q] = sum_k w[i, k] * src[a, idx[i, k], q]          (accumulated in float64)

where q runs over the contiguous remainder (the other axis times ``post``), with the (idx, w)
gather tables of ``tables.axis_table`` (forward, or transposed for the adjoint). Reading
whole rows src[a, idx, :] makes the q loop a unit-stride multiply-add that LLVM vectorises,
for both axes: the width is never resampled with a strided gather. Instead, a pass that is
followed by another one writes its output *transposed* (the other axis becomes outermost),
so the second pass again reads whole rows and its own transposed write restores the
(pre, H', W', post) order. With MATLAB's order "height first" that is two passes and no
extra copy; "width first" (the width shrinks more) starts with one transposing copy.

Tiling: a task computes R output rows x J inner elements (``config.CPU_TILE_ROWS``,
``config.CPU_TILE_INNER``) into a float64 scratch tile that stays in cache, then stores it,
either row by row, or transposed as runs of R * post contiguous elements (long runs keep
the strided stores of a transpose from thrashing the cache). Each task owns one scratch
tile, allocated once per call (and no larger than the image needs), never per row.

Rounding: each pass stores x's dtype, as MATLAB's ``imresize`` returns the class of its
input from every one-dimensional pass: float32 is rounded once per pass, uint8 is rounded
half away from zero and saturated to [0, 255] per pass. Taps are summed in table order
(tap 0 first), as in the CUDA twin.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from . import config


@numba.njit(inline="always")
def _quantize_u8(v):
    # MATLAB's double -> uint8 conversion: round half away from zero, saturate.
    if v <= 0.0:
        return 0.0
    if v >= 255.0:
        return 255.0
    return math.floor(v + 0.5)


@numba.njit(cache=True, nogil=True)
def _tile(src, dst, idx, w, acc, a, i0, i1, p0, p1, post, quantize, transpose_out):
    # rows i0..i1 of the resampled axis, pixels p0..p1 of the other axis (times post).
    # Every inner loop indexes a slice with its own range variable: numba then knows the
    # index is non-negative, emits no wrap-around test, and LLVM vectorises the loop.
    taps = idx.shape[1]
    q0 = p0 * post
    m = (p1 - p0) * post
    for r in range(i1 - i0):
        i = i0 + r
        row = acc[r, :m]
        w0 = w[i, 0]
        s = src[a, idx[i, 0], q0 : q0 + m]
        for q in range(m):
            row[q] = w0 * s[q]
        for k in range(1, taps):
            wk = w[i, k]
            s = src[a, idx[i, k], q0 : q0 + m]
            for q in range(m):
                row[q] += wk * s[q]
    if not transpose_out:
        # dst: (pre, n_out, n_pix * post)
        for r in range(i1 - i0):
            d = dst[a, i0 + r, q0 : q0 + m]
            row = acc[r, :m]
            if quantize:
                for q in range(m):
                    d[q] = _quantize_u8(row[q])
            else:
                for q in range(m):
                    d[q] = row[q]
    else:
        # dst: (pre, n_pix, n_out * post): pixel p's run of rows i0..i1 is contiguous
        n = i1 - i0
        for p in range(p1 - p0):
            d = dst[a, p0 + p, i0 * post : i1 * post]
            if post == 1:
                col = acc[:n, p]
                if quantize:
                    for r in range(n):
                        d[r] = _quantize_u8(col[r])
                else:
                    for r in range(n):
                        d[r] = col[r]
            elif quantize:
                for r in range(n):
                    for c in range(post):
                        d[r * post + c] = _quantize_u8(acc[r, p * post + c])
            else:
                for r in range(n):
                    for c in range(post):
                        d[r * post + c] = acc[r, p * post + c]


@numba.njit(parallel=True, cache=True, nogil=True)
def _pass(src, dst, idx, w, scratch, n_pix, post, rows, pix, quantize, transpose_out):
    n_pre = src.shape[0]
    n_out = idx.shape[0]
    row_blocks = (n_out + rows - 1) // rows
    pix_blocks = (n_pix + pix - 1) // pix
    n_tiles = n_pre * row_blocks * pix_blocks
    n_tasks = scratch.shape[0]
    for t in prange(n_tasks):
        acc = scratch[t]
        for tile in range(t * n_tiles // n_tasks, (t + 1) * n_tiles // n_tasks):
            a = tile // (row_blocks * pix_blocks)
            rest = tile - a * row_blocks * pix_blocks
            rb = rest // pix_blocks
            pb = rest - rb * pix_blocks
            i0 = rb * rows
            p0 = pb * pix
            _tile(src, dst, idx, w, acc, a, i0, min(i0 + rows, n_out), p0, min(p0 + pix, n_pix), post, quantize, transpose_out)
    return dst


@numba.njit(parallel=True, cache=True, nogil=True)
def _transpose_copy(src, dst, block):
    # src (pre, h, w, post) -> dst (pre, w, h, post), tiles of block x block pixels
    n_pre, h, w, post = src.shape
    hb = (h + block - 1) // block
    wb = (w + block - 1) // block
    for tile in prange(n_pre * hb * wb):
        a = tile // (hb * wb)
        rest = tile - a * hb * wb
        i0 = (rest // wb) * block
        j0 = (rest % wb) * block
        for j in range(j0, min(j0 + block, w)):
            for i in range(i0, min(i0 + block, h)):
                for c in range(post):
                    dst[a, j, i, c] = src[a, i, j, c]
    return dst


@numba.njit(cache=True, nogil=True, fastmath={"reassoc"})
def _nonfinite_chunk(flat, lo, hi):
    # 0 * v is 0 for finite v and NaN for NaN/inf; reassociation lets the sum vectorise,
    # and without the no-NaN flag the NaN survives.
    seg = flat[lo:hi]  # a range variable as index: no wrap-around test, the loop vectorises
    acc = 0.0
    for p in range(seg.size):
        acc += seg[p] * 0.0
    return acc


@numba.njit(parallel=True, cache=True, nogil=True)
def _count_nonfinite(flat, n_tasks):
    n = 0
    for t in prange(n_tasks):
        v = _nonfinite_chunk(flat, t * flat.size // n_tasks, (t + 1) * flat.size // n_tasks)
        n += v != v
    return n


def _run_pass(src4, dst4, indices, weights, quantize, transpose_out):
    """Resample axis 1 of src4 (pre, L_in, n_pix, post) into dst4.

    dst4 is (pre, L_out, n_pix, post), or (pre, n_pix, L_out, post) when transposing.
    """
    n_pre, _l_in, n_pix, post = src4.shape
    n_out = indices.shape[0]
    rows = max(1, min(int(config.CPU_TILE_ROWS), n_out))
    pix = max(1, min(int(config.CPU_TILE_INNER) // post, n_pix))
    n_tiles = n_pre * -(-n_out // rows) * -(-n_pix // pix)
    if n_tiles == 0:
        return
    n_tasks = max(1, min(n_tiles, numba.get_num_threads() * config.CPU_TASKS_PER_THREAD))
    scratch = np.empty((n_tasks, rows, pix * post), dtype=np.float64)
    src3 = src4.reshape(n_pre, src4.shape[1], n_pix * post)
    if transpose_out:
        dst3 = dst4.reshape(n_pre, n_pix, n_out * post)
    else:
        dst3 = dst4.reshape(n_pre, n_out, n_pix * post)
    _pass(src3, dst3, indices, weights, scratch, n_pix, post, rows, pix, quantize, transpose_out)


def resize4(x4: np.ndarray, out4: np.ndarray, steps, quantize: bool) -> None:
    """Run the axis passes ``steps`` = [(axis, indices, weights, key), ...] on (pre, H, W, post).

    ``x4`` and ``out4`` are C-contiguous; intermediates are allocated here. The resampled
    axis is always the outermost one of the buffer a pass reads (see the module docstring).
    """
    if not steps:
        np.copyto(out4, x4)
        return
    cur = x4
    transposed = False  # is cur laid out (pre, W, H, post)?
    for n, (axis, indices, weights, _key) in enumerate(steps):
        if (axis == 1) != transposed:  # the axis to resample is not outermost: transposing copy
            tmp = np.empty((cur.shape[0], cur.shape[2], cur.shape[1], cur.shape[3]), dtype=cur.dtype)
            _transpose_copy(cur, tmp, int(config.CPU_TRANSPOSE_BLOCK))
            cur, transposed = tmp, not transposed
        last = n == len(steps) - 1
        # between passes: hand the other axis over as outermost; at the end: restore (H, W)
        transpose_out = transposed if last else True
        n_pre, _l, n_pix, post = cur.shape
        dst = out4 if last else np.empty((n_pre, n_pix, indices.shape[0], post), dtype=cur.dtype)
        _run_pass(cur, dst, indices, weights, quantize, transpose_out)
        cur = dst
        transposed = transposed != transpose_out


def count_nonfinite(x: np.ndarray) -> int:
    """Number of chunks holding NaN/inf in a C-contiguous float array (0 means all finite)."""
    flat = x.reshape(-1)
    n_tasks = max(1, min(numba.get_num_threads() * config.CPU_TASKS_PER_THREAD, flat.size // 4096))
    return int(_count_nonfinite(flat, n_tasks))
