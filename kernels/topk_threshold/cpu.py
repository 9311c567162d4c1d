"""Numba CPU kernels of the top-k hard threshold H_k (Bafna, Murtagh & Vyas, NeurIPS 2018).

Selection is a radix select on the magnitude's IEEE bit pattern: for non-negative floats
the bits read as an unsigned integer order exactly like the values, so the k-th largest
magnitude is found with integer histograms and no float comparison, in O(n) per row:

1. one pass writes the row's keys (``|x|`` bits: the sign bit cleared; complex64: the bits
   of re^2 + im^2 in float64, complex128: of ``hypot(re, im)``) into a per-task scratch
   row and histograms their top bits (exponent + 3 mantissa bits: 1/8-octave bins; only
   the bins the row uses are walked and cleared);
2. the bin where the count from the top crosses k is kept; its members' indices are
   compacted into a scratch list (usually a handful of entries);
3. a guarded quickselect (three-way partitions, iteration cap ~2 log2 m; weighted for the
   DFT pairs below) finds the threshold among them; past the cap, 8-bit radix digits
   refine it instead, so the select is O(n) in every case;
4. one branch-free output pass writes x where key >= T and 0 elsewhere; then the ties
   (key == T) beyond the first ``rem`` in index order, which the increasing candidate list
   holds, are zeroed (ties go to the lower index).

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


@numba.njit(inline="always")
def _cost(cw, weighted, i):
    return np.int64(cw[i]) if weighted else np.int64(1)


@numba.njit(cache=True, nogil=True)
def _quickselect_break(a, cw, weighted, m, r):
    """The key where the cost of a[:m] ranked in decreasing order first exceeds r: ``(T, ok)``.

    T satisfies cost(a > T) <= r < cost(a >= T) (costs cw, or 1 each unless ``weighted``);
    a and cw are reordered together. Three-way partitions (ties never degrade it) around a
    median-of-three pivot; ``ok`` is False when the iteration cap (about 2 log2 m) is hit,
    and the caller falls back to the radix refinement, so the selection stays O(m)
    (introselect's guard).
    """
    lo = 0
    hi = m  # active range [lo, hi); the answer lies in it, r counted from its top
    cap = 8
    mm = m
    while mm > 0:
        cap += 2
        mm >>= 1
    for _ in range(cap):
        if hi - lo <= 16:  # small: insertion sort (descending), then walk the costs
            for i in range(lo + 1, hi):
                v = a[i]
                c = cw[i] if weighted else cw[0]
                j = i - 1
                while j >= lo and a[j] < v:
                    a[j + 1] = a[j]
                    if weighted:
                        cw[j + 1] = cw[j]
                    j -= 1
                a[j + 1] = v
                if weighted:
                    cw[j + 1] = c
            acc = np.int64(0)
            for i in range(lo, hi):
                acc += _cost(cw, weighted, i)
                if acc > r:
                    return a[i], True
            return a[hi - 1], True
        x, y, z = a[lo], a[(lo + hi) // 2], a[hi - 1]
        if x < y:
            x, y = y, x
        if y < z:
            y, z = z, y
        if x < y:
            x, y = y, x
        pivot = y
        # a[lo:gt] > pivot, a[gt:i] == pivot, a[lt:hi] < pivot
        gt = lo
        i = lo
        lt = hi
        w_gt = np.int64(0)
        w_eq = np.int64(0)
        while i < lt:
            v = a[i]
            if v > pivot:
                w_gt += _cost(cw, weighted, i)
                a[i] = a[gt]
                a[gt] = v
                if weighted:
                    t = cw[i]
                    cw[i] = cw[gt]
                    cw[gt] = t
                gt += 1
                i += 1
            elif v < pivot:
                lt -= 1
                a[i] = a[lt]
                a[lt] = v
                if weighted:
                    t = cw[i]
                    cw[i] = cw[lt]
                    cw[lt] = t
            else:
                w_eq += _cost(cw, weighted, i)
                i += 1
        if r < w_gt:
            hi = gt
        elif r < w_gt + w_eq:
            return pivot, True
        else:
            r -= w_gt + w_eq
            lo = lt
    return U64(0), False


@numba.njit(cache=True, nogil=True)
def _radix_select(keys, kmax, w, weighted, n, k, nbits, first_bits, hist, cand, ck, cw):
    """Threshold key T, remaining budget for ties, keep-all flag, ties list: ``(T, rem, all, m)``.

    With costs c_j (1 each unless ``weighted``), T is the key of the first entry of the
    ranking (key descending, index ascending) whose cost no longer fits into k:
    cost(key > T) <= k < cost(key >= T), and ``rem = k - cost(key > T)``. ``keep_all`` when
    the whole row costs <= k. ``keys < 2**nbits``; ``kmax`` is their maximum. ``cand[:m]`` holds, in increasing
    order, indices that include every entry with key == T (the ties, lowest index first).
    """
    # ``hist`` is all zeros on entry and is left so: the bins are walked from the row's top
    # bin down to the crossing one and cleared through the keys, so a wide first digit
    # costs O(n + bins walked), not 2**b per row.
    b = first_bits
    shift = nbits - b
    nb = 1 << b
    dmax = _digit(kmax, shift, nb - 1)  # the walk down the bins starts at the row's top one
    # two interleaved histograms (hist[d], hist[nb + d]) halve the store-to-load chains
    # that repeated bins create
    total = 0
    if weighted:
        for j in range(n):
            c = np.int64(w[j])
            hist[_digit(keys[j], shift, nb - 1) + (j & 1) * nb] += c
            total += c
    else:
        half = n // 2
        for i in range(half):
            hist[_digit(keys[2 * i], shift, nb - 1)] += 1
            hist[nb + _digit(keys[2 * i + 1], shift, nb - 1)] += 1
        if n & 1:
            hist[_digit(keys[n - 1], shift, nb - 1)] += 1
        total = n
    d = dmax
    acc = np.int64(0)
    if total > k:
        while acc + hist[d] + hist[nb + d] <= k:
            acc += hist[d] + hist[nb + d]
            d -= 1
    # one pass restores the zero histogram (O(n) whatever the range of bins) and compacts
    # the crossing bin's indices, branch-free (an if here is an unpredictable branch)
    m = 0
    for j in range(n):
        dg = _digit(keys[j], shift, nb - 1)
        hist[dg] = 0
        hist[nb + dg] = 0
        cand[m] = j
        m += np.int64(dg == d)
    if total <= k:
        return U64(0), np.int64(0), True, 0
    prefix = U64(d)
    rem = k - acc
    # finish on the candidates with a guarded (weighted) quickselect
    for i in range(m):
        j = cand[i]
        ck[i] = keys[j]
        if weighted:
            cw[i] = w[j]
    t_key, ok = _quickselect_break(ck, cw, weighted, m, rem)
    if ok:
        for i in range(m):  # ck/cw were permuted together: the multiset is unchanged
            if ck[i] > t_key:
                rem -= _cost(cw, weighted, i)
        return t_key, rem, False, m
    while shift > 0:
        b = 8 if shift >= 8 else shift
        shift -= b
        nb = 1 << b
        for i in range(m):
            j = cand[i]
            c = np.int64(w[j]) if weighted else np.int64(1)
            hist[_digit(keys[j], shift, nb - 1)] += c
        acc = np.int64(0)
        d = nb - 1
        while acc + hist[d] <= rem:
            acc += hist[d]
            d -= 1
        for dd in range(nb):
            hist[dd] = 0
        rem -= acc
        m2 = 0
        for i in range(m):
            j = cand[i]
            cand[m2] = j
            m2 += np.int64(_digit(keys[j], shift, nb - 1) == d)
        m = m2
        prefix = (prefix << U64(b)) | U64(d)
    return prefix, rem, False, m


@numba.njit(cache=True, nogil=True)
def _group_select(keys, kmax, w, weighted, n, k, nbits, first_bits, hist, cand, ck, cw, G, gm, cand2, ck2, cw2):
    """Short-row select: ``(T, rem, m)`` as ``_radix_select`` returns them, for rows with k << n.

    The row is split into G >= k + 1 strided groups (entry j in group j mod G); the
    (k + 1)-th largest of the group maxima, thr, is a lower bound of the break key T: at
    least k + 1 entries (cost >= 1 each, as zero-cost entries have key 0) reach it. One
    vectorised pass takes the group maxima, a radix select over the G maxima finds thr, one
    branch-free pass compacts the entries with key >= thr (about 1.4 k of them for G =
    2 (k + 1) on random data), and a radix select over those finds T: the histogram passes,
    which dominate ``_radix_select`` on rows of a few hundred entries, run over about 3.4 k
    entries instead of n. The row must cost more than k.
    """
    for g in range(G):
        gm[g] = keys[g]
    base = G
    while base + G <= n:
        for g in range(G):
            gm[g] = max(gm[g], keys[base + g])
        base += G
    for g in range(n - base):
        gm[g] = max(gm[g], keys[base + g])
    thr, _r, _a, _m = _radix_select(gm, kmax, w, False, G, k, nbits, first_bits, hist, cand2, ck2, cw2)
    m = 0
    for j in range(n):
        cand[m] = j
        m += np.int64(keys[j] >= thr)
    cmax = U64(0)
    for i in range(m):
        j = cand[i]
        kv = keys[j]
        ck[i] = kv
        cmax = max(cmax, kv)
        if weighted:
            cw[i] = w[j]
    t_key, rem, _a, m2 = _radix_select(ck, cmax, cw, weighted, m, k, nbits, first_bits, hist, cand2, ck2, cw2)
    for i in range(m2):  # ties: positions in ck (increasing) back to row indices
        cand[i] = cand[cand2[i]]
    return t_key, rem, m2


@numba.njit(cache=True, nogil=True)
def _group_kept(keys, kmax, n, k, nbits, first_bits, hist, cand, ck, G, gm, cand2, ck2, cw2, kl):
    """The kept set of a short row (unit costs) as a list: ``kl[:nk]`` (increasing), returns nk.

    ``_group_select``'s lower bound (the (k + 1)-th largest of G strided group maxima) and
    radix select over the entries that reach it, then one walk over those candidates (in
    increasing index order) keeps key > T and the first ``rem`` ties key == T: exactly the
    support ``_write_row`` writes, without a pass over the whole row. The row must cost
    more than k (G > 0 guarantees it).
    """
    for g in range(G):
        gm[g] = keys[g]
    base = G
    while base + G <= n:
        for g in range(G):
            gm[g] = max(gm[g], keys[base + g])
        base += G
    for g in range(n - base):
        gm[g] = max(gm[g], keys[base + g])
    thr, _r, _a, _m = _radix_select(gm, kmax, cw2, False, G, k, nbits, first_bits, hist, cand2, ck2, cw2)
    m = 0
    for j in range(n):
        cand[m] = j
        m += np.int64(keys[j] >= thr)
    cmax = U64(0)
    for i in range(m):
        kv = keys[cand[i]]
        ck[i] = kv
        cmax = max(cmax, kv)
    t_key, rem, _a, _m2 = _radix_select(ck, cmax, cw2, False, m, k, nbits, first_bits, hist, cand2, ck2, cw2)
    nk = 0
    for i in range(m):  # branch-free: ties keep while the budget lasts (index order)
        kv = ck[i]
        tie = np.int64(kv == t_key)
        keep = np.int64(kv > t_key) | (tie & np.int64(rem > 0))
        rem -= tie & keep
        kl[nk] = cand[i]
        nk += keep
    return nk


@numba.njit(inline="always")
def _group_scratch(G, n):
    m = n if G > 0 else 1
    return np.empty(max(G, 1), np.uint64), np.empty(m, np.int64), np.empty(m, np.uint64), np.empty(m, np.uint8)


@numba.njit(inline="always")
def _select(keys, kmax, w, weighted, n, k, total, nbits, first_bits, hist, cand, ck, cw, G, gm, cand2, ck2, cw2):
    """``_radix_select``'s result; through ``_group_select`` when G > 0 and the row costs > k."""
    if G > 0 and total > k:
        t_key, rem, m = _group_select(keys, kmax, w, weighted, n, k, nbits, first_bits, hist, cand, ck, cw, G, gm,
                                      cand2, ck2, cw2)
        return t_key, rem, False, m
    return _radix_select(keys, kmax, w, weighted, n, k, nbits, first_bits, hist, cand, ck, cw)


@numba.njit(inline="always")
def _write_row(xr, keys, orow, mrow, want_mask, t_key, rem, keep_all, zero, cand, m):
    # out = x where key > T (a branch-free, vectorisable pass) and the first ``rem`` ties
    # (key == T) in index order, found in the increasing candidate list cand[:m].
    if keep_all:
        for j in range(xr.shape[0]):
            orow[j] = xr[j]
            if want_mask:
                mrow[j] = True
        return
    # keep key >= T first (out may be x itself: a tie must not be zeroed before it is read)
    for j in range(xr.shape[0]):
        keep = keys[j] >= t_key
        orow[j] = xr[j] if keep else zero
        if want_mask:
            mrow[j] = keep
    for i in range(m):  # then drop the ties beyond the first ``rem`` (index order)
        j = cand[i]
        if keys[j] == t_key:
            if rem > 0:
                rem -= 1
            else:
                orow[j] = zero
                if want_mask:
                    mrow[j] = False


@numba.njit(inline="always")
def _task_rows(task, n_tasks, n_rows):
    per = (n_rows + n_tasks - 1) // n_tasks
    lo = task * per
    return lo, min(lo + per, n_rows)


@numba.njit(cache=True, nogil=True)
def _real_task(x, bits, out, mask, want_mask, k, nbits, first_bits, absmask, bad_key, bad, lo, hi, G):
    # rows lo..hi of x, out: (R, n) C-contiguous float; bits: x viewed as uint32/uint64.
    # One task's scratch is allocated here once for all its rows. (The body lives outside the
    # prange loop: compiled inside it, the same code runs slower.)
    n = x.shape[1]
    keys = np.empty(n, np.uint64)
    cand = np.empty(n, np.int64)
    ck = np.empty(n, np.uint64)
    hist = np.zeros(2 << max(first_bits, 8), np.int64)
    w = np.empty(1, np.uint8)
    gm, cand2, ck2, cw2 = _group_scratch(G, n)
    for r in range(lo, hi):
        br = bits[r]
        kmax = U64(0)
        for j in range(n):  # vectorised: keys, and their maximum (NaN/inf keys are the largest)
            kv = U64(br[j] & absmask)
            keys[j] = kv
            kmax = max(kmax, kv)
        if kmax >= bad_key:
            bad[r] = 1
            continue
        t_key, rem, keep_all, m = _select(keys, kmax, w, False, n, k, n, nbits, first_bits, hist, cand, ck, w, G, gm, cand2, ck2, cw2)
        xr = x[r]
        _write_row(xr, keys, out[r], mask[r] if want_mask else mask[0], want_mask, t_key, rem, keep_all, xr[0] * 0,
                   cand, m)


@numba.njit(parallel=True, cache=True, nogil=True)
def _threshold_real(x, bits, out, mask, want_mask, k, nbits, first_bits, absmask, bad_key, bad, n_tasks, G):
    n_rows = x.shape[0]
    for task in prange(n_tasks):
        lo, hi = _task_rows(task, n_tasks, n_rows)
        _real_task(x, bits, out, mask, want_mask, k, nbits, first_bits, absmask, bad_key, bad, lo, hi, G)


@numba.njit(cache=True, nogil=True)
def _residual_task(y, x, e, z, k, first_bits, bad, lo, hi, G):
    # e = H_k(y - x), z = y - e for rows lo..hi; keys: bits of |y - x| in float64 (exact
    # for float32, so the order and the ties are those of the residual itself).
    n = y.shape[1]
    rr = np.empty(n, y.dtype)
    mag = np.empty(n, np.float64)
    keys = mag.view(np.uint64)
    cand = np.empty(n, np.int64)
    ck = np.empty(n, np.uint64)
    hist = np.zeros(2 << max(first_bits, 8), np.int64)
    w = np.empty(1, np.uint8)
    mdummy = np.empty(1, np.bool_)
    gm, cand2, ck2, cw2 = _group_scratch(G, n)
    for r in range(lo, hi):
        kmax = U64(0)
        for j in range(n):
            v = y[r, j] - x[r, j]
            rr[j] = v
            mag[j] = abs(np.float64(v))
        for j in range(n):
            kmax = max(kmax, keys[j])
        if kmax >= U64(0x7FF0000000000000):
            bad[r] = 1
            continue
        t_key, rem, keep_all, m = _select(keys, kmax, w, False, n, k, n, 63, first_bits, hist, cand, ck, w, G, gm,
                                          cand2, ck2, cw2)
        _write_row(rr, keys, e[r], mdummy, False, t_key, rem, keep_all, rr[0] * 0, cand, m)
        for j in range(n):
            z[r, j] = y[r, j] - e[r, j]


@numba.njit(parallel=True, cache=True, nogil=True)
def _threshold_residual(y, x, e, z, k, first_bits, bad, n_tasks, G):
    n_rows = y.shape[0]
    for task in prange(n_tasks):
        lo, hi = _task_rows(task, n_tasks, n_rows)
        _residual_task(y, x, e, z, k, first_bits, bad, lo, hi, G)


@numba.njit(inline="always")
def _complex_key(v, exact_square):
    # complex64: re^2 + im^2 in float64 (exact products, no overflow); complex128: hypot
    re = np.float64(v.real)
    im = np.float64(v.imag)
    if exact_square:
        return re * re + im * im
    return math.hypot(re, im)


@numba.njit(cache=True, nogil=True)
def _complex_task(x, out, mask, want_mask, k, first_bits, bad, lo, hi, exact_square, G):
    n = x.shape[1]
    bad_key = U64(0x7FF0000000000000)
    mag = np.empty(n, np.float64)
    keys = mag.view(np.uint64)
    cand = np.empty(n, np.int64)
    ck = np.empty(n, np.uint64)
    hist = np.zeros(2 << max(first_bits, 8), np.int64)
    w = np.empty(1, np.uint8)
    gm, cand2, ck2, cw2 = _group_scratch(G, n)
    for r in range(lo, hi):
        xr = x[r]
        for j in range(n):
            mag[j] = _complex_key(xr[j], exact_square)
        kmax = U64(0)
        for j in range(n):
            kmax = max(kmax, keys[j])
        if kmax >= bad_key:  # NaN and inf magnitudes have the largest bit patterns
            bad[r] = 1
            continue
        t_key, rem, keep_all, m = _select(keys, kmax, w, False, n, k, n, 63, first_bits, hist, cand, ck, w, G, gm, cand2, ck2, cw2)
        _write_row(xr, keys, out[r], mask[r] if want_mask else mask[0], want_mask, t_key, rem, keep_all, xr[0] * 0,
                   cand, m)


@numba.njit(parallel=True, cache=True, nogil=True)
def _threshold_complex(x, out, mask, want_mask, k, first_bits, bad, n_tasks, exact_square, G):
    # Complex rows: key = bits of the float64 magnitude (see _complex_key; monotone in |z|).
    n_rows = x.shape[0]
    for task in prange(n_tasks):
        lo, hi = _task_rows(task, n_tasks, n_rows)
        _complex_task(x, out, mask, want_mask, k, first_bits, bad, lo, hi, exact_square, G)


@numba.njit(inline="always")
def _hermitian_weights(partner, w):
    total = np.int64(0)
    for j in range(partner.shape[0]):
        p = partner[j]
        w[j] = 2 if (p < 0 or p > j) else (1 if p == j else 0)
        total += np.int64(w[j])
    return total


@numba.njit(inline="always")
def _hermitian_row(xr, orow, mrow, partner, w, total, k, first_bits, exact_square, mag, keys, hist, cand, ck, cw, G,
                   gm, cand2, ck2, cw2):
    """Pair-aware H_k of one half-spectrum row xr into orow/mrow; False if not finite."""
    m = xr.shape[0]
    nonfinite = False
    if exact_square:  # the flag outside the loop (a branch inside keeps the loop scalar)
        for j in range(m):
            a = _complex_key(xr[j], True)
            nonfinite |= not (a <= 1.7976931348623157e308)
            mag[j] = a if w[j] != 0 else 0.0
    else:
        for j in range(m):
            a = _complex_key(xr[j], False)
            nonfinite |= not (a <= 1.7976931348623157e308)
            mag[j] = a if w[j] != 0 else 0.0
    if nonfinite:
        return False
    kmax = U64(0)
    for j in range(m):
        kmax = max(kmax, keys[j])
    t_key, rem, keep_all, _m = _select(keys, kmax, w, True, m, k, total, 63, first_bits, hist, cand, ck, cw, G,
                                       gm, cand2, ck2, cw2)
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
        mrow[j] = keep
        orow[j] = xr[j] if keep else zero
    for j in range(m):
        if w[j] == 0:
            keep = mrow[partner[j]]
            mrow[j] = keep
            orow[j] = xr[j] if keep else zero
    return True


@numba.njit(cache=True, nogil=True)
def _hermitian_task(x, partner, out, mask, k, first_bits, bad, lo, hi, exact_square, G):
    m = x.shape[1]
    mag = np.empty(m, np.float64)
    keys = mag.view(np.uint64)
    w = np.empty(m, np.uint8)
    cand = np.empty(m, np.int64)
    ck = np.empty(m, np.uint64)
    cw = np.empty(m, np.uint8)
    hist = np.zeros(2 << max(first_bits, 8), np.int64)
    gm, cand2, ck2, cw2 = _group_scratch(G, m)
    total = _hermitian_weights(partner, w)
    for r in range(lo, hi):
        if not _hermitian_row(x[r], out[r], mask[r], partner, w, total, k, first_bits, exact_square, mag, keys, hist,
                              cand, ck, cw, G, gm, cand2, ck2, cw2):
            bad[r] = 1


@numba.njit(parallel=True, cache=True, nogil=True)
def _threshold_hermitian(x, partner, out, mask, k, first_bits, bad, n_tasks, exact_square, G):
    # x: (R, m) half spectrum (rfftn layout, flattened). partner[j]: -1 when j's conjugate
    # lies outside the half spectrum (a pair: cost 2), j when self-conjugate (cost 1), else
    # the flat index of its conjugate inside the half spectrum (the lower index represents
    # the pair, cost 2; the higher one costs 0 and copies the decision).
    n_rows = x.shape[0]
    for task in prange(n_tasks):
        lo, hi = _task_rows(task, n_tasks, n_rows)
        _hermitian_task(x, partner, out, mask, k, first_bits, bad, lo, hi, exact_square, G)


@numba.njit(parallel=True, cache=True, nogil=True)
def _apply_mask(x, mask, out):
    n_rows, n = x.shape
    for r in prange(n_rows):
        xr = x[r]
        zero = xr[0] * 0
        for j in range(n):
            out[r, j] = xr[j] if mask[r, j] else zero


def first_bits_for(nbits: int) -> int:
    """Width of the first radix digit for keys of ``nbits`` bits (see config)."""
    return int(config.CPU_FIRST_BITS_32 if nbits <= 31 else config.CPU_FIRST_BITS_64)


def groups_for(n: int, k: int) -> int:
    """Groups of the short-row select (0: radix select), see config.CPU_SHORT_ROW_MAX."""
    if n <= config.CPU_SHORT_ROW_MAX and config.CPU_SHORT_ROW_RATIO * (k + 1) <= n:
        return 2 * (k + 1)
    return 0


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
    fb = first_bits_for(63 if x2.dtype.kind == "c" or x2.dtype.itemsize == 8 else 31)
    if x2.dtype.kind == "c":
        _threshold_complex(x2, out2, m, want_mask, k, fb, bad, _n_tasks(n_rows), x2.dtype == np.complex64,
                           groups_for(n, k))
    else:
        utype, absmask, bad_key, nbits = _REAL[x2.dtype]
        _threshold_real(x2, x2.view(utype), out2, m, want_mask, k, nbits, fb, absmask, bad_key, bad,
                        _n_tasks(n_rows), groups_for(n, k))
    return bad


def threshold_residual(y2: np.ndarray, x2: np.ndarray, k: int, e2: np.ndarray, z2: np.ndarray) -> np.ndarray:
    """IHT's pixel step in one pass: e2 = H_k(y2 - x2) per row, z2 = y2 - e2.

    y2, x2, e2, z2: C-contiguous (R, n) arrays of one float dtype. The same values as
    ``threshold_rows(y2 - x2, k, ...)`` followed by ``y2 - e2``, without the two temporaries.
    Returns the (R,) uint8 flags of rows whose residual is not finite.
    """
    n_rows, n = y2.shape
    bad = np.zeros(n_rows, np.uint8)
    _threshold_residual(y2, x2, e2, z2, k, first_bits_for(63), bad, _n_tasks(n_rows), groups_for(n, k))
    return bad


def threshold_hermitian(x2: np.ndarray, partner: np.ndarray, k: int, out2: np.ndarray,
                        mask2: np.ndarray) -> np.ndarray:
    """Conjugate-pair-aware H_k on half spectra (R, m); returns the non-finite row flags."""
    n_rows, m = x2.shape
    bad = np.zeros(n_rows, np.uint8)
    _threshold_hermitian(x2, partner, out2, mask2, k, first_bits_for(63), bad, _n_tasks(n_rows),
                         x2.dtype == np.complex64, groups_for(m, k))
    return bad


def apply_mask(x2: np.ndarray, mask2: np.ndarray, out2: np.ndarray) -> None:
    _apply_mask(x2, mask2, out2)


# --------------------------------------------------------------------------- small 2-D DCT
#
# y = Dh^T H_k(Dh x Dw^T) Dw for small real images (sides <= 64), one image at a time per
# task: the products are single-threaded BLAS calls (np.dot with out) on the image's own
# 28x28-sized blocks, the select runs on the coefficients while they are in L1, then the
# inverse: for k << h w along h over the kept coefficients only (k rows of h multiply-adds)
# and one product along w, else two dense products. One parallel region for the whole
# batch: no (B, h, w) temporaries, and no OpenBLAS thread pool spin-waiting against
# Numba's between a batched product and the select (the caller limits BLAS to one thread).


@numba.njit(inline="always")
def _bits_keys(src, n, kf, kb, keys):
    # keys = bits of |src| (kf/kb: one scratch row seen as floats / unsigned integers), and max
    for j in range(n):
        kf[j] = abs(src[j])
    kmax = U64(0)
    for j in range(n):
        kv = U64(kb[j])
        keys[j] = kv
        kmax = max(kmax, kv)
    return kmax


@numba.njit(inline="always")
def _dct_image(src, dst, mrow, want_mask, k, DwT, Dh, Dw, DhT, nbits, first_bits, bad_key, G, kf, kb, T, C, Ck,
               Z, keys, hist, cand, ck, gm, cand2, ck2, cw2, GT, kl, juv):
    """dst = Dh^T H_k(Dh src Dw^T) Dw for one (h, w) image; False (dst untouched) if not finite.

    With the short-row select (G > 0, k << h w) the inverse runs over the kept coefficients
    only: GT[v] += C[u, v] Dh[u] (the columns of Dh^T M C, k rows of h multiply-adds) and one
    product dst = GT^T Dw, instead of the two dense products (Ck Dw, then Dh^T); ``juv`` maps
    a flat index j to (u, v) = (juv[0, j], juv[1, j]) without an integer division. Otherwise
    the dense inverse. (At most 30 arguments: CPython passes more as a tuple, which Numba
    cannot inline.)
    """
    np.dot(src, DwT, T)
    return _dct_from_rows(dst, mrow, want_mask, k, Dh, Dw, DhT, nbits, first_bits, bad_key, G, kf, kb, T, C, Ck, Z,
                          keys, hist, cand, ck, gm, cand2, ck2, cw2, GT, kl, juv)


@numba.njit(inline="always")
def _dct_from_rows(dst, mrow, want_mask, k, Dh, Dw, DhT, nbits, first_bits, bad_key, G, kf, kb, T, C, Ck, Z, keys, hist,
                   cand, ck, gm, cand2, ck2, cw2, GT, kl, juv):
    """``_dct_image`` from T = src Dw^T (the rows' transform, done for a chunk of images at once)."""
    n = C.size
    cflat = C.reshape(n)
    np.dot(Dh, T, C)
    kmax = _bits_keys(cflat, n, kf, kb, keys)
    if kmax >= bad_key:
        return False
    if G > 0:
        nk = _group_kept(keys, kmax, n, k, nbits, first_bits, hist, cand, ck, G, gm, cand2, ck2, cw2, kl)
        h = Dh.shape[0]
        GTf = GT.reshape(n)
        for j in range(n):
            GTf[j] = 0
        for i in range(nk):
            j = kl[i]
            c = cflat[j]
            du = Dh[juv[0, j]]
            g = GT[juv[1, j]]
            for t in range(h):
                g[t] += c * du[t]
        if want_mask:
            for j in range(n):
                mrow[j] = False
            for i in range(nk):
                mrow[kl[i]] = True
        np.dot(GT.T, Dw, dst)
        return True
    t_key, rem, keep_all, m = _select(keys, kmax, cw2, False, n, k, n, nbits, first_bits, hist, cand, ck, cw2, G,
                                      gm, cand2, ck2, cw2)
    _write_row(cflat, keys, Ck.reshape(n), mrow, want_mask, t_key, rem, keep_all, cflat[0] * 0, cand, m)
    np.dot(Ck, Dw, Z)
    np.dot(DhT, Z, dst)
    return True


@numba.njit(inline="always")
def _flat_uv(h, w):
    # flat index j = u * w + v of an (h, w) image -> (u, v) = (juv[0, j], juv[1, j])
    juv = np.empty((2, h * w), np.int64)
    for u in range(h):
        for v in range(w):
            juv[0, u * w + v] = u
            juv[1, u * w + v] = v
    return juv


@numba.njit(inline="always")
def _count_flags(bad):
    # the number of flagged images, counted in the kernel: a numpy call on the flags after
    # the parallel region would run next to the still-spinning OpenMP worker
    nbad = 0
    for b in range(bad.shape[0]):
        nbad += np.int64(bad[b] != 0)
    return nbad


@numba.njit(inline="always")
def _bad_key_for(nbits):
    return U64(0xFF) << U64(nbits - 8) if nbits == 31 else U64(0x7FF) << U64(nbits - 11)


@numba.njit(cache=True, nogil=True)
def _dct_task(x, out, mask, want_mask, k, DwT, Dh, Dw, DhT, nbits, first_bits, bad, lo, hi, G, kf, kb, CH):
    # kf: a float scratch row of x's dtype, kb: the same memory as unsigned integers (the keys
    # are |C|'s own bits: 31-bit keys for float32 keep the first histogram at 32 KB).
    _, h, w = x.shape
    n = h * w
    C = np.empty((h, w), x.dtype)
    Ck = np.empty((h, w), x.dtype)
    Z = np.empty((h, w), x.dtype)
    keys = np.empty(n, np.uint64)
    cand = np.empty(n, np.int64)
    ck = np.empty(n, np.uint64)
    hist = np.zeros(2 << max(first_bits, 8), np.int64)
    gm, cand2, ck2, cw2 = _group_scratch(G, n)
    GT = np.empty((w, h), x.dtype)
    kl = np.empty(n, np.int64)
    juv = _flat_uv(h, w)
    bad_key = _bad_key_for(nbits)
    Tb = np.empty((CH, h, w), x.dtype)
    for b0 in range(lo, hi, CH):
        b1 = min(b0 + CH, hi)
        nb = b1 - b0
        # the rows' transform of a chunk of images in one product (BLAS runs it faster per
        # image than one small product per image; see config.CPU_SMALL_IMAGE_CHUNK)
        np.dot(x[b0:b1].reshape(nb * h, w), DwT, Tb[:nb].reshape(nb * h, w))
        for b in range(b0, b1):
            mrow = mask[b] if want_mask else mask[0]
            if not _dct_from_rows(out[b], mrow, want_mask, k, Dh, Dw, DhT, nbits, first_bits, bad_key, G, kf, kb,
                                  Tb[b - b0], C, Ck, Z, keys, hist, cand, ck, gm, cand2, ck2, cw2, GT, kl, juv):
                bad[b] = 1


@numba.njit(parallel=True, cache=True, nogil=True)
def _dct_project(x, out, mask, want_mask, k, DwT, Dh, Dw, DhT, nbits, first_bits, bad, n_tasks, G, kf, kb, CH):
    n_rows = x.shape[0]
    for task in prange(n_tasks):
        lo, hi = _task_rows(task, n_tasks, n_rows)
        _dct_task(x, out, mask, want_mask, k, DwT, Dh, Dw, DhT, nbits, first_bits, bad, lo, hi, G, kf[task],
                  kb[task], CH)
    return _count_flags(bad)


@numba.njit(cache=True, nogil=True)
def _iht_dct_task(y, x_hat, e_hat, iters, k, t, n_iter, tol, DwT, Dh, Dw, DhT, nbits, first_bits, bad, lo, hi, Gk,
                  Gt, kf, kb):
    # Algorithm 1 on images lo..hi, each to its own stop: x = 0; e = H_t(y - x); x = P_k(y - e).
    _, h, w = y.shape
    n = h * w
    dt = y.dtype
    T = np.empty((h, w), dt)
    C = np.empty((h, w), dt)
    Ck = np.empty((h, w), dt)
    Z = np.empty((h, w), dt)
    R = np.empty(n, dt)
    Zs = np.empty((h, w), dt)
    X = np.empty((h, w), dt)
    Xn = np.empty((h, w), dt)
    keys = np.empty(n, np.uint64)
    cand = np.empty(n, np.int64)
    ck = np.empty(n, np.uint64)
    hist = np.zeros(2 << max(first_bits, 8), np.int64)
    wd = np.empty(1, np.uint8)
    md = np.empty(1, np.bool_)
    gm, cand2, ck2, cw2 = _group_scratch(max(Gk, Gt), n)
    GT = np.empty((w, h), dt)
    kl = np.empty(n, np.int64)
    juv = _flat_uv(h, w)
    bad_key = _bad_key_for(nbits)
    zsf = Zs.reshape(n)
    for b in range(lo, hi):
        yb = y[b].reshape(n)
        eb = e_hat[b].reshape(n)
        X[:] = 0
        for _p in range(n_iter):
            xf = X.reshape(n)
            for j in range(n):
                R[j] = yb[j] - xf[j]
            kmax = _bits_keys(R, n, kf, kb, keys)
            if kmax >= bad_key:
                bad[b] = 1
                break
            t_key, rem, keep_all, m = _select(keys, kmax, wd, False, n, t, n, nbits, first_bits, hist, cand, ck, wd,
                                              Gt, gm, cand2, ck2, cw2)
            _write_row(R, keys, eb, md, False, t_key, rem, keep_all, R[0] * 0, cand, m)  # e = H_t(y - x)
            for j in range(n):
                zsf[j] = yb[j] - eb[j]
            if not _dct_image(Zs, Xn, md, False, k, DwT, Dh, Dw, DhT, nbits, first_bits, bad_key, Gk, kf, kb, T, C,
                              Ck, Z, keys, hist, cand, ck, gm, cand2, ck2, cw2, GT, kl, juv):
                bad[b] = 1
                break
            iters[b] += 1
            done = False
            if tol > 0:
                xnf = Xn.reshape(n)
                change = 0.0
                norm = 0.0
                for j in range(n):
                    dv = np.float64(xnf[j]) - np.float64(xf[j])
                    change += dv * dv
                    norm += np.float64(xnf[j]) * np.float64(xnf[j])
                done = math.sqrt(change) <= tol * math.sqrt(norm)
            X, Xn = Xn, X
            if done:
                break
        xb = x_hat[b]
        for i in range(h):
            for j in range(w):
                xb[i, j] = X[i, j]


@numba.njit(parallel=True, cache=True, nogil=True)
def _iht_dct(y, x_hat, e_hat, iters, k, t, n_iter, tol, DwT, Dh, Dw, DhT, nbits, first_bits, bad, n_tasks, Gk, Gt,
             kf, kb):
    n_rows = y.shape[0]
    for task in prange(n_tasks):
        lo, hi = _task_rows(task, n_tasks, n_rows)
        _iht_dct_task(y, x_hat, e_hat, iters, k, t, n_iter, tol, DwT, Dh, Dw, DhT, nbits, first_bits, bad, lo, hi,
                      Gk, Gt, kf[task], kb[task])


def iht_dct_small(y3: np.ndarray, k: int, t: int, n_iter: int, tol: float, mats, x3: np.ndarray, e3: np.ndarray,
                  iters: np.ndarray) -> np.ndarray:
    """Algorithm 1 (IHT) with the 2-D DCT for every image of the C-contiguous (B, h, w) y3.

    Each image runs its own iterations (up to ``n_iter``; with ``tol > 0`` it stops once
    ||x^p - x^{p-1}|| <= tol ||x^p||) in per-task scratch: the pixel step and the projection of
    ``dct_project_small`` per iteration, same arithmetic. x3/e3: outputs (B, h, w); iters
    (B,) int64, incremented. Call with BLAS limited to one thread. Returns the (B,) uint8
    flags of images whose residual or coefficients were not finite.
    """
    B, h, w = y3.shape
    bad = np.zeros(B, np.uint8)
    DwT, Dh, Dw, DhT = mats
    utype, _absmask, _bad_key, nbits = _REAL[y3.dtype]
    n_tasks = _n_tasks(B)
    kf = np.empty((n_tasks, h * w), y3.dtype)
    _iht_dct(y3, x3, e3, iters, k, t, n_iter, float(tol), DwT, Dh, Dw, DhT, nbits, first_bits_for(nbits), bad,
             n_tasks, groups_for(h * w, k), groups_for(h * w, t), kf, kf.view(utype))
    return bad


def dct_project_small(x3: np.ndarray, k: int, mats, out3: np.ndarray, mask2: np.ndarray | None) -> int:
    """y = Dh^T H_k(Dh x Dw^T) Dw for every image of the C-contiguous (B, h, w) float array x3.

    ``mats`` = (Dw^T, Dh, Dw, Dh^T), C-contiguous, x3's dtype (Dh: the orthonormal DCT-II
    matrix of size h). out3: (B, h, w); mask2: (B, h * w) bool or None. Ties keep the lower
    flat index u * w + v. Call with BLAS limited to one thread (the products run inside the
    parallel region). Returns the number of images with non-finite coefficients (their outputs are not
    written).
    """
    B, h, w = x3.shape
    bad = np.zeros(B, np.uint8)
    want_mask = mask2 is not None
    m = mask2 if want_mask else np.empty((1, 1), np.bool_)
    DwT, Dh, Dw, DhT = mats
    utype, _absmask, _bad_key, nbits = _REAL[x3.dtype]
    n_tasks = _n_tasks(B)
    kf = np.empty((n_tasks, h * w), x3.dtype)
    return int(_dct_project(x3, out3, m, want_mask, k, DwT, Dh, Dw, DhT, nbits, first_bits_for(nbits), bad, n_tasks,
                            groups_for(h * w, k), kf, kf.view(utype), int(config.CPU_SMALL_IMAGE_CHUNK)))


# --------------------------------------------------------------------------- small 2-D real DFT
#
# The same one-pass structure for the orthonormal DFT of small real images (rfftn layout),
# with real and imaginary parts in separate planes ([re | im] columns) so that every step is
# a real product or a vectorised loop (OpenBLAS's complex products of these small sizes are
# several times slower than real ones): U = x Wf (the real DFT along w); the complex DFT along h
# as one (h x h) real product P = FH U, since row h - u of the DFT is the conjugate of row
# u: cosine rows 0..h//2 and sine rows 1..(h-1)//2 give C[u] and C[h - u] by a sum and a
# difference (half the multiply-adds of [Re Fh; Im Fh] U); the pair-aware select (an
# estimated threshold and a stable sort of the few candidates, ``_pair_prefix_short``); the
# inverse along h only over the kept coefficients (k of h * wh: G[:, v] += c e^{2 pi i u t / h},
# a few vectorised rows instead of a dense product); y = G Wi (Wi: the real inverse along w,
# weights 1 for the zero/Nyquist columns, whose imaginary rows are zero, 2 for the others).


def pair_groups_for(m: int, k: int) -> int:
    """Groups of the estimated-threshold pair select (``_pair_prefix_short``; 0: off), for
    the short rows that also take ``groups_for``'s short-row select. About k / 3 groups:
    their smallest maximum usually leaves about k candidates, and the general select runs
    only for the few rows where it does not."""
    return max(1, (k + 1) // 3) if (m <= config.CPU_SHORT_ROW_MAX and config.CPU_SHORT_ROW_RATIO * (k + 1) <= m) else 0


@numba.njit(cache=True, nogil=True)
def _pair_prefix_short(keys, w, mrow, kl, partner, m, k, n1, G, gm, cand, ck):
    """Pair-aware support of a short row by an estimated threshold: ``nk``, or -1 (fall back).

    thr = the smallest of G strided group maxima; the entries with key >= thr (at least G of
    them) are the candidates. When they cost more than k, the kept set (the longest prefix
    of the ranking key descending, index ascending, whose cost is <= k) lies among them:
    a stable insertion sort of the candidates (increasing index order on entry) and one walk
    give it. Otherwise -1, and the caller runs the general select. n1: the number of
    cost-1 entries of the row; every other kept entry costs 2, so the kept prefix holds at
    most (k + n1) // 2 entries and only the top (k + n1) // 2 + 1 candidates are sorted.
    """
    for g in range(G):
        gm[g] = keys[g]
    base = G
    while base + G <= m:
        for g in range(G):
            gm[g] = max(gm[g], keys[base + g])
        base += G
    for g in range(m - base):
        gm[g] = max(gm[g], keys[base + g])
    thr = gm[0]
    for g in range(1, G):
        thr = min(thr, gm[g])
    if thr == 0:
        return -1
    c = 0
    for j in range(m):
        cand[c] = j
        c += np.int64(keys[j] >= thr)
    cost = np.int64(0)
    for i in range(c):
        cost += np.int64(w[cand[i]])
    if cost <= k:
        return -1
    # stable insertion sort, descending keys, of the top L candidates only
    L = min(c, (k + n1) // 2 + 1)
    ns = 0
    for i in range(c):
        j = cand[i]
        v = keys[j]
        if ns == L:
            if ck[ns - 1] >= v:
                continue
            ns -= 1
        p = ns - 1
        while p >= 0 and ck[p] < v:
            ck[p + 1] = ck[p]
            cand[p + 1] = cand[p]
            p -= 1
        ck[p + 1] = v
        cand[p + 1] = j
        ns += 1
    for j in range(m):
        mrow[j] = False
    acc = np.int64(0)
    nk = 0
    for i in range(ns):
        j = cand[i]
        cj = np.int64(w[j])
        if acc + cj > k:
            break
        acc += cj
        mrow[j] = True
        kl[nk] = j
        nk += 1
        p = partner[j]
        if p > j:
            mrow[p] = True
            kl[nk] = p
            nk += 1
    return nk


@numba.njit(inline="always")
def _hermitian_planar_list(cr, ci, mrow, kl, partner, w, wf, dup, total, k, first_bits, exact_square, mag, keys, hist,
                           cand, ck, cw, G, gm, cand2, ck2, cw2, Gp, n1):
    """Pair-aware support of one half-spectrum row held as real/imaginary planes (cr, ci).

    The keys are ``_hermitian_row``'s (complex64 planes: re^2 + im^2 in float64, else
    hypot; ``wf`` the weights as 0.0/1.0, so zero-cost entries get key 0 and NaN stays NaN);
    the kept set is the same longest prefix of the ranking. Writes the mask ``mrow`` and the
    list ``kl[:nk]`` of kept indices (zero-cost entries ``dup`` copy their partner's
    decision); returns ``nk``, or -1 if the row is not finite. With ``Gp > 0`` the
    estimated-threshold select runs first, the general weighted select when it gives up.
    """
    m = cr.shape[0]
    if exact_square:  # two loops, not a branch inside one: this one vectorises
        for j in range(m):
            re = np.float64(cr[j])
            im = np.float64(ci[j])
            mag[j] = (re * re + im * im) * wf[j]
    else:
        for j in range(m):
            mag[j] = math.hypot(np.float64(cr[j]), np.float64(ci[j])) * wf[j]
    kmax = U64(0)
    for j in range(m):
        kmax = max(kmax, keys[j])
    if kmax >= U64(0x7FF0000000000000):
        return -1
    if Gp > 0:
        nk = _pair_prefix_short(keys, w, mrow, kl, partner, m, k, n1, Gp, gm, cand, ck)
        if nk >= 0:
            return nk
    t_key, rem, keep_all, nc = _select(keys, kmax, w, True, m, k, total, 63, first_bits, hist, cand, ck, cw, G,
                                       gm, cand2, ck2, cw2)
    nk = 0
    for j in range(m):
        keep = (keep_all or keys[j] > t_key) and w[j] != 0
        mrow[j] = keep
        kl[nk] = j
        nk += np.int64(keep)
    if not keep_all:
        for i in range(nc):  # ties at T, lowest index first: the longest prefix that fits
            j = cand[i]
            if keys[j] != t_key or w[j] == 0:
                continue
            c = np.int64(w[j])
            if c > rem:
                break
            rem -= c
            mrow[j] = True
            kl[nk] = j
            nk += 1
    for i in range(dup.shape[0]):
        j = dup[i]
        keep = mrow[partner[j]]
        mrow[j] = keep
        kl[nk] = j
        nk += np.int64(keep)
    return nk


@numba.njit(cache=True, nogil=True)
def _fft_task(x, out, mask, want_mask, k, Wf, FH, Ch, Sh, Wi, partner, first_bits, bad, lo, hi, G, exact_square, Gp,
              CH):
    _, h, w = x.shape
    wh = w // 2 + 1
    hc = h // 2 + 1
    hs = (h - 1) // 2
    m = h * wh
    dt = x.dtype
    P = np.empty((h, 2 * wh), dt)
    GT = np.empty((2 * wh, h), dt)
    cr = np.empty(m, dt)
    ci = np.empty(m, dt)
    kl = np.empty(m, np.int64)
    mag = np.empty(m, np.float64)
    keys = mag.view(np.uint64)
    wts = np.empty(m, np.uint8)
    cand = np.empty(m, np.int64)
    ck = np.empty(m, np.uint64)
    cw = np.empty(m, np.uint8)
    hist = np.zeros(2 << max(first_bits, 8), np.int64)
    mrow_s = np.empty(m, np.bool_)
    gm, cand2, ck2, cw2 = _group_scratch(max(G, Gp), m)
    total = _hermitian_weights(partner, wts)
    wf = np.empty(m, np.float64)
    n_dup = 0
    n1 = 0
    for j in range(m):
        wf[j] = 1.0 if wts[j] != 0 else 0.0
        n_dup += wts[j] == 0
        n1 += wts[j] == 1
    dup = np.empty(n_dup, np.int64)
    n_dup = 0
    for j in range(m):
        if wts[j] == 0:
            dup[n_dup] = j
            n_dup += 1
    GTf = GT.reshape(2 * wh * h)
    Gv = GT.T
    juv = _flat_uv(h, wh)
    Ub = np.empty((CH, h, 2 * wh), dt)
    for b in range(lo, hi):
        i = (b - lo) % CH
        if i == 0:  # the real DFT along w of the next chunk of images in one product
            nb = min(CH, hi - b)
            np.dot(x[b:b + nb].reshape(nb * h, w), Wf, Ub[:nb].reshape(nb * h, 2 * wh))
        np.dot(FH, Ub[i], P)
        for v in range(wh):
            cr[v] = P[0, v]
            ci[v] = P[0, wh + v]
        for u in range(1, hs + 1):
            s = hc + u - 1
            o1 = u * wh
            o2 = (h - u) * wh
            for v in range(wh):
                a = P[u, v]
                bb = P[u, wh + v]
                c = P[s, v]
                d = P[s, wh + v]
                cr[o1 + v] = a + d
                ci[o1 + v] = bb - c
                cr[o2 + v] = a - d
                ci[o2 + v] = bb + c
        if h % 2 == 0 and h > 1:
            o1 = (h // 2) * wh
            for v in range(wh):
                cr[o1 + v] = P[h // 2, v]
                ci[o1 + v] = P[h // 2, wh + v]
        mrow = mask[b] if want_mask else mrow_s
        nk = _hermitian_planar_list(cr, ci, mrow, kl, partner, wts, wf, dup, total, k, first_bits, exact_square, mag,
                                    keys, hist, cand, ck, cw, G, gm, cand2, ck2, cw2, Gp, n1)
        if nk < 0:
            bad[b] = 1
            continue
        for j in range(GTf.shape[0]):
            GTf[j] = 0
        for i in range(nk):
            j = kl[i]
            u = juv[0, j]  # (a table instead of an integer division per coefficient)
            v = juv[1, j]
            a = cr[j]
            bb = ci[j]
            cu = Ch[u]
            su = Sh[u]
            gr = GT[v]
            gi = GT[wh + v]
            for t in range(h):
                gr[t] += a * cu[t] - bb * su[t]
                gi[t] += a * su[t] + bb * cu[t]
        np.dot(Gv, Wi, out[b])


@numba.njit(parallel=True, cache=True, nogil=True)
def _fft_project(x, out, mask, want_mask, k, Wf, FH, Ch, Sh, Wi, partner, first_bits, bad, n_tasks, G, exact_square,
                  Gp, CH):
    n_rows = x.shape[0]
    for task in prange(n_tasks):
        lo, hi = _task_rows(task, n_tasks, n_rows)
        _fft_task(x, out, mask, want_mask, k, Wf, FH, Ch, Sh, Wi, partner, first_bits, bad, lo, hi, G, exact_square,
                   Gp, CH)
    return _count_flags(bad)


def fft_project_small(x3: np.ndarray, k: int, mats, partner: np.ndarray, out3: np.ndarray,
                      mask2: np.ndarray | None) -> int:
    """Real-DFT sparse projection of every image of the C-contiguous (B, h, w) float array x3.

    ``mats`` = (Wf, FH, Ch, Sh, Wi), real, x3's dtype (``transforms.dft_mats_2d``):
    Wf (w, 2 wh) the real DFT along w into [re | im] columns; FH (h, h) the cosine rows
    u = 0..h//2 over the sine rows u = 1..(h-1)//2 of the orthonormal DFT along h; Ch, Sh
    (h, h) all its cosine and sine rows; Wi (2 wh, w) the real inverse along w of a half
    spectrum stored as [re | im] rows; wh = w // 2 + 1. ``partner``:
    ``hermitian_partner((h, w))``. out3 (B, h, w); mask2 (B, h * wh) bool or None (the rfftn
    half spectrum's support). Call with BLAS limited to one thread when its products are
    large enough for BLAS to thread. Returns the number of images with non-finite
    coefficients (their outputs are not written).
    """
    B = x3.shape[0]
    w = x3.shape[2]
    bad = np.zeros(B, np.uint8)
    want_mask = mask2 is not None
    mk = mask2 if want_mask else np.empty((1, 1), np.bool_)
    Wf, FH, Ch, Sh, Wi = mats
    m = x3.shape[1] * (w // 2 + 1)
    # first radix digit: 11 bits (1-octave bins of the float64 keys), not 14: the rows are short
    # (at most 64 x 33), the general select runs on few of them, and each task zeroes a
    # 2 << first_bits histogram (256 KB at 14 bits, fresh pages included)
    return int(_fft_project(x3, out3, mk, want_mask, k, Wf, FH, Ch, Sh, Wi, partner, first_bits_for(31), bad, _n_tasks(B),
                        groups_for(m, k), x3.dtype == np.float32, pair_groups_for(m, k),
                        int(config.CPU_SMALL_IMAGE_CHUNK)))
