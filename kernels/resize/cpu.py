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
``config.CPU_TILE_INNER``), one row at a time: the taps are summed in groups of eight (then
four, then one to three) per pass over the row, the partial sums in registers and in one
float64 row that stays in L1; the finished row is rounded once into the output dtype,
straight into dst, or into a staging tile when the pass writes transposed. The staged tile
is then stored as runs of R * post contiguous elements (long runs keep the strided stores
of a transpose from thrashing the cache), a plain copy unrolled for 1 and 3 channels.
Intermediates, rows and staging tiles come from a per-thread workspace reused across calls
(``_buffer``): fresh buffers page-faulted more time away than the resize took. The NaN/inf
check of the input runs inside the first pass's parallel region.

Rounding: each pass stores x's dtype, as MATLAB's ``imresize`` returns the class of its
input from every one-dimensional pass: float32 is rounded once per pass, uint8 is rounded
half away from zero and saturated to [0, 255] per pass. Taps are summed in table order
(tap 0 first), as in the CUDA twin; here every product and sum is rounded in float64 (no
fused multiply-add), so the grouping above changes no bit of the result.
"""
from __future__ import annotations

import math
import threading

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


@numba.njit(inline="always")
def _taps8(src, idx, w, row, a, i, k, q0, m, first):
    w0, w1, w2, w3 = w[i, k], w[i, k + 1], w[i, k + 2], w[i, k + 3]
    w4, w5, w6, w7 = w[i, k + 4], w[i, k + 5], w[i, k + 6], w[i, k + 7]
    s0 = src[a, idx[i, k], q0 : q0 + m]
    s1 = src[a, idx[i, k + 1], q0 : q0 + m]
    s2 = src[a, idx[i, k + 2], q0 : q0 + m]
    s3 = src[a, idx[i, k + 3], q0 : q0 + m]
    s4 = src[a, idx[i, k + 4], q0 : q0 + m]
    s5 = src[a, idx[i, k + 5], q0 : q0 + m]
    s6 = src[a, idx[i, k + 6], q0 : q0 + m]
    s7 = src[a, idx[i, k + 7], q0 : q0 + m]
    if first:
        for q in range(m):
            v = ((w0 * s0[q] + w1 * s1[q]) + w2 * s2[q]) + w3 * s3[q]
            row[q] = (((v + w4 * s4[q]) + w5 * s5[q]) + w6 * s6[q]) + w7 * s7[q]
    else:
        for q in range(m):
            v = (((row[q] + w0 * s0[q]) + w1 * s1[q]) + w2 * s2[q]) + w3 * s3[q]
            row[q] = (((v + w4 * s4[q]) + w5 * s5[q]) + w6 * s6[q]) + w7 * s7[q]


@numba.njit(inline="always")
def _taps4(src, idx, w, row, a, i, k, q0, m, first):
    w0, w1, w2, w3 = w[i, k], w[i, k + 1], w[i, k + 2], w[i, k + 3]
    s0 = src[a, idx[i, k], q0 : q0 + m]
    s1 = src[a, idx[i, k + 1], q0 : q0 + m]
    s2 = src[a, idx[i, k + 2], q0 : q0 + m]
    s3 = src[a, idx[i, k + 3], q0 : q0 + m]
    if first:
        for q in range(m):
            row[q] = ((w0 * s0[q] + w1 * s1[q]) + w2 * s2[q]) + w3 * s3[q]
    else:
        for q in range(m):
            row[q] = (((row[q] + w0 * s0[q]) + w1 * s1[q]) + w2 * s2[q]) + w3 * s3[q]


@numba.njit(inline="always")
def _taps3(src, idx, w, row, a, i, k, q0, m, first):
    w0, w1, w2 = w[i, k], w[i, k + 1], w[i, k + 2]
    s0 = src[a, idx[i, k], q0 : q0 + m]
    s1 = src[a, idx[i, k + 1], q0 : q0 + m]
    s2 = src[a, idx[i, k + 2], q0 : q0 + m]
    if first:
        for q in range(m):
            row[q] = (w0 * s0[q] + w1 * s1[q]) + w2 * s2[q]
    else:
        for q in range(m):
            row[q] = ((row[q] + w0 * s0[q]) + w1 * s1[q]) + w2 * s2[q]


@numba.njit(inline="always")
def _taps2(src, idx, w, row, a, i, k, q0, m, first):
    w0, w1 = w[i, k], w[i, k + 1]
    s0 = src[a, idx[i, k], q0 : q0 + m]
    s1 = src[a, idx[i, k + 1], q0 : q0 + m]
    if first:
        for q in range(m):
            row[q] = w0 * s0[q] + w1 * s1[q]
    else:
        for q in range(m):
            row[q] = (row[q] + w0 * s0[q]) + w1 * s1[q]


@numba.njit(inline="always")
def _taps1(src, idx, w, row, a, i, k, q0, m, first):
    w0 = w[i, k]
    s0 = src[a, idx[i, k], q0 : q0 + m]
    if first:
        for q in range(m):
            row[q] = w0 * s0[q]
    else:
        for q in range(m):
            row[q] = row[q] + w0 * s0[q]


@numba.njit(inline="always")
def _accumulate(src, idx, w, row, dest, a, i, q0, m):
    # sum_k w[i, k] * src[a, idx[i, k], q0 + q] for q < m, in float64, tap 0 first.
    # The taps go in groups of 8, then 4, then the last one to three: each group is one pass
    # over the row with its partial sums in registers, (((row + t0) + t1) + ...) + t7, i.e.
    # the same additions in the same order as one pass per tap, with an eighth of the loads
    # and stores of the accumulator row (and of the loop overhead).
    # When one group holds every tap (1-4 or 8 taps: x2 and x1/2, say), it writes dest (in
    # dest's dtype: the float64 sum rounded once, as stored) and this returns True; else the
    # sum is left in the float64 row and this returns False.
    # A group updates its row in place (row[q] = row[q] + ...): with separate source and destination
    # arrays that are the same memory, LLVM's runtime alias check fails and the loop runs
    # scalar.
    taps = idx.shape[1]
    if taps == 8:
        _taps8(src, idx, w, dest, a, i, 0, q0, m, True)
        return True
    if taps == 4:
        _taps4(src, idx, w, dest, a, i, 0, q0, m, True)
        return True
    if taps == 3:
        _taps3(src, idx, w, dest, a, i, 0, q0, m, True)
        return True
    if taps == 2:
        _taps2(src, idx, w, dest, a, i, 0, q0, m, True)
        return True
    if taps == 1:
        _taps1(src, idx, w, dest, a, i, 0, q0, m, True)
        return True
    k = 0
    while taps - k >= 8:
        _taps8(src, idx, w, row, a, i, k, q0, m, k == 0)
        k += 8
    if taps - k >= 4:
        _taps4(src, idx, w, row, a, i, k, q0, m, k == 0)
        k += 4
    rest = taps - k
    if rest == 3:
        _taps3(src, idx, w, row, a, i, k, q0, m, False)
    elif rest == 2:
        _taps2(src, idx, w, row, a, i, k, q0, m, False)
    elif rest == 1:
        _taps1(src, idx, w, row, a, i, k, q0, m, False)
    return False


@numba.njit(inline="always")
def _store_row(row, out, m, quantize):
    # the finished float64 row in the destination dtype (vectorised for floats)
    if quantize:
        for q in range(m):
            out[q] = _quantize_u8(row[q])
    else:
        for q in range(m):
            out[q] = row[q]


# One output row of float or uint8 output.
@numba.njit(inline="always")
def _row_float(src, idx, w, row, out, a, i, q0, m):
    if not _accumulate(src, idx, w, row, out, a, i, q0, m):  # the float64 sum, rounded once
        _store_row(row, out, m, False)


@numba.njit(inline="always")
def _row_u8(src, idx, w, row, out, a, i, q0, m):
    _accumulate(src, idx, w, row, row, a, i, q0, m)
    _store_row(row, out, m, True)  # MATLAB's rounding of the float64 sum


@numba.njit(cache=True, nogil=True)
def _tile(src, dst, idx, w, acc, stage, a, i0, i1, p0, p1, post, quantize, transpose_out):
    # rows i0..i1 of the resampled axis, pixels p0..p1 of the other axis (times post).
    # Every inner loop indexes a slice with its own range variable: numba then knows the
    # index is non-negative, emits no wrap-around test, and LLVM vectorises the loop.
    # acc: one float64 row (it stays in L1); stage: (rows, m) tile in dst's dtype.
    q0 = p0 * post
    m = (p1 - p0) * post
    n = i1 - i0
    row = acc[:m]
    for r in range(n):
        # the row's destination: the staging tile, or dst (pre, n_out, n_pix * post) itself
        out = stage[r, :m] if transpose_out else dst[a, i0 + r, q0 : q0 + m]
        if quantize:
            _row_u8(src, idx, w, row, out, a, i0 + r, q0, m)
        else:
            _row_float(src, idx, w, row, out, a, i0 + r, q0, m)
    if transpose_out:
        # dst: (pre, n_pix, n_out * post): pixel p's run of rows i0..i1 is contiguous; the
        # staged tile is already rounded, so this is a plain copy (unrolled for 1 and 3)
        for p in range(p1 - p0):
            d = dst[a, p0 + p, i0 * post : i1 * post]
            if post == 1:
                col = stage[:n, p]
                for r in range(n):
                    d[r] = col[r]
            elif post == 3:
                q = 3 * p
                for r in range(n):
                    s = stage[r]
                    d[3 * r] = s[q]
                    d[3 * r + 1] = s[q + 1]
                    d[3 * r + 2] = s[q + 2]
            else:
                for r in range(n):
                    s = stage[r, p * post : (p + 1) * post]
                    for c in range(post):
                        d[r * post + c] = s[c]


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
def _pass(src, dst, idx, w, scratch, staging, n_pix, post, rows, pix, quantize, transpose_out, check):
    # check: each task first scans its 1/n_tasks of src for NaN/inf (the finiteness check
    # of the input, folded into the first pass's parallel region); returns how many found any
    n_pre = src.shape[0]
    n_out = idx.shape[0]
    row_blocks = (n_out + rows - 1) // rows
    pix_blocks = (n_pix + pix - 1) // pix
    n_tiles = n_pre * row_blocks * pix_blocks
    n_tasks = scratch.shape[0]
    flat = src.reshape(-1)
    bad = 0
    for t in prange(n_tasks):
        if check:
            v = _nonfinite_chunk(flat, t * flat.size // n_tasks, (t + 1) * flat.size // n_tasks)
            bad += v != v
        acc = scratch[t]
        stage = staging[t]
        for tile in range(t * n_tiles // n_tasks, (t + 1) * n_tiles // n_tasks):
            a = tile // (row_blocks * pix_blocks)
            rest = tile - a * row_blocks * pix_blocks
            rb = rest // pix_blocks
            pb = rest - rb * pix_blocks
            i0 = rb * rows
            p0 = pb * pix
            _tile(
                src, dst, idx, w, acc, stage, a, i0, min(i0 + rows, n_out), p0, min(p0 + pix, n_pix),
                post, quantize, transpose_out,
            )
    return bad


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


@numba.njit(parallel=True, cache=True, nogil=True)
def _count_nonfinite(flat, n_tasks):
    n = 0
    for t in prange(n_tasks):
        v = _nonfinite_chunk(flat, t * flat.size // n_tasks, (t + 1) * flat.size // n_tasks)
        n += v != v
    return n


_WORKSPACE = threading.local()
_FLOAT64 = np.dtype(np.float64)


def _buffer(slot: str, shape, dtype: np.dtype) -> np.ndarray:
    """An uninitialised C-contiguous array for this thread's ``slot``, reused across calls.

    Fresh ``np.empty`` intermediates cost more than the resize itself at 512 x 512: glibc
    hands big blocks back to the kernel when they are freed (mmap, or a trimmed heap), so
    every call page-faults its way through megabytes of new memory again, which costs more
    than the resize. Each thread keeps one growing buffer per slot instead (threads never share
    one, so concurrent calls stay safe); buffers above ``config.CPU_WORKSPACE_MAX_BYTES``
    are allocated per call and not kept, so a single huge batch does not pin its memory.
    """
    n_bytes = math.prod(shape) * dtype.itemsize
    if n_bytes > config.CPU_WORKSPACE_MAX_BYTES:
        return np.empty(shape, dtype=dtype)
    try:
        cache = _WORKSPACE.buffers
    except AttributeError:
        cache = _WORKSPACE.buffers = {}
    buf = cache.get(slot)
    if buf is None or buf.size < n_bytes:
        buf = cache[slot] = np.empty(max(n_bytes, 64), dtype=np.uint8)
    return np.ndarray(shape, dtype=dtype, buffer=buf)


def _run_pass(src4, dst4, indices, weights, quantize, transpose_out, check=False, n_threads=None) -> int:
    """Resample axis 1 of src4 (pre, L_in, n_pix, post) into dst4.

    dst4 is (pre, L_out, n_pix, post), or (pre, n_pix, L_out, post) when transposing.
    With ``check``, also scan src4 for NaN/inf in the same parallel region; returns the
    number of tasks that found some (0: all finite, or not checked).
    """
    n_pre, _l_in, n_pix, post = src4.shape
    n_out = indices.shape[0]
    rows = max(1, min(int(config.CPU_TILE_ROWS), n_out))
    pix = max(1, min(int(config.CPU_TILE_INNER) // post, n_pix))
    n_tiles = n_pre * -(-n_out // rows) * -(-n_pix // pix)
    if n_tiles == 0:
        return 0
    if n_threads is None:
        n_threads = numba.get_num_threads()
    n_tasks = max(1, min(n_tiles, n_threads * config.CPU_TASKS_PER_THREAD))
    scratch = _buffer("scratch", (n_tasks, pix * post), _FLOAT64)
    staging = _buffer("staging", (n_tasks, rows if transpose_out else 0, pix * post), dst4.dtype)
    src3 = src4.reshape(n_pre, src4.shape[1], n_pix * post)
    if transpose_out:
        dst3 = dst4.reshape(n_pre, n_pix, n_out * post)
    else:
        dst3 = dst4.reshape(n_pre, n_out, n_pix * post)
    return int(_pass(src3, dst3, indices, weights, scratch, staging, n_pix, post, rows, pix, quantize, transpose_out, check))


def resize4(x4: np.ndarray, out4: np.ndarray, steps, quantize: bool, check_finite: bool = False) -> bool:
    """Run the axis passes ``steps`` = [(axis, indices, weights, key), ...] on (pre, H, W, post).

    ``x4`` and ``out4`` are C-contiguous; intermediates live in this thread's workspace
    (``_buffer``). The resampled axis is always the outermost one of the buffer a pass reads
    (see the module docstring).

    With ``check_finite``, returns True, with ``out4`` untouched, when x4 holds NaN/inf
    (False otherwise). When a first pass writes an intermediate, the scan runs inside that
    pass's parallel region (one thread wake-up and one read of the image fewer); a single
    pass straight into ``out4`` scans first.
    """
    fold = check_finite and len(steps) > 1
    if check_finite and not fold and count_nonfinite(x4):
        return True
    if not steps:
        np.copyto(out4, x4)
        return False
    cur = x4
    transposed = False  # is cur laid out (pre, W, H, post)?
    n_threads = numba.get_num_threads()
    for n, (axis, indices, weights, _key) in enumerate(steps):
        if (axis == 1) != transposed:  # the axis to resample is not outermost: transposing copy
            tmp = _buffer("copy", (cur.shape[0], cur.shape[2], cur.shape[1], cur.shape[3]), cur.dtype)
            _transpose_copy(cur, tmp, int(config.CPU_TRANSPOSE_BLOCK))
            cur, transposed = tmp, not transposed
        last = n == len(steps) - 1
        # between passes: hand the other axis over as outermost; at the end: restore (H, W)
        transpose_out = transposed if last else True
        n_pre, _l, n_pix, post = cur.shape
        dst = out4 if last else _buffer(f"pass{n}", (n_pre, n_pix, indices.shape[0], post), cur.dtype)
        if _run_pass(cur, dst, indices, weights, quantize, transpose_out, fold and n == 0, n_threads):
            return True  # dst is the workspace here: out4 is untouched
        cur = dst
        transposed = transposed != transpose_out
    return False


def count_nonfinite(x: np.ndarray) -> int:
    """Number of chunks holding NaN/inf in a C-contiguous float array (0 means all finite)."""
    flat = x.reshape(-1)
    n_tasks = max(1, min(numba.get_num_threads() * config.CPU_TASKS_PER_THREAD, flat.size // 4096))
    return int(_count_nonfinite(flat, n_tasks))
