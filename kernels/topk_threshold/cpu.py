"""Numba CPU kernels of the top-k hard threshold H_k (Bafna, Murtagh & Vyas, NeurIPS 2018).

Selection is a radix select on the magnitude's IEEE bit pattern: for non-negative floats
the bits read as an unsigned integer order exactly like the values, so the k-th largest
magnitude is found with integer histograms and no float comparison, in O(n) per row:

1. one pass writes the row's keys (``|x|`` bits: the sign bit cleared; complex: the bits
   of ``hypot(re, im)`` in float64) into a per-task scratch row and histograms their top
   ``b`` bits (b ~ log2(n) - 3, 8..12 bits: the histogram stays in L1);
2. the bucket where the count from the top crosses k is kept; its members' indices are
   compacted into a scratch list (usually a few percent of the row);
3. 8-bit digits refine the threshold on that list only, until every bit is fixed;
4. one output pass writes x where key > T, the first ``rem`` entries with key == T in
   index order (ties go to the lower index), 0 elsewhere.

Rows run in parallel: the rows are split into a few contiguous tasks per thread, and each
task allocates its scratch (keys, candidate list, histogram) once, not once per row.

The same select serves the DFT of real signals with *weights*: a conjugate pair of the
half spectrum costs 2 coefficients, a self-conjugate one 1, and the kept set is the
longest prefix of the magnitude ranking whose cost is <= k (``hermitian_threshold``).
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from . import config

U64 = np.uint64


@numba.njit(inline="always")
def _digit(key, shift, mask):
    return np.int64((key >> U64(shift)) & U64(mask))


@numba.njit(cache=True, nogil=True)
def _radix_select(keys, w, weighted, n, k, nbits, first_bits, hist, cand):
    """Threshold key T and remaining budget for ties: ``(T, rem, keep_all)``.

    With costs c_j (1 each unless ``weighted``), T is the key of the first entry of the
    ranking (key descending, index ascending) whose cost no longer fits into k:
    cost(key > T) <= k < cost(key >= T), and ``rem = k - cost(key > T)``. ``keep_all`` when
    the whole row costs <= k. ``keys < 2**nbits``.
    """
    b = first_bits
    shift = nbits - b
    nb = 1 << b
    for d in range(nb):
        hist[d] = 0
    total = 0
    for j in range(n):
        c = np.int64(w[j]) if weighted else np.int64(1)
        hist[_digit(keys[j], shift, nb - 1)] += c
        total += c
    if total <= k:
        return U64(0), np.int64(0), True
    acc = np.int64(0)
    d = nb - 1
    while acc + hist[d] <= k:
        acc += hist[d]
        d -= 1
    m = 0
    for j in range(n):
        if _digit(keys[j], shift, nb - 1) == d:
            cand[m] = j
            m += 1
    prefix = U64(d)
    rem = k - acc
    while shift > 0:
        b = 8 if shift >= 8 else shift
        shift -= b
        nb = 1 << b
        for dd in range(nb):
            hist[dd] = 0
        for i in range(m):
            j = cand[i]
            c = np.int64(w[j]) if weighted else np.int64(1)
            hist[_digit(keys[j], shift, nb - 1)] += c
        acc = np.int64(0)
        d = nb - 1
        while acc + hist[d] <= rem:
            acc += hist[d]
            d -= 1
        rem -= acc
        m2 = 0
        for i in range(m):
            j = cand[i]
            if _digit(keys[j], shift, nb - 1) == d:
                cand[m2] = j
                m2 += 1
        m = m2
        prefix = (prefix << U64(b)) | U64(d)
    return prefix, rem, False


@numba.njit(inline="always")
def _task_rows(task, n_tasks, n_rows):
    per = (n_rows + n_tasks - 1) // n_tasks
    lo = task * per
    return lo, min(lo + per, n_rows)


@numba.njit(parallel=True, cache=True, nogil=True)
def _threshold_real(x, bits, out, mask, want_mask, k, nbits, first_bits, absmask, bad_key, bad, n_tasks):
    # x, out: (R, n) C-contiguous float; bits: x viewed as uint32/uint64.
    n_rows, n = x.shape
    for task in prange(n_tasks):
        lo, hi = _task_rows(task, n_tasks, n_rows)
        keys = np.empty(n, np.uint64)
        cand = np.empty(n, np.int64)
        hist = np.empty(1 << max(first_bits, 8), np.int64)
        w = np.empty(1, np.uint8)
        for r in range(lo, hi):
            br = bits[r]
            nonfinite = False
            for j in range(n):
                kv = U64(br[j] & absmask)
                keys[j] = kv
                nonfinite |= kv >= bad_key
            if nonfinite:
                bad[r] = 1
                continue
            t_key, rem, keep_all = _radix_select(keys, w, False, n, k, nbits, first_bits, hist, cand)
            xr = x[r]
            orow = out[r]
            zero = xr[0] * 0
            for j in range(n):
                kv = keys[j]
                keep = keep_all or kv > t_key
                if not keep and kv == t_key and rem > 0:
                    keep = True
                    rem -= 1
                orow[j] = xr[j] if keep else zero
                if want_mask:
                    mask[r, j] = keep


@numba.njit(parallel=True, cache=True, nogil=True)
def _threshold_complex(x, out, mask, want_mask, k, first_bits, bad, n_tasks):
    # Complex rows: key = bits of hypot(re, im) computed in float64 (monotone in |z|).
    n_rows, n = x.shape
    bad_key = U64(0x7FF0000000000000)
    for task in prange(n_tasks):
        lo, hi = _task_rows(task, n_tasks, n_rows)
        mag = np.empty(n, np.float64)
        keys = mag.view(np.uint64)
        cand = np.empty(n, np.int64)
        hist = np.empty(1 << max(first_bits, 8), np.int64)
        w = np.empty(1, np.uint8)
        for r in range(lo, hi):
            xr = x[r]
            for j in range(n):
                v = xr[j]
                mag[j] = math.hypot(np.float64(v.real), np.float64(v.imag))
            nonfinite = False
            for j in range(n):
                nonfinite |= keys[j] >= bad_key
            if nonfinite:
                bad[r] = 1
                continue
            t_key, rem, keep_all = _radix_select(keys, w, False, n, k, 63, first_bits, hist, cand)
            orow = out[r]
            zero = xr[0] * 0
            for j in range(n):
                kv = keys[j]
                keep = keep_all or kv > t_key
                if not keep and kv == t_key and rem > 0:
                    keep = True
                    rem -= 1
                orow[j] = xr[j] if keep else zero
                if want_mask:
                    mask[r, j] = keep


@numba.njit(parallel=True, cache=True, nogil=True)
def _threshold_hermitian(x, partner, out, mask, k, first_bits, bad, n_tasks):
    # x: (R, m) half spectrum (rfftn layout, flattened). partner[j]: -1 when j's conjugate
    # lies outside the half spectrum (a pair: cost 2), j when self-conjugate (cost 1), else
    # the flat index of its conjugate inside the half spectrum (the lower index represents
    # the pair, cost 2; the higher one costs 0 and copies the decision).
    n_rows, m = x.shape
    bad_key = U64(0x7FF0000000000000)
    for task in prange(n_tasks):
        lo, hi = _task_rows(task, n_tasks, n_rows)
        mag = np.empty(m, np.float64)
        keys = mag.view(np.uint64)
        w = np.empty(m, np.uint8)
        cand = np.empty(m, np.int64)
        hist = np.empty(1 << max(first_bits, 8), np.int64)
        for r in range(lo, hi):
            xr = x[r]
            nonfinite = False
            for j in range(m):
                v = xr[j]
                a = math.hypot(np.float64(v.real), np.float64(v.imag))
                nonfinite |= not (a <= 1.7976931348623157e308)
                p = partner[j]
                if p < 0 or p > j:
                    w[j] = 2
                    mag[j] = a
                elif p == j:
                    w[j] = 1
                    mag[j] = a
                else:
                    w[j] = 0
                    mag[j] = 0.0
            if nonfinite:
                bad[r] = 1
                continue
            t_key, rem, keep_all = _radix_select(keys, w, True, m, k, 63, first_bits, hist, cand)
            orow = out[r]
            zero = xr[0] * 0
            for j in range(m):
                if w[j] == 0:
                    continue
                kv = keys[j]
                keep = keep_all or kv > t_key
                if not keep and kv == t_key and rem >= 0:
                    c = np.int64(w[j])
                    if c <= rem:
                        keep = True
                        rem -= c
                    else:
                        rem = -1  # the longest prefix of the ranking: stop at the first misfit
                mask[r, j] = keep
                orow[j] = xr[j] if keep else zero
            for j in range(m):
                if w[j] == 0:
                    keep = mask[r, partner[j]]
                    mask[r, j] = keep
                    orow[j] = xr[j] if keep else zero


@numba.njit(parallel=True, cache=True, nogil=True)
def _apply_mask(x, mask, out):
    n_rows, n = x.shape
    for r in prange(n_rows):
        xr = x[r]
        zero = xr[0] * 0
        for j in range(n):
            out[r, j] = xr[j] if mask[r, j] else zero


def first_bits_for(n: int) -> int:
    """Width of the first radix digit for rows of length n (see config.CPU_MAX_FIRST_BITS)."""
    return int(min(config.CPU_MAX_FIRST_BITS, max(8, int(n).bit_length() - 4)))


def _n_tasks(n_rows: int) -> int:
    return max(1, min(n_rows, 4 * numba.get_num_threads()))


_REAL = {
    np.dtype(np.float32): (np.uint32, np.uint32(0x7FFFFFFF), np.uint64(0x7F800000), 31),
    np.dtype(np.float64): (np.uint64, np.uint64(0x7FFFFFFFFFFFFFFF), np.uint64(0x7FF0000000000000), 63),
}


def threshold_rows(x2: np.ndarray, k: int, out2: np.ndarray, mask2: np.ndarray | None) -> np.ndarray:
    """H_k on each row of the C-contiguous (R, n) array x2 into out2 (may be x2).

    Returns a (R,) uint8 array flagging rows holding NaN or inf (those rows are not written).
    """
    n_rows, n = x2.shape
    bad = np.zeros(n_rows, np.uint8)
    want_mask = mask2 is not None
    m = mask2 if want_mask else np.empty((1, 1), np.bool_)
    fb = first_bits_for(n)
    if x2.dtype.kind == "c":
        _threshold_complex(x2, out2, m, want_mask, k, fb, bad, _n_tasks(n_rows))
    else:
        utype, absmask, bad_key, nbits = _REAL[x2.dtype]
        _threshold_real(x2, x2.view(utype), out2, m, want_mask, k, nbits, fb, absmask, bad_key, bad,
                        _n_tasks(n_rows))
    return bad


def threshold_hermitian(x2: np.ndarray, partner: np.ndarray, k: int, out2: np.ndarray,
                        mask2: np.ndarray) -> np.ndarray:
    """Conjugate-pair-aware H_k on half spectra (R, m); returns the non-finite row flags."""
    n_rows, m = x2.shape
    bad = np.zeros(n_rows, np.uint8)
    _threshold_hermitian(x2, partner, out2, mask2, k, first_bits_for(m), bad, _n_tasks(n_rows))
    return bad


def apply_mask(x2: np.ndarray, mask2: np.ndarray, out2: np.ndarray) -> None:
    _apply_mask(x2, mask2, out2)
