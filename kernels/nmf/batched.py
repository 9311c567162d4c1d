"""Numba CPU kernels of batched NMF: B independent problems V[b] ~ W[b] H[b], one parallel
task per problem, each running scikit-learn's whole MU loop (Lee & Seung 2001, eqs.
(4)-(5); W then H, the objective every 10 iterations) to its own stop (``batched_fit``).
Plain Frobenius problems run on register-blocked 8-lane vector kernels
(``_solve_frob_vec``), the other losses and masked problems on small BLAS products
(``_solve_one``). The launcher is ``cpu.batched_fit``.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from .._blas import gemm
from .._simd import (vadd, vbcast, vclip_below, vdiv, vfma, vhsum8, vload, vmul, vsplat, vstore,
                     vzero, vzero_to)
from .common import FASTMATH as _FM, FROB, IS, KL
from .dense import _finish_block, _transpose_small
from .terms import den_weight_cpu as _den_weight
from .terms import div_terms_cpu as _terms
from .terms import num_weight_cpu as _num_weight


# --------------------------------------------------------------------------- batched

# The per-problem products go to BLAS (numba's np.dot with ``out``, through scipy's BLAS):
# hand-written loops are several times slower at these sizes, their r = 8 inner loops too
# short to vectorise.

@numba.njit(inline="always")
def _mm_nn(A, B, out):
    np.dot(A, B, out)  # out = A @ B


@numba.njit(inline="always")
def _mm_nt(A, B, out):
    np.dot(A, B.T, out)  # out = A @ B.T


@numba.njit(inline="always")
def _mm_tn(A, B, out):
    np.dot(A.T, B, out)  # out = A.T @ B


@numba.njit(cache=True, nogil=True, fastmath=_FM)
def _error_one(X, M, has_mask, W, H, WH, kind, beta, eps):
    m, n = X.shape
    _mm_nn(W, H, WH)
    a0 = 0.0
    a1 = 0.0
    a2 = 0.0
    a3 = 0.0
    sum_wh = 0.0
    for i in range(m):
        for j in range(n):
            wh = np.float64(WH[i, j])
            t0, t1, t2, full = _terms(np.float64(X[i, j]), wh, kind, beta, eps)
            a0 += t0
            a1 += t1
            a2 += t2
            sum_wh += wh
            if has_mask:
                a3 += np.float64(M[i, j]) * full
    if has_mask:
        res = a3
    elif kind == FROB:
        return math.sqrt(a0)
    elif kind == KL:
        res = a0 + sum_wh - a1
    elif kind == IS:
        res = a0 - m * n - a1
    else:
        res = (a0 - beta * a1 + (beta - 1.0) * a2) / (beta * (beta - 1.0))
    return math.sqrt(2.0 * max(res, 0.0))


@numba.njit(inline="always")
def _rel_decrease(prev, err, err0):
    # (prev - err) / err0 with numpy's rules for a zero err0 (inf or nan, never an error);
    # written out because compiling the solver with error_model="numpy" slows its update
    # loops down several times
    d = prev - err
    if err0 != 0:
        return d / err0
    if d > 0:
        return np.inf
    if d < 0:
        return -np.inf
    return np.nan


@numba.njit(inline="always")
def _weigh(X, M, has_mask, W, H, WH, Bm, kind, beta, eps, clamp_num, clamp_den):
    """WH <- M * X * (W H)^(beta-2) and Bm <- M * (W H)^(beta-1) (no M without a mask): the
    weighted operands of the numerator and denominator products of both updates."""
    m, n = X.shape
    _mm_nn(W, H, WH)
    for i in range(m):
        for j in range(n):
            wh = WH[i, j]
            c = _num_weight(X[i, j], wh, kind, beta, eps, clamp_num)
            b = _den_weight(wh, kind, beta, eps, clamp_den)
            if has_mask:
                c *= M[i, j]
                b *= M[i, j]
            WH[i, j] = c
            Bm[i, j] = b


@numba.njit(cache=True, nogil=True, fastmath=_FM)
def _solve_one(X, M, has_mask, W, H, kind, beta, gamma, max_iter, tol, l1W, l1H, l2W, l2H,
               eps, clamp_num, clamp_den, zW, zH):
    m, n = X.shape
    r = W.shape[1]
    dt = W.dtype
    WH = np.empty((m, n), dt)
    Bm = np.empty((m, n), dt)
    numW = np.empty((m, r), dt)
    denW = np.empty((m, r), dt)
    numH = np.empty((r, n), dt)
    denH = np.empty((r, n), dt)
    G = np.empty((r, r), dt)
    sums = np.empty(r, dt)
    plain_frob = kind == FROB and not has_mask
    plain_kl = kind == KL and not has_mask
    # Frobenius: H^T kept contiguous (refreshed after each H update): X H^T with a
    # contiguous right operand instead of BLAS' transpose flag, and H H^T = (H^T)^T H^T
    HT = np.empty((n, r), dt) if plain_frob else np.empty((0, 0), dt)
    err0 = _error_one(X, M, has_mask, W, H, WH, kind, beta, eps)
    prev = err0
    n_iter = max_iter
    if plain_frob:
        _transpose_small(H, HT)
    for it in range(1, max_iter + 1):
        # ---- W <- W * (num / den)^gamma
        if plain_frob:
            gemm(False, False, m, r, n, 1.0, X, 0, n, HT, 0, r, 0.0, numW, 0, r)
            gemm(True, False, r, r, n, 1.0, HT, 0, r, HT, 0, r, 0.0, G, 0, r)
            gemm(False, False, m, r, r, 1.0, W, 0, r, G, 0, r, 0.0, denW, 0, r)
        else:
            _weigh(X, M, has_mask, W, H, WH, Bm, kind, beta, eps, clamp_num, clamp_den)
            _mm_nt(WH, H, numW)
            if plain_kl:
                for k in range(r):
                    acc = 0.0
                    for j in range(n):
                        acc += H[k, j]
                    sums[k] = acc
                for i in range(m):
                    for k in range(r):
                        denW[i, k] = sums[k]
            else:
                _mm_nt(Bm, H, denW)
        _finish_block(W, numW, denW, l1W, l2W, gamma, zW, eps)
        # ---- H <- H * (num / den)^gamma
        if plain_frob:
            gemm(True, False, r, n, m, 1.0, W, 0, r, X, 0, n, 0.0, numH, 0, n)
            gemm(True, False, r, r, m, 1.0, W, 0, r, W, 0, r, 0.0, G, 0, r)
            gemm(False, False, r, n, r, 1.0, G, 0, r, H, 0, n, 0.0, denH, 0, n)
        else:
            _weigh(X, M, has_mask, W, H, WH, Bm, kind, beta, eps, clamp_num, clamp_den)
            _mm_tn(W, WH, numH)
            if plain_kl:
                for k in range(r):
                    acc = 0.0
                    for i in range(m):
                        acc += W[i, k]
                    sums[k] = acc if acc != 0 else 1.0
                for k in range(r):
                    for j in range(n):
                        denH[k, j] = sums[k]
            else:
                _mm_tn(W, Bm, denH)
        _finish_block(H, numH, denH, l1H, l2H, gamma, zH, eps)
        if plain_frob:
            _transpose_small(H, HT)
        if tol > 0 and it % 10 == 0:
            err = _error_one(X, M, has_mask, W, H, WH, kind, beta, eps)
            if _rel_decrease(prev, err, err0) < tol:
                n_iter = it
                break
            prev = err
    return n_iter, _error_one(X, M, has_mask, W, H, WH, kind, beta, eps)


# --------------------------------------------------------------------------- batched Frobenius, 8-lane vectors
#
# Plain Frobenius problems of the batch (no mask) run on register-blocked products written
# with kernels._simd's 8-lane vectors instead of six small BLAS calls per iteration (BLAS's
# call overhead dominates at these sizes). The factors are kept as W^T (r x m) and H (r x n),
# so that both multiplicative updates have the same shape, F (R x P) <- F * (O D) / (G F)
# (Lee & Seung 2001, eq. 4, in scikit-learn's order of operations):
#   W^T <- W^T * (H V^T) / ((H H^T) W^T),   H <- H * (W^T V) / ((W^T W) H),
# and each output block of 8 rows x 16 columns is 16 vector accumulators fed by two vector
# loads and eight broadcasts per step of the contraction. Buffers are zero-padded: r to a
# multiple of 8 (rows), m and n to multiples of 16 (columns). Padded entries stay exactly 0
# (their numerator and denominator are 0, the denominator becomes eps, 0 * 0 / eps = 0) and
# add nothing to any product, so the padding never changes a result.

_VB = 16  # columns per output block: two vectors


@numba.njit(inline="always")
def _acc8x16(A, a0, sa, B, b0, tb, ts, Q):
    """acc[s][t] = sum_{q < Q} A[a0 + s sa + q] * B[b0 + q tb + t ts : + 8], s < 8, t < 2.

    Flat offsets into C-contiguous arrays: rows s of A are ``sa`` apart (contraction index
    contiguous), rows q of B ``tb`` apart, its two 8-column halves ``ts`` apart."""
    z = vzero(B)
    c0 = z; c1 = z; c2 = z; c3 = z; c4 = z; c5 = z; c6 = z; c7 = z  # noqa: E702
    d0 = z; d1 = z; d2 = z; d3 = z; d4 = z; d5 = z; d6 = z; d7 = z  # noqa: E702
    r0 = a0
    r1 = a0 + sa
    r2 = a0 + 2 * sa
    r3 = a0 + 3 * sa
    r4 = a0 + 4 * sa
    r5 = a0 + 5 * sa
    r6 = a0 + 6 * sa
    r7 = a0 + 7 * sa
    for q in range(Q):
        bo = b0 + q * tb
        x = vload(B, bo)
        y = vload(B, bo + ts)
        a = vbcast(A, r0 + q)
        c0 = vfma(a, x, c0)
        d0 = vfma(a, y, d0)
        a = vbcast(A, r1 + q)
        c1 = vfma(a, x, c1)
        d1 = vfma(a, y, d1)
        a = vbcast(A, r2 + q)
        c2 = vfma(a, x, c2)
        d2 = vfma(a, y, d2)
        a = vbcast(A, r3 + q)
        c3 = vfma(a, x, c3)
        d3 = vfma(a, y, d3)
        a = vbcast(A, r4 + q)
        c4 = vfma(a, x, c4)
        d4 = vfma(a, y, d4)
        a = vbcast(A, r5 + q)
        c5 = vfma(a, x, c5)
        d5 = vfma(a, y, d5)
        a = vbcast(A, r6 + q)
        c6 = vfma(a, x, c6)
        d6 = vfma(a, y, d6)
        a = vbcast(A, r7 + q)
        c7 = vfma(a, x, c7)
        d7 = vfma(a, y, d7)
    return (c0, c1, c2, c3, c4, c5, c6, c7), (d0, d1, d2, d3, d4, d5, d6, d7)


@numba.njit(inline="always")
def _acc8x24(A, a0, sa, B, b0, tb, ts, Q):
    """``_acc8x16`` for 24 columns (three 8-column thirds ``ts`` apart): 24 accumulators, 3
    loads and 8 broadcasts per step, fewer loads and loop instructions per FMA."""
    z = vzero(B)
    c0 = z; c1 = z; c2 = z; c3 = z; c4 = z; c5 = z; c6 = z; c7 = z  # noqa: E702
    d0 = z; d1 = z; d2 = z; d3 = z; d4 = z; d5 = z; d6 = z; d7 = z  # noqa: E702
    e0 = z; e1 = z; e2 = z; e3 = z; e4 = z; e5 = z; e6 = z; e7 = z  # noqa: E702
    r0 = a0
    r1 = a0 + sa
    r2 = a0 + 2 * sa
    r3 = a0 + 3 * sa
    r4 = a0 + 4 * sa
    r5 = a0 + 5 * sa
    r6 = a0 + 6 * sa
    r7 = a0 + 7 * sa
    for q in range(Q):
        bo = b0 + q * tb
        x = vload(B, bo)
        y = vload(B, bo + ts)
        w = vload(B, bo + 2 * ts)
        a = vbcast(A, r0 + q)
        c0 = vfma(a, x, c0)
        d0 = vfma(a, y, d0)
        e0 = vfma(a, w, e0)
        a = vbcast(A, r1 + q)
        c1 = vfma(a, x, c1)
        d1 = vfma(a, y, d1)
        e1 = vfma(a, w, e1)
        a = vbcast(A, r2 + q)
        c2 = vfma(a, x, c2)
        d2 = vfma(a, y, d2)
        e2 = vfma(a, w, e2)
        a = vbcast(A, r3 + q)
        c3 = vfma(a, x, c3)
        d3 = vfma(a, y, d3)
        e3 = vfma(a, w, e3)
        a = vbcast(A, r4 + q)
        c4 = vfma(a, x, c4)
        d4 = vfma(a, y, d4)
        e4 = vfma(a, w, e4)
        a = vbcast(A, r5 + q)
        c5 = vfma(a, x, c5)
        d5 = vfma(a, y, d5)
        e5 = vfma(a, w, e5)
        a = vbcast(A, r6 + q)
        c6 = vfma(a, x, c6)
        d6 = vfma(a, y, d6)
        e6 = vfma(a, w, e6)
        a = vbcast(A, r7 + q)
        c7 = vfma(a, x, c7)
        d7 = vfma(a, y, d7)
        e7 = vfma(a, w, e7)
    return ((c0, c1, c2, c3, c4, c5, c6, c7), (d0, d1, d2, d3, d4, d5, d6, d7),
            (e0, e1, e2, e3, e4, e5, e6, e7))


@numba.njit(inline="always")
def _store8(S, o, v):
    vstore(S, o, v[0])
    vstore(S, o + 8, v[1])
    vstore(S, o + 16, v[2])
    vstore(S, o + 24, v[3])
    vstore(S, o + 32, v[4])
    vstore(S, o + 40, v[5])
    vstore(S, o + 48, v[6])
    vstore(S, o + 56, v[7])


@numba.njit(inline="always")
def _block24(F, D, O, so, G, P, Q, p0, l1, l2, zthr, eps, S):
    # columns p0 .. p0 + 23 of F (R = 8): numerators through S, then denominators, update
    na, nb, nc = _acc8x24(O, 0, so, D, p0 * Q, 8, 8 * Q, Q)
    _store8(S, 0, na)
    _store8(S, 64, nb)
    _store8(S, 128, nc)
    da, db, dc = _acc8x24(G, 0, 8, F, p0, P, 8, 8)
    for t in range(3):
        dd = da if t == 0 else (db if t == 1 else dc)
        o = p0 + 8 * t
        so_ = 64 * t
        vstore(F, o, _mu_lanes(vload(F, o), vload(S, so_), dd[0], l1, l2, zthr, eps))
        vstore(F, o + P, _mu_lanes(vload(F, o + P), vload(S, so_ + 8), dd[1], l1, l2, zthr, eps))
        vstore(F, o + 2 * P, _mu_lanes(vload(F, o + 2 * P), vload(S, so_ + 16), dd[2], l1, l2, zthr, eps))
        vstore(F, o + 3 * P, _mu_lanes(vload(F, o + 3 * P), vload(S, so_ + 24), dd[3], l1, l2, zthr, eps))
        vstore(F, o + 4 * P, _mu_lanes(vload(F, o + 4 * P), vload(S, so_ + 32), dd[4], l1, l2, zthr, eps))
        vstore(F, o + 5 * P, _mu_lanes(vload(F, o + 5 * P), vload(S, so_ + 40), dd[5], l1, l2, zthr, eps))
        vstore(F, o + 6 * P, _mu_lanes(vload(F, o + 6 * P), vload(S, so_ + 48), dd[6], l1, l2, zthr, eps))
        vstore(F, o + 7 * P, _mu_lanes(vload(F, o + 7 * P), vload(S, so_ + 56), dd[7], l1, l2, zthr, eps))


@numba.njit(inline="always")
def _mu_lanes(f, num, den, l1, l2, zthr, eps):
    # ``_finish1`` on 8 lanes: separate multiply and add for the l2 term, as numpy does
    if l1 > 0:
        den = vadd(den, vsplat(l1, den))
    if l2 > 0:
        den = vadd(den, vmul(vsplat(l2, den), f))
    den = vzero_to(den, eps)
    return vclip_below(vmul(f, vdiv(num, den)), zthr)


@numba.njit(inline="always")
def _mu_row(F, fo, dst, do, S, s, da, db, l1, l2, zthr, eps):
    # row s of a block: F[fo : fo + 16] updated with numerators S[8 s : ...], S[64 + 8 s : ...]
    dst_lo = _mu_lanes(vload(F, fo), vload(S, 8 * s), da, l1, l2, zthr, eps)
    dst_hi = _mu_lanes(vload(F, fo + 8), vload(S, 64 + 8 * s), db, l1, l2, zthr, eps)
    vstore(dst, do, dst_lo)
    vstore(dst, do + 8, dst_hi)


@numba.njit(inline="always")
def _vec_half(F, D, O, so, G, P, Q, R, l1, l2, zthr, eps, S, T):
    """F (R x P) <- F * (O D) / (G F): O (R x Q real columns, rows ``so`` apart), D (Q x P)
    packed in panels of 8 columns (Q x 8 each, contiguous), G = O O^T (R x R). Row blocks
    of 8; column blocks of 24 (pairs, R = 8 only) then 16; with R > 8 the new values of a
    column block go through T (R x 16) since the denominators of later row blocks read the
    old F."""
    direct = R == 8
    p24 = 48 * (P // 48) if direct else 0  # pairs of 24-column blocks leave a multiple of 16
    for p0 in range(0, p24, 24):
        _block24(F, D, O, so, G, P, Q, p0, l1, l2, zthr, eps, S)
    for p0 in range(p24, P, _VB):
        for k0 in range(0, R, 8):
            na, nb = _acc8x16(O, k0 * so, so, D, p0 * Q, 8, 8 * Q, Q)
            _store8(S, 0, na)
            _store8(S, 64, nb)
            da, db = _acc8x16(G, k0 * R, R, F, p0, P, 8, R)
            fo = k0 * P + p0
            if direct:
                dst = F
                do = fo
                ds = P
            else:
                dst = T
                do = k0 * _VB
                ds = _VB
            _mu_row(F, fo, dst, do, S, 0, da[0], db[0], l1, l2, zthr, eps)
            _mu_row(F, fo + P, dst, do + ds, S, 1, da[1], db[1], l1, l2, zthr, eps)
            _mu_row(F, fo + 2 * P, dst, do + 2 * ds, S, 2, da[2], db[2], l1, l2, zthr, eps)
            _mu_row(F, fo + 3 * P, dst, do + 3 * ds, S, 3, da[3], db[3], l1, l2, zthr, eps)
            _mu_row(F, fo + 4 * P, dst, do + 4 * ds, S, 4, da[4], db[4], l1, l2, zthr, eps)
            _mu_row(F, fo + 5 * P, dst, do + 5 * ds, S, 5, da[5], db[5], l1, l2, zthr, eps)
            _mu_row(F, fo + 6 * P, dst, do + 6 * ds, S, 6, da[6], db[6], l1, l2, zthr, eps)
            _mu_row(F, fo + 7 * P, dst, do + 7 * ds, S, 7, da[7], db[7], l1, l2, zthr, eps)
        if not direct:
            for k in range(R):
                vstore(F, k * P + p0, vload(T, k * _VB))
                vstore(F, k * P + p0 + 8, vload(T, k * _VB + 8))


@numba.njit(inline="always")
def _vec_gram(F, P, R, G):
    """G = F F^T for F (R x P), R and P multiples of 8: rows k and k + 1 of G against 8 rows
    l at a time (16 vector accumulators, each row of the 8 loaded once for both), reduced by
    transposing horizontal sums."""
    if R == 8:
        _vec_gram8(F, P, G)
        return
    for k in range(0, R, 2):
        for l0 in range(0, R, 8):
            z = vzero(F)
            c0 = z; c1 = z; c2 = z; c3 = z; c4 = z; c5 = z; c6 = z; c7 = z  # noqa: E702
            d0 = z; d1 = z; d2 = z; d3 = z; d4 = z; d5 = z; d6 = z; d7 = z  # noqa: E702
            for p0 in range(0, P, 8):
                f = vload(F, k * P + p0)
                g = vload(F, (k + 1) * P + p0)
                o = l0 * P + p0
                x = vload(F, o)
                c0 = vfma(f, x, c0)
                d0 = vfma(g, x, d0)
                x = vload(F, o + P)
                c1 = vfma(f, x, c1)
                d1 = vfma(g, x, d1)
                x = vload(F, o + 2 * P)
                c2 = vfma(f, x, c2)
                d2 = vfma(g, x, d2)
                x = vload(F, o + 3 * P)
                c3 = vfma(f, x, c3)
                d3 = vfma(g, x, d3)
                x = vload(F, o + 4 * P)
                c4 = vfma(f, x, c4)
                d4 = vfma(g, x, d4)
                x = vload(F, o + 5 * P)
                c5 = vfma(f, x, c5)
                d5 = vfma(g, x, d5)
                x = vload(F, o + 6 * P)
                c6 = vfma(f, x, c6)
                d6 = vfma(g, x, d6)
                x = vload(F, o + 7 * P)
                c7 = vfma(f, x, c7)
                d7 = vfma(g, x, d7)
            vstore(G, k * R + l0, vhsum8(c0, c1, c2, c3, c4, c5, c6, c7))
            vstore(G, (k + 1) * R + l0, vhsum8(d0, d1, d2, d3, d4, d5, d6, d7))


@numba.njit(inline="always")
def _gram8_rows(F, P, k, lo, G):
    """Rows k and k + 1 of G = F F^T (R = 8) against the rows l >= lo of F (inlined with
    literal k and lo, so the skipped terms vanish at compile time; their lanes stay 0)."""
    z = vzero(F)
    c0 = z; c1 = z; c2 = z; c3 = z; c4 = z; c5 = z; c6 = z; c7 = z  # noqa: E702
    d0 = z; d1 = z; d2 = z; d3 = z; d4 = z; d5 = z; d6 = z; d7 = z  # noqa: E702
    for p0 in range(0, P, 8):
        f = vload(F, k * P + p0)
        g = vload(F, (k + 1) * P + p0)
        if lo <= 0:
            x = vload(F, p0)
            c0 = vfma(f, x, c0)
            d0 = vfma(g, x, d0)
        if lo <= 1:
            x = vload(F, P + p0)
            c1 = vfma(f, x, c1)
            d1 = vfma(g, x, d1)
        if lo <= 2:
            x = vload(F, 2 * P + p0)
            c2 = vfma(f, x, c2)
            d2 = vfma(g, x, d2)
        if lo <= 3:
            x = vload(F, 3 * P + p0)
            c3 = vfma(f, x, c3)
            d3 = vfma(g, x, d3)
        if lo <= 4:
            x = vload(F, 4 * P + p0)
            c4 = vfma(f, x, c4)
            d4 = vfma(g, x, d4)
        if lo <= 5:
            x = vload(F, 5 * P + p0)
            c5 = vfma(f, x, c5)
            d5 = vfma(g, x, d5)
        x = vload(F, 6 * P + p0)
        c6 = vfma(f, x, c6)
        d6 = vfma(g, x, d6)
        x = vload(F, 7 * P + p0)
        c7 = vfma(f, x, c7)
        d7 = vfma(g, x, d7)
    vstore(G, k * 8, vhsum8(c0, c1, c2, c3, c4, c5, c6, c7))
    vstore(G, (k + 1) * 8, vhsum8(d0, d1, d2, d3, d4, d5, d6, d7))


@numba.njit(inline="always")
def _vec_gram8(F, P, G):
    """``_vec_gram`` for R = 8 using symmetry: row pairs (k, k + 1) only against rows
    l >= k (40 of 64 products per column block), the rest mirrored."""
    _gram8_rows(F, P, 0, 0, G)
    _gram8_rows(F, P, 2, 2, G)
    _gram8_rows(F, P, 4, 4, G)
    _gram8_rows(F, P, 6, 6, G)
    for k in range(2, 8):
        for l in range(k - k % 2):
            G[k * 8 + l] = G[l * 8 + k]


@numba.njit(inline="always")
def _vec_unpack(WT, HP, W, H, mp, npad):
    m, r = W.shape
    n = H.shape[1]
    for i in range(m):
        for k in range(r):
            W[i, k] = WT[k * mp + i]
    for k in range(r):
        for j in range(n):
            H[k, j] = HP[k * npad + j]


@numba.njit(inline="always")
def _zeros64(n, dt):
    # zeros whose data starts on a 64-byte boundary (Numba's own allocations are 32-byte
    # aligned, and a vector load across two cache lines costs two)
    a = np.zeros(n + 16, dt)  # 16 elements: 64 bytes even for float32
    off = ((64 - a.ctypes.data % 64) % 64) // a.itemsize
    return a[off:off + n]


@numba.njit(cache=True, nogil=True)
def _solve_frob_vec(X, M, W, H, max_iter, tol, l1W, l1H, l2W, l2H, eps, zW, zH):
    """``_solve_one`` for plain Frobenius on the 8-lane kernels (same iterates up to the
    rounding of the products' summation order, same stopping rule)."""
    m, n = X.shape
    r = W.shape[1]
    dt = X.dtype
    R = (r + 7) // 8 * 8
    mp = (m + _VB - 1) // _VB * _VB
    npad = (n + _VB - 1) // _VB * _VB
    # V and V^T in panels of 8 columns: panel c holds rows 0..m-1 (n-1) of columns
    # 8c..8c+7, contiguous streams for the output column blocks of the products
    XP = _zeros64(m * npad, dt)
    XTP = _zeros64(n * mp, dt)
    WT = _zeros64(R * mp, dt)
    HP = _zeros64(R * npad, dt)
    for i in range(m):
        for j in range(n):
            XP[(j // 8) * m * 8 + i * 8 + j % 8] = X[i, j]
            XTP[(i // 8) * n * 8 + j * 8 + i % 8] = X[i, j]
    for i in range(m):
        for k in range(r):
            WT[k * mp + i] = W[i, k]
    for k in range(r):
        for j in range(n):
            HP[k * npad + j] = H[k, j]
    GW = _zeros64(R * R, dt)
    GH = _zeros64(R * R, dt)
    S = _zeros64(3 * 64, dt)  # numerators of one block
    T = _zeros64(R * _VB, dt)
    WH = np.empty((m, n), dt)
    err0 = _error_one(X, M, False, W, H, WH, FROB, 2.0, eps)
    prev = err0
    n_iter = max_iter
    _vec_gram(HP, npad, R, GH)
    for it in range(1, max_iter + 1):
        _vec_half(WT, XTP, HP, npad, GH, mp, n, R, l1W, l2W, zW, eps, S, T)
        _vec_gram(WT, mp, R, GW)
        _vec_half(HP, XP, WT, mp, GW, npad, m, R, l1H, l2H, zH, eps, S, T)
        _vec_gram(HP, npad, R, GH)
        if tol > 0 and it % 10 == 0:
            _vec_unpack(WT, HP, W, H, mp, npad)
            err = _error_one(X, M, False, W, H, WH, FROB, 2.0, eps)
            if _rel_decrease(prev, err, err0) < tol:
                n_iter = it
                break
            prev = err
    _vec_unpack(WT, HP, W, H, mp, npad)
    return n_iter, _error_one(X, M, False, W, H, WH, FROB, 2.0, eps)


@numba.njit(parallel=True, cache=True, nogil=True)
def batched_fit(V, M, has_mask, W, H, kind, beta, gamma, max_iter, tol, l1W, l1H, l2W, l2H,
                eps, clamp_num, clamp_den, zW, zH, n_iter, err):
    """B independent problems V[b] ~ W[b] H[b], one parallel task per problem, each running
    scikit-learn's MU loop (W then H, error test every 10 iterations) to its own stop.
    Plain Frobenius problems (no mask) run on the 8-lane kernels (``_solve_frob_vec``), the
    other losses on small BLAS products (``_solve_one``)."""
    nb = V.shape[0]
    vec = kind == FROB and not has_mask
    for b in prange(nb):
        Mb = M[b] if has_mask else M[0]
        if vec:
            it, e = _solve_frob_vec(V[b], Mb, W[b], H[b], max_iter, tol, l1W, l1H, l2W, l2H,
                                    eps, zW, zH)
        else:
            it, e = _solve_one(V[b], Mb, has_mask, W[b], H[b], kind, beta, gamma, max_iter, tol,
                               l1W, l1H, l2W, l2H, eps, clamp_num, clamp_den, zW, zH)
        n_iter[b] = it
        err[b] = e
