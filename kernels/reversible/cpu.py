"""Numba CPU kernels of the reversible coupling (Gomez et al. 2017), element-wise and fused.

All kernels take 1-D views (the caller flattens contiguous arrays) and work in place.

* ``couple``: y <- y + sign * f, and optionally acc <- acc + add in the same loop. With
  sign = -1 this is the reconstruction x2 = y2 - G(y1) (Eq. 4 of the paper) written over y2,
  fused with the accumulation of the gradient that flows through G into y1's gradient, so
  backward makes one pass over the block's memory instead of two. Returns the number of
  non-finite results (0 unless ``check``).
Each loop exists twice: a serial kernel for arrays below ``config.CPU_PARALLEL_MIN`` elements
(where starting a parallel region costs more than the loop) and a ``prange`` one above.

* ``quantize`` / ``dequantize``: float <-> fixed point (integers with ``frac_bits``
  fractional bits, round half up: floor(v * 2^frac + 1/2)).
* ``quantize_couple``: y_int <- y_int + sign * q(f), f rounded to the same grid first, fused
  with the gradient accumulation as above. Integer adds are exact, so a forward quantise-add
  and a backward quantise-subtract of the same f restore y bit for bit, at any depth.
  Returns the number of elements that were non-finite or left the representable range.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from . import config


@numba.njit(cache=True, nogil=True)
def _couple_serial(y, f, sign, acc, add, do_acc, check):
    bad = 0
    for i in range(y.size):
        v = y[i] + sign * f[i]
        y[i] = v
        if do_acc:
            acc[i] += add[i]
        if check and not np.isfinite(v):
            bad += 1
    return bad


@numba.njit(parallel=True, cache=True, nogil=True)
def _couple_parallel(y, f, sign, acc, add, do_acc, check):
    bad = 0
    for i in prange(y.size):
        v = y[i] + sign * f[i]
        y[i] = v
        if do_acc:
            acc[i] += add[i]
        if check and not np.isfinite(v):
            bad += 1
    return bad


def couple(y, f, sign, acc, add, check: bool) -> int:
    do_acc = acc is not None
    if not do_acc:
        acc, add = y[:1], y[:1]  # typed placeholders, never touched
    kernel = _couple_parallel if _parallel(y.size) else _couple_serial
    return int(kernel(y, f, y.dtype.type(sign), acc, add, do_acc, check))


@numba.njit(cache=True, nogil=True)
def _to_fixed(v, scale, limit):
    """(integer value as float, ok) for the float v on the grid 1/scale."""
    t = v * scale + 0.5
    ok = (t < limit) and (t > -limit)  # False for NaN too; checked before flooring
    r = np.floor(t) if ok else 0.0
    return r, ok


@numba.njit(cache=True, nogil=True, inline="always")
def _quantize_one(x, out, i, scale, limit):
    r, ok = _to_fixed(np.float64(x[i]), scale, limit)
    out[i] = np.int64(r) if ok else 0
    return 0 if ok else 1


@numba.njit(cache=True, nogil=True, inline="always")
def _quantize_couple_one(y, f, i, sign, scale, limit):
    r, ok = _to_fixed(np.float64(f[i]), scale, limit)
    if not ok:
        return 1
    s = np.int64(y[i]) + sign * np.int64(r)
    if s > limit or s < -limit:
        return 1
    y[i] = s
    return 0


@numba.njit(cache=True, nogil=True)
def _quantize_serial(x, out, scale, limit):
    bad = 0
    for i in range(x.size):
        bad += _quantize_one(x, out, i, scale, limit)
    return bad


@numba.njit(parallel=True, cache=True, nogil=True)
def _quantize_parallel(x, out, scale, limit):
    bad = 0
    for i in prange(x.size):
        bad += _quantize_one(x, out, i, scale, limit)
    return bad


@numba.njit(cache=True, nogil=True)
def _dequantize_serial(q, out, inv_scale):
    for i in range(q.size):
        out[i] = np.float64(q[i]) * inv_scale


@numba.njit(parallel=True, cache=True, nogil=True)
def _dequantize_parallel(q, out, inv_scale):
    for i in prange(q.size):
        out[i] = np.float64(q[i]) * inv_scale


@numba.njit(cache=True, nogil=True)
def _quantize_couple_serial(y, f, sign, scale, limit, acc, add, do_acc):
    bad = 0
    for i in range(y.size):
        bad += _quantize_couple_one(y, f, i, sign, scale, limit)
        if do_acc:
            acc[i] += add[i]
    return bad


@numba.njit(parallel=True, cache=True, nogil=True)
def _quantize_couple_parallel(y, f, sign, scale, limit, acc, add, do_acc):
    bad = 0
    for i in prange(y.size):
        bad += _quantize_couple_one(y, f, i, sign, scale, limit)
        if do_acc:
            acc[i] += add[i]
    return bad


def _parallel(n: int) -> bool:
    return n >= config.CPU_PARALLEL_MIN


def quantize(x, out, scale: float, limit: float) -> int:
    kernel = _quantize_parallel if _parallel(x.size) else _quantize_serial
    return int(kernel(x, out, scale, limit))


def dequantize(q, out, inv_scale: float) -> None:
    kernel = _dequantize_parallel if _parallel(q.size) else _dequantize_serial
    kernel(q, out, inv_scale)


def quantize_couple(y, f, sign: int, scale: float, limit: float, acc, add) -> int:
    do_acc = acc is not None
    if not do_acc:
        acc = add = np.zeros(1, f.dtype)  # typed placeholders, never touched (f may be read-only)
    kernel = _quantize_couple_parallel if _parallel(y.size) else _quantize_couple_serial
    return int(kernel(y, f, np.int64(sign), scale, limit, acc, add, do_acc))
