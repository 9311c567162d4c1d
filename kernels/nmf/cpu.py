"""Numba CPU kernels for NMF by multiplicative updates (Lee & Seung 2001; Fevotte & Idier 2011).

Every update of a factor F (W, or H; for sparse V the H side works on H^T) is one fused
parallel pass over the rows of F (columns of H) that

1. forms the denominator of the multiplicative rule (from a Gram matrix, a vector of sums,
   a precomputed matrix, or, for masked sparse V, accumulated at the observed entries),
2. adds the L1 / L2 penalties, replaces zero denominators by ``eps``,
3. raises the ratio to the Fevotte-Idier exponent gamma(beta) and multiplies F in place,
4. sets entries below float64's eps to zero where scikit-learn does (beta < 1 for W,
   beta <= 1 for H),

without any m x n or r x n temporary. GEMMs (W^T V, V H^T, W H) go through numpy's BLAS.

Dense Frobenius without a mask runs whole iterations in one parallel call
(``frob_iterate``): every product a one-thread BLAS call on a task's block of V
(``kernels._blas.gemm``), the r x r Gram matrices handed from one update to the other, the
objective from the same products. In float32 it reads W^T V from a transposed copy of V
made once per fit (one m x n array per fit, none per iteration; see
``config.DENSE_VT_MAX_BYTES``), because one-thread OpenBLAS sgemm is 1.7x slower with V as
the transposed operand.

The sparse kernels walk V's non-zeros row by row (CSR, for W) and column by column (a CSC
copy made once per fit, for H). Each task owns whole rows of the factor it updates, so the
accumulation ``num_i = sum_j c(V_ij, (WH)_ij) H_:j`` needs no atomics; (WH)_ij is an r-long
dot product evaluated only at the non-zeros and never stored (no nnz-sized temporaries).
Accumulators are float64 (as scikit-learn's ``_special_sparse_dot``), also for float32 V.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from .._blas import gemm
from .._simd import (vadd, vbcast, vclip_below, vdiv, vfma, vhsum8, vload, vmul, vsplat, vstore,
                     vsum, vzero, vzero_to)
from . import config

# numerator weight kinds (beta-divergence family)
FROB, KL, IS, BETA = 0, 1, 2, 3
# denominator sources of the fused update
DEN_GRAM, DEN_VEC, DEN_MAT, DEN_ACC = 0, 1, 2, 3

# reassociation lets LLVM vectorise the r-long dot products; no 'nnan'/'arcp': NaN checks
# and the exact division of the update are kept.
_FM = {"reassoc", "contract", "nsz"}


@numba.njit(inline="always")
def _num_weight(x, wh, kind, beta, eps, clamp_num):
    """x * WH^(beta - 2), WH clamped below at eps when beta < 2 (scikit-learn's rule)."""
    if kind == FROB:
        return x
    whc = wh
    if clamp_num and whc < eps:
        whc = eps
    if kind == KL:
        return x / whc
    if kind == IS:
        inv = 1.0 / whc
        return inv * inv * x
    return whc ** (beta - 2.0) * x


@numba.njit(inline="always")
def _den_weight(wh, kind, beta, eps, clamp_den):
    """WH^(beta - 1), WH clamped below at eps when beta < 1."""
    if kind == FROB:
        return wh
    if kind == KL:
        return 1.0
    whd = wh
    if clamp_den and whd < eps:
        whd = eps
    if kind == IS:
        return 1.0 / whd
    return whd ** (beta - 1.0)


@numba.njit(inline="always")
def _finish(f, num, den, l1, l2, gamma, zthr, eps):
    d = den
    if l1 > 0:
        d += l1
    if l2 > 0:
        d += l2 * f
    if d == 0:
        d = eps
    q = num / d
    if gamma != 1.0:
        q = q ** gamma
    v = f * q
    if v < zthr:
        v = 0.0
    return v


# --------------------------------------------------------------------------- dense updates

@numba.njit(cache=True, nogil=True)
def _rows_task(F, num, G, s, D, den_mode, l1, l2, gamma, zthr, eps, lo, hi):
    # one task's rows; a plain function, not inlined into the parallel loop: compiled
    # outside the parfor, its loops vectorise (measured 3.4x on the r = 32 Gram pass)
    r = F.shape[1]
    den = np.empty(r, F.dtype)
    for i in range(lo, hi):
        Fi = F[i]
        Ni = num[i]
        if den_mode == DEN_GRAM:
            for k in range(r):
                den[k] = 0
            for l in range(r):
                f = Fi[l]
                Gl = G[l]
                for k in range(r):
                    den[k] += f * Gl[k]
        elif den_mode == DEN_VEC:
            for k in range(r):
                den[k] = s[k]
        else:
            Di = D[i]
            for k in range(r):
                den[k] = Di[k]
        for k in range(r):
            Fi[k] = _finish(Fi[k], Ni[k], den[k], l1, l2, gamma, zthr, eps)


@numba.njit(parallel=True, cache=True, nogil=True)
def update_rows(F, num, G, s, D, den_mode, l1, l2, gamma, zthr, eps, chunk):
    """F (p, r) *= (num / den)^gamma row by row; den = F G, s, or D (see module doc).

    Inner loops run over whole-row slices from index 0 (numba then drops its negative-index
    wraparound and LLVM vectorises)."""
    p = F.shape[0]
    n_tasks = (p + chunk - 1) // chunk
    for t in prange(n_tasks):
        _rows_task(F, num, G, s, D, den_mode, l1, l2, gamma, zthr, eps, t * chunk, min(p, (t + 1) * chunk))
    return F


@numba.njit(cache=True, nogil=True)
def _cols_task(F, num, G, s, D, den_mode, l1, l2, gamma, zthr, eps, j0, j1):
    r = F.shape[0]
    w = j1 - j0
    den = np.zeros((r, w), F.dtype)
    if den_mode == DEN_GRAM:
        for k in range(r):
            dk = den[k]
            Gk = G[k]
            for l in range(r):
                g = Gk[l]
                Fl = F[l, j0:j1]
                for jj in range(w):
                    dk[jj] += g * Fl[jj]
    elif den_mode == DEN_VEC:
        for k in range(r):
            dk = den[k]
            for jj in range(w):
                dk[jj] = s[k]
    else:
        for k in range(r):
            dk = den[k]
            Dk = D[k, j0:j1]
            for jj in range(w):
                dk[jj] = Dk[jj]
    for k in range(r):
        dk = den[k]
        Fk = F[k, j0:j1]
        Nk = num[k, j0:j1]
        for jj in range(w):
            Fk[jj] = _finish(Fk[jj], Nk[jj], dk[jj], l1, l2, gamma, zthr, eps)


@numba.njit(parallel=True, cache=True, nogil=True)
def update_cols(F, num, G, s, D, den_mode, l1, l2, gamma, zthr, eps, block):
    """F (r, n) *= (num / den)^gamma by blocks of columns; den = G F, s[:, None], or D."""
    n = F.shape[1]
    n_tasks = (n + block - 1) // block
    for t in prange(n_tasks):
        _cols_task(F, num, G, s, D, den_mode, l1, l2, gamma, zthr, eps, t * block, min(n, (t + 1) * block))
    return F


@numba.njit(parallel=True, cache=True, nogil=True)
def dense_weights(X, M, A, B, has_mask, want_b, kind, beta, eps, clamp_num, clamp_den):
    """In place on A = WH: A <- M * X * WH^(beta-2); B <- M * WH^(beta-1) when ``want_b``."""
    m, n = A.shape
    for i in prange(m):
        for j in range(n):
            wh = A[i, j]
            c = _num_weight(X[i, j], wh, kind, beta, eps, clamp_num)
            if has_mask:
                w = M[i, j]
                if want_b:
                    B[i, j] = w * _den_weight(wh, kind, beta, eps, clamp_den)
                A[i, j] = w * c
            else:
                if want_b:
                    B[i, j] = _den_weight(wh, kind, beta, eps, clamp_den)
                A[i, j] = c
    return A


@numba.njit(parallel=True, cache=True, nogil=True)
def pow_inplace(A, p, clamp, eps):
    """A <- max(A, eps)^p (clamp) or A^p, in place (sparse general-beta denominators)."""
    m, n = A.shape
    for i in prange(m):
        for j in range(n):
            a = A[i, j]
            if clamp and a < eps:
                a = eps
            A[i, j] = a ** p
    return A


# --------------------------------------------------------------------------- dense, BLAS per task
# Plain Frobenius and plain KL on dense V: one parallel task per Numba thread owns a range of
# W's rows and calls single-threaded BLAS (numba's np.dot -> scipy's BLAS) on it, then the fused
# elementwise pass on the same rows while they are in cache. The caller limits BLAS to one
# thread for the fit (``blas_one_thread``): one thread pool instead of two that busy-wait
# against each other on a small machine (measured here, 2 cores: the KL weighting pass took
# 3.0 ms alone and 7.1 ms right after a 2-thread OpenBLAS GEMM; W H by 2 tasks of 1-thread
# BLAS 5.4 ms against 9.2 ms for one 2-thread call).

@numba.njit(inline="always")
def _finish1(f, num, den, l1, l2, zthr, eps):
    """``_finish`` for gamma = 1 (Frobenius, KL) written with selects only."""
    d = den + l1 if l1 > 0 else den
    d = d + l2 * f if l2 > 0 else d
    d = eps if d == 0 else d
    v = f * (num / d)
    return 0.0 if v < zthr else v


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _finish_block1(F, num, den, l1, l2, zthr, eps):
    # error_model="numpy": no zero-divisor branch (den is never 0 here), the loop vectorises
    # (measured 1.8 -> 1.0 ns per entry); _finish itself must not be compiled this way: its
    # pow branch then gets evaluated for every entry (22 ns)
    p, r = F.shape
    for i in range(p):
        Fi = F[i]
        Ni = num[i]
        Di = den[i]
        for k in range(r):
            Fi[k] = _finish1(Fi[k], Ni[k], Di[k], l1, l2, zthr, eps)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _finish_vec1(F, num, s, l1, l2, zthr, eps, per_row):
    # den = s[k] for entry (i, k) (per_row False: W's rows), or s[i] (per_row True: H's rows)
    p, r = F.shape
    for i in range(p):
        Fi = F[i]
        Ni = num[i]
        if per_row:
            si = s[i]
            for k in range(r):
                Fi[k] = _finish1(Fi[k], Ni[k], si, l1, l2, zthr, eps)
        else:
            for k in range(r):
                Fi[k] = _finish1(Fi[k], Ni[k], s[k], l1, l2, zthr, eps)


@numba.njit(cache=True, nogil=True)
def _finish_block(F, num, den, l1, l2, gamma, zthr, eps):
    """F *= (num / den')^gamma elementwise over 2-D blocks of equal shape (den' = den + l1 +
    l2 F, 0 -> eps): scikit-learn's order of operations."""
    if gamma == 1.0:
        _finish_block1(F, num, den, l1, l2, zthr, eps)
        return
    p, r = F.shape
    for i in range(p):
        Fi = F[i]
        Ni = num[i]
        Di = den[i]
        for k in range(r):
            Fi[k] = _finish(Fi[k], Ni[k], Di[k], l1, l2, gamma, zthr, eps)


@numba.njit(cache=True, nogil=True)
def _finish_vec(F, num, s, l1, l2, gamma, zthr, eps):
    """As ``_finish_block`` with the denominator s[k] for every row (KL's sums)."""
    if gamma == 1.0:
        _finish_vec1(F, num, s, l1, l2, zthr, eps, False)
        return
    p, r = F.shape
    for i in range(p):
        Fi = F[i]
        Ni = num[i]
        for k in range(r):
            Fi[k] = _finish(Fi[k], Ni[k], s[k], l1, l2, gamma, zthr, eps)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _kl_weights(X, A, eps):
    """A <- X / max(A, eps) in place (scikit-learn clamps WH at eps, then divides).

    ``error_model="numpy"``: no zero-divisor check (the divisor is >= eps), so the loop
    vectorises (measured 1.3 -> 0.8 ns per entry; 15 -> 2.9 ns for ``_sum_xlog``)."""
    p, n = A.shape
    for i in range(p):
        Ai = A[i]
        Xi = X[i]
        for j in range(n):
            a = Ai[j]
            if a < eps:
                a = eps
            Ai[j] = Xi[j] / a


@numba.njit(inline="always")
def _span(t, T, m):
    return t * m // T, (t + 1) * m // T


@numba.njit(cache=True, nogil=True)
def _frob_W_task(X, W, Ht, G, numW, DW, l1, l2, gamma, zthr, eps):
    # task bodies are plain functions: np.dot inside a parfor body makes Numba drop the cache
    np.dot(X, Ht, numW)
    np.dot(W, G, DW)
    _finish_block(W, numW, DW, l1, l2, gamma, zthr, eps)


@numba.njit(parallel=True, cache=True, nogil=True)
def frob_update_W(X, W, H, G, numW, DW, l1, l2, gamma, zthr, eps, T):
    """W <- W * (X H^T) / (W G) with G = H H^T (Lee & Seung eq. 4), one row range per task
    (T tasks: the Numba thread count, passed in; calling get_num_threads here defeats the cache)."""
    m = X.shape[0]
    for t in prange(T):
        lo, hi = _span(t, T, m)
        if hi > lo:
            _frob_W_task(X[lo:hi], W[lo:hi], H.T, G, numW[lo:hi], DW[lo:hi], l1, l2, gamma, zthr, eps)
    return W


@numba.njit(cache=True, nogil=True)
def _frob_H_task(X, W, part, gpart, trans):
    if trans:
        np.dot(X.T, W, part)
    else:
        np.dot(W.T, X, part)
    np.dot(W.T, W, gpart)


@numba.njit(parallel=True, cache=True, nogil=True)
def frob_parts_H(X, W, parts, gparts, trans):
    """parts[t] = W_t^T X_t (``trans``: its transpose X_t^T W_t, parts (T, n, r)),
    gparts[t] = W_t^T W_t over each task's rows (summed in ``finish_H``). One-thread
    OpenBLAS measured here: float32 X_t^T W_t 2.8 ms vs W_t^T X_t 3.4 ms (1000 x 1500,
    r = 32), float64 the other way round (5.6 vs 3.0 ms)."""
    m = X.shape[0]
    T = parts.shape[0]
    for t in prange(T):
        lo, hi = _span(t, T, m)
        if hi > lo:
            _frob_H_task(X[lo:hi], W[lo:hi], parts[t], gparts[t], trans)
        else:
            parts[t][:] = 0
            gparts[t][:] = 0
    return parts


@numba.njit(parallel=True, cache=True, nogil=True)
def all_finite_nonneg(x, T):
    """True when every entry of the 1-D float array x is finite and >= 0, in one parallel
    pass (numpy's ``x.min() >= 0 and x.max() < inf`` reads x twice on one thread: 1.7 ms
    for 2000 x 1500 float32 here)."""
    n = x.shape[0]
    part = np.zeros((T, 2), np.float64)
    for t in prange(T):
        lo, hi = _span(t, T, n)
        _neg_sum(x[lo:hi], part[t])
    return part[:, 0].sum() == 0 and np.isfinite(part[:, 1].sum())


@numba.njit(cache=True, nogil=True, fastmath={"reassoc"}, error_model="numpy")
def _neg_sum(x, out):
    # float64 sums of the negative entries (0 only when there are none) and of all entries
    # (NaN or inf anywhere make it non-finite; a finite sum that overflows only sends the
    # caller to its exact check). Selects and sums vectorise; a select-based minimum does
    # not (LLVM needs 'nnan' for it): 1.2 vs 4.1 ms per 3M float32 on one thread.
    neg = 0.0
    acc = 0.0
    for i in range(x.shape[0]):
        v = np.float64(x[i])
        neg += v if v < 0 else 0.0
        acc += v
    out[0] = neg
    out[1] = acc


# --------------------------------------------------------------------------- dense Frobenius, fused
# ``frob_iterate`` runs whole Frobenius iterations in one Numba call: per iteration one
# parallel pass over row blocks of V (the W update) and one over column blocks (the H
# update), every product a single-threaded BLAS call on the task's block (``_blas.gemm``:
# sub-blocks with a leading dimension, no copies). The r x r Gram matrices each update needs
# are produced by the other update while its block is in cache: the W pass leaves the
# tasks' W_t^T W_t (summed by every H task: W^T W), the H pass their H_c H_c^T (H H^T for
# the next W pass), so no pass re-reads a whole factor and no Python runs between updates.
# H is kept transposed (H^T, n x r) for the V H^T product: OpenBLAS' one-thread sgemm
# multiplies a row-major V by an n x r right operand 10% faster than by H with the
# transpose flag (measured here, 1000 x 1500 x 32 float32: 1.32 vs 1.48 ms).
#
# ``VT`` (float32): W^T V as (V^T W)^T from a transposed copy of V made once per fit. Every
# product of this kind with V as the transposed operand ran at 40 GFLOP/s on one core of
# this machine's OpenBLAS (single thread, 1000 x 1500 x 32: V_t^T W_t 2.37 ms, W_t^T V_t
# 2.85 ms, column blocks alike), V^T W from a contiguous V^T at 65-73 GFLOP/s, like V H^T.
# float64 is the other way round (W^T V 2.95 ms, V^T W 4.8 ms): no copy, column blocks of
# V. With the copy the H pass works on H^T's rows (the numerator V^T W, the denominator
# H^T (W^T W), the update) and H is written back once at the end.

@numba.njit(inline="always")
def _cspan(t, T, n):
    """Task t's column range of T tasks over n columns, inner ends on multiples of 16."""
    j0 = 0 if t == 0 else (t * n // T) // 16 * 16
    j1 = n if t + 1 == T else ((t + 1) * n // T) // 16 * 16
    return j0, max(j0, j1)


@numba.njit(inline="always")
def _gram_sum(P, G):
    """G = sum_t P[t] (the tasks' partial Gram matrices)."""
    G[:] = P[0]
    for t in range(1, P.shape[0]):
        G += P[t]


@numba.njit(cache=True, nogil=True)
def _fw_task(X, W, HT, gH, numW, DW, gW_t, lo, hi, l1, l2, gamma, zthr, eps, g0_t, want0):
    """Rows lo:hi: W <- W * (V H^T) / (W (H H^T)), then gW_t = W_t^T W_t (new W).

    ``want0``: also the task's terms of ||V - W H||^2 before the update (see
    ``frob_iterate``): returns sum(W_t * (V_t H^T)) and leaves W_t^T W_t in g0_t."""
    n = X.shape[1]
    r = W.shape[1]
    rows = hi - lo
    if rows <= 0:
        gW_t[:] = 0
        g0_t[:] = 0
        return 0.0
    G = np.empty((r, r), W.dtype)
    _gram_sum(gH, G)
    gemm(False, False, rows, r, n, 1.0, X, lo * n, n, HT, 0, r, 0.0, numW, lo * r, r)
    gemm(False, False, rows, r, r, 1.0, W, lo * r, r, G, 0, r, 0.0, DW, lo * r, r)
    c = 0.0
    if want0:
        gemm(True, False, r, r, rows, 1.0, W, lo * r, r, W, lo * r, r, 0.0, g0_t, 0, r)
        c = _dot64(W[lo:hi], numW[lo:hi])
    _finish_block(W[lo:hi], numW[lo:hi], DW[lo:hi], l1, l2, gamma, zthr, eps)
    gemm(True, False, r, r, rows, 1.0, W, lo * r, r, W, lo * r, r, 0.0, gW_t, 0, r)
    return c


@numba.njit(cache=True, nogil=True, fastmath=_FM)
def _dot64(A, B):
    """sum(A * B) over 2-D blocks of equal shape, accumulated in float64."""
    acc = 0.0
    p, q = A.shape
    for i in range(p):
        Ai = A[i]
        Bi = B[i]
        for k in range(q):
            acc += np.float64(Ai[k]) * np.float64(Bi[k])
    return acc


@numba.njit(cache=True, nogil=True)
def _gram_dot(PA, PB):
    """sum((sum_t PA[t]) * (sum_t PB[t])) in float64: tr((W^T W)(H H^T)) from the parts."""
    r = PA.shape[1]
    acc = 0.0
    for k in range(r):
        for l in range(r):
            a = 0.0
            b = 0.0
            for t in range(PA.shape[0]):
                a += np.float64(PA[t, k, l])
            for t in range(PB.shape[0]):
                b += np.float64(PB[t, k, l])
            acc += a * b
    return acc


@numba.njit(cache=True, nogil=True)
def _fh_task(X, W, H, HT, gW, numH, DH, gH_t, j0, j1, l1, l2, gamma, zthr, eps):
    """Columns j0:j1 from V: H <- H * (W^T V) / ((W^T W) H); then H^T's rows j0:j1 and
    gH_t = H_c H_c^T."""
    m, n = X.shape
    r = W.shape[1]
    nc = j1 - j0
    if nc <= 0:
        gH_t[:] = 0
        return
    G = np.empty((r, r), W.dtype)
    _gram_sum(gW, G)
    gemm(True, False, r, nc, m, 1.0, W, 0, r, X, j0, n, 0.0, numH, j0, n)
    gemm(False, False, r, nc, r, 1.0, G, 0, r, H, j0, n, 0.0, DH, j0, n)
    _finish_block(H[:, j0:j1], numH[:, j0:j1], DH[:, j0:j1], l1, l2, gamma, zthr, eps)
    for j in range(j0, j1):
        for k in range(r):
            HT[j, k] = H[k, j]
    gemm(True, False, r, r, nc, 1.0, HT, j0 * r, r, HT, j0 * r, r, 0.0, gH_t, 0, r)


@numba.njit(cache=True, nogil=True)
def _fh_task_T(XT, W, HT, gW, numHT, DHT, gH_t, j0, j1, l1, l2, gamma, zthr, eps):
    """Rows j0:j1 of H^T from V^T: H^T <- H^T * (V^T W) / (H^T (W^T W)); gH_t = H_c H_c^T."""
    m = XT.shape[1]
    r = W.shape[1]
    nc = j1 - j0
    if nc <= 0:
        gH_t[:] = 0
        return
    G = np.empty((r, r), W.dtype)
    _gram_sum(gW, G)
    gemm(False, False, nc, r, m, 1.0, XT, j0 * m, m, W, 0, r, 0.0, numHT, j0 * r, r)
    # (W^T W) H transposed is H^T (W^T W)^T; W^T W is symmetric
    gemm(False, True, nc, r, r, 1.0, HT, j0 * r, r, G, 0, r, 0.0, DHT, j0 * r, r)
    _finish_block(HT[j0:j1], numHT[j0:j1], DHT[j0:j1], l1, l2, gamma, zthr, eps)
    gemm(True, False, r, r, nc, 1.0, HT, j0 * r, r, HT, j0 * r, r, 0.0, gH_t, 0, r)


@numba.njit(parallel=True, cache=True, nogil=True)
def frob_iterate(X, XT, use_T, W, H, HT, gW, gH, numW, DW, numH, DH, count, l1W, l2W, l1H,
                 l2H, gamma, zW, zH, eps, g0, want0, want_end, out):
    """``count`` Frobenius MU iterations (W, then H: Lee & Seung eq. 4) in place.

    ``use_T``: the H update reads ``XT`` (V^T, n x m) and works on ``HT``; otherwise it reads
    column blocks of ``X``. numH/DH: (n, r) buffers with ``use_T``, (r, n) without. T tasks
    = gW.shape[0] (the caller's Numba thread count); gW, gH, g0 (T, r, r) scratch.

    The objective from products the iterations form anyway (float64 sums):
    ||V - W H||^2 = ||V||^2 - 2 sum(W * (V H^T)) + sum((W^T W) * (H H^T)). ``want0``: out[0],
    out[1] get the last two terms at the entry factors (V H^T is the first W update's
    numerator, H H^T its Gram); ``want_end``: out[2], out[3] at the returned factors (the last
    H update's numerator W^T V with the new H, and the Grams of the new W and H)."""
    m, n = X.shape
    T = gW.shape[0]
    cpart = np.zeros(T, np.float64)
    # H^T and H H^T for the first W update: serial (0.1 ms at 1500 x 32; two parallel loops
    # fewer keep this function's compile time down, ~10 s per loop)
    _init_HT(H, HT, gH)
    for it in range(count):
        first = want0 and it == 0
        for t in prange(T):
            lo, hi = _span(t, T, m)
            cpart[t] = _fw_task(X, W, HT, gH, numW, DW, gW[t], lo, hi, l1W, l2W, gamma, zW, eps,
                                g0[t], first)
        if first:
            out[0] = cpart.sum()
            out[1] = _gram_dot(g0, gH)
        for t in prange(T):
            j0, j1 = _cspan(t, T, n)
            if use_T:
                _fh_task_T(XT, W, HT, gW, numH, DH, gH[t], j0, j1, l1H, l2H, gamma, zH, eps)
            else:
                _fh_task(X, W, H, HT, gW, numH, DH, gH[t], j0, j1, l1H, l2H, gamma, zH, eps)
    if use_T:
        _transpose_small(HT, H)
    if want_end and count > 0:
        out[2] = _dot64(HT, numH) if use_T else _dot64(H, numH)
        out[3] = _gram_dot(gW, gH)
    return W


@numba.njit(cache=True, nogil=True)
def _init_HT(H, HT, gH):
    """HT = H^T; gH[0] = H H^T, the other tasks' parts 0."""
    r, n = H.shape
    _transpose_small(H, HT)
    gH[:] = 0
    gemm(True, False, r, r, n, 1.0, HT, 0, r, HT, 0, r, 0.0, gH[0], 0, r)


@numba.njit(parallel=True, cache=True, nogil=True, fastmath=_FM)
def sq_norm(X, T):
    """||X||_F^2 accumulated in float64 (T tasks over row ranges)."""
    m, n = X.shape
    part = np.zeros(T, np.float64)
    for t in prange(T):
        lo, hi = _span(t, T, m)
        acc = 0.0
        for i in range(lo, hi):
            Xi = X[i]
            for j in range(n):
                v = np.float64(Xi[j])
                acc += v * v
        part[t] = acc
    return part.sum()


@numba.njit(parallel=True, cache=True, nogil=True)
def transpose_into(X, XT):
    """XT = X^T (m x n -> n x m) in parallel: each task owns 256 rows of XT, filled from
    8-row strips of X (one cache line of XT per row and strip in float64; a fixed inner trip
    count that LLVM unrolls: measured 2.4 ms for 2000 x 1500 float32 on 2 threads, 5.7 ms
    with a plain tiled loop, 1.05 ms for a copy)."""
    m, n = X.shape
    nb = (n + 255) // 256
    for b in prange(nb):
        j0 = b * 256
        j1 = min(n, j0 + 256)
        for i0 in range(0, m, 8):
            if i0 + 8 <= m:
                for j in range(j0, j1):
                    for ii in range(8):
                        XT[j, i0 + ii] = X[i0 + ii, j]
            else:
                for j in range(j0, j1):
                    for i in range(i0, m):
                        XT[j, i] = X[i, j]
    return XT


@numba.njit(cache=True, nogil=True)
def _kl_W_task(X, W, H, A, s, numW, l1, l2, zthr, eps, bs):
    m = X.shape[0]
    for b0 in range(0, m, bs):
        b1 = min(m, b0 + bs)
        Ab = A[b0:b1]
        np.dot(W[b0:b1], H, Ab)
        _kl_weights(X[b0:b1], Ab, eps)
        np.dot(Ab, H.T, numW[b0:b1])
        _finish_vec(W[b0:b1], numW[b0:b1], s, l1, l2, 1.0, zthr, eps)


@numba.njit(parallel=True, cache=True, nogil=True)
def kl_update_W(X, W, H, A, s, numW, l1, l2, zthr, eps, bs, T):
    """W <- W * ((X / WH) H^T) / s (Lee & Seung eq. 5, s = H's row sums), by blocks of bs
    rows: WH block (BLAS), the weighting in place while it is in cache, its numerator (BLAS),
    the update."""
    m = X.shape[0]
    for t in prange(T):
        lo, hi = _span(t, T, m)
        if hi > lo:
            _kl_W_task(X[lo:hi], W[lo:hi], H, A[lo:hi], s, numW[lo:hi], l1, l2, zthr, eps, bs)
    return W


@numba.njit(cache=True, nogil=True)
def _kl_H_task(X, W, H, A, part, eps, bs):
    m = X.shape[0]
    for b0 in range(0, m, bs):
        b1 = min(m, b0 + bs)
        Ab = A[b0:b1]
        np.dot(W[b0:b1], H, Ab)
        _kl_weights(X[b0:b1], Ab, eps)
    np.dot(W.T, A, part)


@numba.njit(parallel=True, cache=True, nogil=True)
def kl_parts_H(X, W, H, A, parts, eps, bs):
    """parts[t] = W_t^T (X_t / W_t H) over each task's rows (summed by the caller)."""
    m = X.shape[0]
    T = parts.shape[0]
    for t in prange(T):
        lo, hi = _span(t, T, m)
        if hi > lo:
            _kl_H_task(X[lo:hi], W[lo:hi], H, A[lo:hi], parts[t], eps, bs)
        else:
            parts[t][:] = 0
    return parts


@numba.njit(cache=True, nogil=True)
def finish_H(H, parts, trans, numH, gparts, DH, s, kind, l1, l2, gamma, zthr, eps):
    """The H update from the tasks' partial numerators: num = sum_t parts[t] (into parts[0];
    ``trans``: parts are (T, n, r), summed into numH); Frobenius: den = (sum_t gparts[t]) H
    (BLAS, into DH); KL: den = s[k] (W's column sums, 0 -> 1). Then the fused pass on H."""
    T = parts.shape[0]
    r, n = H.shape
    if trans:
        # contiguous sums first, then one transposing copy (the sum over t innermost, as
        # before, took most of this function's 0.4 ms at n = 1500, r = 32)
        P0 = parts[0]
        for t in range(1, T):
            P0 += parts[t]
        num = numH
        for k in range(r):
            Nk = num[k]
            for j in range(n):
                Nk[j] = P0[j, k]
    else:
        num = parts[0]
        for t in range(1, T):
            num += parts[t]
    if kind == FROB:
        G = gparts[0]
        for t in range(1, T):
            G += gparts[t]
        np.dot(G, H, DH)
        _finish_block(H, num, DH, l1, l2, gamma, zthr, eps)
    elif gamma == 1.0:
        _finish_vec1(H, num, s, l1, l2, zthr, eps, True)
    else:
        for k in range(r):
            Hk = H[k]
            Nk = num[k]
            sk = s[k]
            for j in range(n):
                Hk[j] = _finish(Hk[j], Nk[j], sk, l1, l2, gamma, zthr, eps)
    return H


@numba.njit(parallel=True, cache=True, nogil=True)
def dense_error_parts(X, W, H, blk, kind, beta, eps):
    """Per-task partial sums of the divergence terms (see ``_terms``) of plain dense V: WH
    by blocks of rows (BLAS, into the task's own (bs, n) buffer), never in full. out (T, 4)."""
    m, n = X.shape
    T, bs, _ = blk.shape
    out = np.zeros((T, 4), np.float64)
    for t in prange(T):
        lo, hi = _span(t, T, m)
        a0 = 0.0
        a1 = 0.0
        a2 = 0.0
        for b0 in range(lo, hi, bs):
            b1 = min(hi, b0 + bs)
            a0, a1, a2 = _block_terms(X[b0:b1], W[b0:b1], H, blk[t, : b1 - b0], kind, beta, eps, a0, a1, a2)
        out[t, 0] = a0
        out[t, 1] = a1
        out[t, 2] = a2
    return out


_LN2_HI = 6.93147180369123816490e-01  # fdlibm's split of log(2): hi has trailing zero bits
_LN2_LO = 1.90821492927058770002e-10
_SQRT2 = 1.4142135623730951


@numba.njit(cache=True, nogil=True, fastmath=_FM, error_model="numpy")
def _sum_xlog(x, q, e):
    """sum_j x_j log(q_j) for positive finite normal q (q is overwritten, e is scratch), in
    loops that vectorise (no libm call per entry): q = 2^e m with m in [sqrt(1/2), sqrt(2)),
    log m = 2 atanh(s), s = (m - 1) / (m + 1), |s| < 0.1716, by its series to s^21 (truncation
    below 1e-19 relative); e log 2 in two parts (fdlibm's split). About 1 ulp, like libm."""
    n = q.shape[0]
    qb = q.view(np.uint64)
    for j in range(n):
        b = qb[j]
        e[j] = np.float64(np.int64(b >> np.uint64(52)) - 1023)
        qb[j] = (b & np.uint64(0x000FFFFFFFFFFFFF)) | np.uint64(0x3FF0000000000000)
    acc = 0.0
    for j in range(n):
        mm = q[j]
        ee = e[j]
        if mm > _SQRT2:
            mm = mm * 0.5
            ee = ee + 1.0
        f = mm - 1.0
        sv = f / (mm + 1.0)
        z = sv * sv
        poly = 1.0 + z * (1.0 / 3 + z * (1.0 / 5 + z * (1.0 / 7 + z * (1.0 / 9 + z * (
            1.0 / 11 + z * (1.0 / 13 + z * (1.0 / 15 + z * (1.0 / 17 + z * (1.0 / 19 + z / 21)))))))))
        lg = (ee * _LN2_HI + (2.0 * sv * poly + ee * _LN2_LO))
        acc += x[j] * lg
    return acc


@numba.njit(cache=True, nogil=True, fastmath=_FM, error_model="numpy")
def _block_terms(X, Wb, H, B, kind, beta, eps, a0, a1, a2):
    np.dot(Wb, H, B)
    p, n = B.shape
    if kind == FROB:
        for i in range(p):
            Xi = X[i]
            Bi = B[i]
            for j in range(n):
                d = np.float64(Xi[j]) - np.float64(Bi[j])
                a0 += d * d
        return a0, a1, a2
    if kind == KL:
        # sum over x > eps of x log(x / max(wh, eps)) and of x (scikit-learn's terms); the
        # loop has selects only (it vectorises); a subnormal ratio (x tiny, wh huge) goes to libm
        q = np.empty(n, np.float64)
        xs = np.empty(n, np.float64)
        e = np.empty(n, np.float64)
        tiny = 2.2250738585072014e-308
        for i in range(p):
            Xi = X[i]
            Bi = B[i]
            nbad = 0
            for j in range(n):
                x = np.float64(Xi[j])
                wh = max(np.float64(Bi[j]), eps)
                qj = x / wh
                big = x > eps
                ok = big and qj >= tiny
                q[j] = qj if ok else 1.0
                xs[j] = x if ok else 0.0
                a1 += x if big else 0.0
                nbad += 1 if (big and not ok) else 0
            if nbad:
                for j in range(n):
                    x = np.float64(Xi[j])
                    qj = x / max(np.float64(Bi[j]), eps)
                    if x > eps and qj < tiny:
                        a0 += x * math.log(qj)
            a0 += _sum_xlog(xs, q, e)
        return a0, a1, a2
    for i in range(p):
        Xi = X[i]
        Bi = B[i]
        for j in range(n):
            t0, t1, t2, _full = _terms(np.float64(Xi[j]), np.float64(Bi[j]), kind, beta, eps)
            a0 += t0
            a1 += t1
            a2 += t2
    return a0, a1, a2


# --------------------------------------------------------------------------- sparse updates

@numba.njit(parallel=True, cache=True, nogil=True, fastmath=_FM)
def sparse_update(indptr, indices, data, weights, has_w, F, G, gram, s, D, kind, den_mode,
                  beta, l1, l2, gamma, zthr, eps, clamp_num, clamp_den, chunk):
    """Fused sparse multiplicative update of F (p, r) in place.

    Row i of F pairs with row i of the compressed matrix (CSR rows for W, CSC columns for
    H^T); G (q, r) is the other factor with one row per column index. For each stored
    entry (i, j, x): wh = F_i . G_j (float64, never stored), c = x * wh^(beta-2) (or x),
    num_i += c G_j, and with ``DEN_ACC`` also den_i += w * wh^(beta-1) G_j.
    """
    p, r = F.shape
    n_tasks = (p + chunk - 1) // chunk
    need_wh = kind != FROB or den_mode == DEN_ACC
    for t in prange(n_tasks):
        num = np.empty(r, np.float64)
        den = np.empty(r, np.float64)
        for i in range(t * chunk, min(p, (t + 1) * chunk)):
            for k in range(r):
                num[k] = 0.0
                den[k] = 0.0
            Fi = F[i]
            for e in range(indptr[i], indptr[i + 1]):
                Gj = G[indices[e]]
                x = data[e]
                wh = 0.0
                if need_wh:
                    for k in range(r):
                        wh += np.float64(Fi[k]) * Gj[k]
                c = _num_weight(np.float64(x), wh, kind, beta, eps, clamp_num)
                if has_w:
                    w = np.float64(weights[e])
                    c *= w
                    b = w * _den_weight(wh, kind, beta, eps, clamp_den)
                    for k in range(r):
                        num[k] += c * Gj[k]
                        den[k] += b * Gj[k]
                else:
                    for k in range(r):
                        num[k] += c * Gj[k]
            if den_mode == DEN_GRAM:
                for l in range(r):
                    f = np.float64(Fi[l])
                    for k in range(r):
                        den[k] += f * gram[l, k]
            elif den_mode == DEN_VEC:
                for k in range(r):
                    den[k] = s[k]
            elif den_mode == DEN_MAT:
                for k in range(r):
                    den[k] = D[i, k]
            for k in range(r):
                Fi[k] = _finish(np.float64(Fi[k]), num[k], den[k], l1, l2, gamma, zthr, eps)
    return F


@numba.njit(parallel=True, cache=True, nogil=True, fastmath=_FM)
def sparse_update_kl(indptr, indices, data, F, G, s, l1, l2, zthr, eps, chunk):
    """The hot path of ``sparse_update`` for unmasked KL (den = the vector s), kept as its
    own small kernel: one dot and one axpy per stored entry, both vectorised (measured
    1.6x faster than the general kernel on the 20000 x 10000, 1M-nnz, r = 32 case)."""
    p, r = F.shape
    n_tasks = (p + chunk - 1) // chunk
    for t in prange(n_tasks):
        num = np.empty(r, np.float64)
        for i in range(t * chunk, min(p, (t + 1) * chunk)):
            for k in range(r):
                num[k] = 0.0
            Fi = F[i]
            for e in range(indptr[i], indptr[i + 1]):
                Gj = G[indices[e]]
                wh = 0.0
                for k in range(r):
                    wh += np.float64(Fi[k]) * Gj[k]
                c = np.float64(data[e]) / max(wh, eps)
                for k in range(r):
                    num[k] += c * Gj[k]
            for k in range(r):
                Fi[k] = _finish(np.float64(Fi[k]), num[k], s[k], l1, l2, 1.0, zthr, eps)
    return F


@numba.njit(cache=True, nogil=True, fastmath=_FM, error_model="numpy")
def _kl_rows_err(indptr, indices, data, F, G, s, l1, l2, zthr, eps, lo, hi, q, xs, e):
    # sparse_update_kl's rows, also summing the objective's terms at the entry F_i . G_j
    # they compute anyway (x log(x / wh) over x > eps, by ``_sum_xlog``, and x)
    r = F.shape[1]
    tiny = 2.2250738585072014e-308
    num = np.empty(r, np.float64)
    a0 = 0.0
    a1 = 0.0
    for i in range(lo, hi):
        for k in range(r):
            num[k] = 0.0
        Fi = F[i]
        e0 = indptr[i]
        ln = indptr[i + 1] - e0
        for t in range(ln):
            Gj = G[indices[e0 + t]]
            wh = 0.0
            for k in range(r):
                wh += np.float64(Fi[k]) * Gj[k]
            x = np.float64(data[e0 + t])
            c = x / max(wh, eps)
            for k in range(r):
                num[k] += c * Gj[k]
            big = x > eps
            ok = big and c >= tiny
            q[t] = c if ok else 1.0
            xs[t] = x if ok else 0.0
            a1 += x if big else 0.0
            if big and not ok:
                a0 += x * math.log(c)
        if ln:
            a0 += _sum_xlog(xs[:ln], q[:ln], e[:ln])
        for k in range(r):
            Fi[k] = _finish1(np.float64(Fi[k]), num[k], s[k], l1, l2, zthr, eps)
    return a0, a1


@numba.njit(parallel=True, cache=True, nogil=True)
def sparse_update_kl_err(indptr, indices, data, F, G, s, l1, l2, zthr, eps, chunk, maxrow):
    """``sparse_update_kl`` that also returns the partial sums (per task: columns 0, 1) of
    the KL objective at the factors it starts from: the first W update of a fit gives the
    initial objective without its own pass over the non-zeros (measured 27 ms on the
    20000 x 10000, 1M-nnz, r = 32 matrix)."""
    p = F.shape[0]
    n_tasks = (p + chunk - 1) // chunk
    out = np.zeros((n_tasks, 4), np.float64)
    for t in prange(n_tasks):
        q = np.empty(maxrow, np.float64)
        xs = np.empty(maxrow, np.float64)
        e = np.empty(maxrow, np.float64)
        a0, a1 = _kl_rows_err(indptr, indices, data, F, G, s, l1, l2, zthr, eps, t * chunk,
                              min(p, (t + 1) * chunk), q, xs, e)
        out[t, 0] = a0
        out[t, 1] = a1
    return out


# --------------------------------------------------------------------------- tiled sparse KL
#
# Unmasked sparse KL gathers one r-long row of the other factor per stored entry. The whole
# gathered factor (H^T: n x r, W: m x r; 2.5 and 5 MB at 20000 x 10000, r = 32, float64)
# misses a 2 MB L2, so the plain CSR / CSC sweeps were L3-latency bound (~45 ns per entry
# per thread). The entries are therefore regrouped once per fit into column tiles of
# ``TILE`` columns (a tile of H^T: TILE x r, in L2): tile t holds, row by row, the entries
# of its columns (``ptr[t, i]``..``ptr[t, i + 1]``, local column indices as uint16). The W
# update walks panels of rows (parallel) and inside a panel the tiles, so its gathers hit
# the L2-resident tile of H^T; the H update walks the tiles (parallel, each task owns its
# columns' numerators) and streams W row by row. This one structure replaces the CSC copy.


@numba.njit(parallel=True, cache=True, nogil=True)
def tile_build(indptr, indices, data, n, shift, chunk, ptr):
    """Regroup a CSR matrix (m x n) into column tiles of 2^shift columns (shifts and masks,
    not integer divisions: 8 -> 4 ms here): returns (ptr (T, m + 1) int64, local column
    indices uint16, values), entries of a row kept in their CSR order. ``ptr``: zeros of
    shape (T, m + 1), int32 where nnz allows (counted in place: no other T x m array)."""
    m = indptr.shape[0] - 1
    tile = 1 << shift
    lmask = tile - 1
    T = max(1, (n + tile - 1) >> shift)
    n_tasks = (m + chunk - 1) // chunk
    for b in prange(n_tasks):
        for i in range(b * chunk, min(m, (b + 1) * chunk)):
            for e in range(indptr[i], indptr[i + 1]):
                ptr[np.int64(indices[e]) >> shift, i] += 1
    run = 0
    for t in range(T):
        for i in range(m):
            c = ptr[t, i]
            ptr[t, i] = run
            run += c
        ptr[t, m] = run
    nnz = indptr[m]
    lidx = np.empty(nnz, np.uint16)
    ldat = np.empty(nnz, data.dtype)
    for b in prange(n_tasks):
        pos = np.empty(T, np.int64)
        for i in range(b * chunk, min(m, (b + 1) * chunk)):
            for t in range(T):
                pos[t] = ptr[t, i]
            for e in range(indptr[i], indptr[i + 1]):
                j = np.int64(indices[e])
                t = j >> shift
                q = pos[t]
                lidx[q] = j & lmask
                ldat[q] = data[e]
                pos[t] = q + 1
    return ptr, lidx, ldat


@numba.njit(inline="always")
def _kl_err_entry(x, c, eps, q, xs, nb, a0, a1):
    # one stored entry's share of the KL objective at the factors the sweep starts from:
    # x log(x / wh) by batches of logs (q, xs), x, and libm for a subnormal ratio
    tiny = 2.2250738585072014e-308
    big = x > eps
    ok = big and c >= tiny
    q[nb] = c if ok else 1.0
    xs[nb] = x if ok else 0.0
    a1 += x if big else 0.0
    if big and not ok:
        a0 += x * math.log(c)
    return nb + 1, a0, a1


@numba.njit(inline="always")
def _finish_panel(W, num, lo, hi, s, l1, l2, zthr, eps, cs):
    # the panel's multiplicative update from its numerators; column sums for the next sweep
    r = W.shape[1]
    for i in range(lo, hi):
        Wi = W[i]
        for k in range(r):
            Wi[k] = _finish1(np.float64(Wi[k]), num[i - lo, k], s[k], l1, l2, zthr, eps)
            cs[k] += np.float64(Wi[k])


@numba.njit(inline="always")
def _max_panel_block(ptr, rsplit, panel):
    # most entries of one tile in one panel of rows: the objective's batch size
    T = ptr.shape[0]
    P = rsplit.shape[0] - 1
    maxblk = 1
    for t in range(T):
        for k in range(P):
            for lo in range(rsplit[k], rsplit[k + 1], panel):
                hi = min(rsplit[k + 1], lo + panel)
                maxblk = max(maxblk, ptr[t, hi] - ptr[t, lo])
    return maxblk


@numba.njit(inline="always")
def _finish_tile(Ht, num, c0, w, s, l1, l2, zthr, eps, cs):
    # the tile's multiplicative update of H^T rows c0 .. c0 + w - 1; column sums
    r = Ht.shape[1]
    for j in range(w):
        Gj = Ht[c0 + j]
        for k in range(r):
            Gj[k] = _finish1(np.float64(Gj[k]), num[j, k], s[k], l1, l2, zthr, eps)
            cs[k] += np.float64(Gj[k])


@numba.njit(cache=True, nogil=True, fastmath=_FM, error_model="numpy")
def _tiled_W_panel(ptr, lidx, ldat, tile, W, Ht, s, l1, l2, zthr, eps, lo, hi, num, want_err,
                   q, xs, e, cs):
    r = W.shape[1]
    T = ptr.shape[0]
    a0 = 0.0
    a1 = 0.0
    for i in range(hi - lo):
        for k in range(r):
            num[i, k] = 0.0
    for t in range(T):
        c0 = t * tile
        nb = 0
        for i in range(lo, hi):
            Wi = W[i]
            ni = num[i - lo]
            for p in range(ptr[t, i], ptr[t, i + 1]):
                Gj = Ht[c0 + np.int64(lidx[p])]
                wh = 0.0
                for k in range(r):
                    wh += np.float64(Wi[k]) * Gj[k]
                x = np.float64(ldat[p])
                c = x / max(wh, eps)
                for k in range(r):
                    ni[k] += c * Gj[k]
                if want_err:
                    nb, a0, a1 = _kl_err_entry(x, c, eps, q, xs, nb, a0, a1)
        if want_err and nb:
            a0 += _sum_xlog(xs[:nb], q[:nb], e[:nb])
    _finish_panel(W, num, lo, hi, s, l1, l2, zthr, eps, cs)
    return a0, a1


@numba.njit(parallel=True, cache=True, nogil=True)
def tiled_kl_W(ptr, lidx, ldat, tile, W, Ht, s, l1, l2, zthr, eps, rsplit, num, want_err):
    """Unmasked sparse KL update of W (m, r) in place from the tiled entries (see above).
    Task k takes rows ``rsplit[k]``..``rsplit[k + 1]`` (split by non-zeros) in panels of
    ``num.shape[1]`` rows, ``num[k]`` its numerator scratch (allocated once per fit). With
    ``want_err`` also the per-task partial sums (columns 0, 1) of the objective at the
    factors it starts from (as ``sparse_update_kl_err``). Columns 2: of the result are the
    column sums of the updated W (the next H update's denominator, no pass over W)."""
    m, r = W.shape
    P = rsplit.shape[0] - 1
    panel = num.shape[1]
    out = np.zeros((P, 2 + r), np.float64)
    maxblk = _max_panel_block(ptr, rsplit, panel) if want_err else 1
    for k in prange(P):
        q = np.empty(maxblk, np.float64)
        xs = np.empty(maxblk, np.float64)
        e = np.empty(maxblk, np.float64)
        a0 = 0.0
        a1 = 0.0
        for lo in range(rsplit[k], rsplit[k + 1], panel):
            hi = min(rsplit[k + 1], lo + panel)
            b0, b1 = _tiled_W_panel(ptr, lidx, ldat, tile, W, Ht, s, l1, l2, zthr, eps, lo, hi,
                                    num[k], want_err, q, xs, e, out[k, 2:])
            a0 += b0
            a1 += b1
        out[k, 0] = a0
        out[k, 1] = a1
    return out


@numba.njit(cache=True, nogil=True, fastmath=_FM, error_model="numpy")
def _tiled_H_tile(ptr, lidx, ldat, t, tile, W, Ht, s, l1, l2, zthr, eps, num, cs):
    m, r = W.shape
    c0 = t * tile
    w = num.shape[0]
    for j in range(w):
        for k in range(r):
            num[j, k] = 0.0
    for i in range(m):
        Wi = W[i]
        for p in range(ptr[t, i], ptr[t, i + 1]):
            jl = np.int64(lidx[p])
            Gj = Ht[c0 + jl]
            wh = 0.0
            for k in range(r):
                wh += np.float64(Wi[k]) * Gj[k]
            c = np.float64(ldat[p]) / max(wh, eps)
            nj = num[jl]
            for k in range(r):
                nj[k] += c * Wi[k]
    _finish_tile(Ht, num, c0, w, s, l1, l2, zthr, eps, cs)


@numba.njit(cache=True, nogil=True, fastmath=_FM, error_model="numpy")
def _tiled_err_tile(ptr, lidx, ldat, t, tile, W, Ht, eps, q, xs, e):
    # the KL objective's entry terms (as ``_sparse_kl_rows``) over tile t's entries, right
    # after the tile of H^T was updated (still in L2); logs in batches of len(q)
    m, r = W.shape
    c0 = t * tile
    tiny = 2.2250738585072014e-308
    B = q.shape[0]
    a0 = 0.0
    a1 = 0.0
    nb = 0
    for i in range(m):
        Wi = W[i]
        for p in range(ptr[t, i], ptr[t, i + 1]):
            Gj = Ht[c0 + np.int64(lidx[p])]
            wh = 0.0
            for k in range(r):
                wh += np.float64(Wi[k]) * Gj[k]
            x = np.float64(ldat[p])
            qj = x / max(wh, eps)
            big = x > eps
            ok = big and qj >= tiny
            q[nb] = qj if ok else 1.0
            xs[nb] = x if ok else 0.0
            nb += 1
            a1 += x if big else 0.0
            if big and not ok:  # subnormal ratio: libm
                a0 += x * math.log(qj)
            if nb == B:
                a0 += _sum_xlog(xs, q, e)
                nb = 0
    if nb:
        a0 += _sum_xlog(xs[:nb], q[:nb], e[:nb])
    return a0, a1


@numba.njit(parallel=True, cache=True, nogil=True)
def tiled_kl_H(ptr, lidx, ldat, tile, W, Ht, s, l1, l2, zthr, eps, tsplit, num, want_err):
    """Unmasked sparse KL update of H^T (n, r) in place from the tiled entries: task k takes
    the column tiles ``tsplit[k]``..``tsplit[k + 1]`` (split by non-zeros) and owns their
    numerators (``num[k]``, scratch allocated once per fit; no write conflicts). With ``want_err``
    the per-task partial sums (columns 0, 1) of the objective at (W, the updated H), each
    tile swept again while its new H^T rows are in cache: the final objective of a fit
    without its own pass over the non-zeros (which gathers H^T from L3). Columns 2: are the
    column sums of the updated H^T."""
    n, r = Ht.shape
    P = tsplit.shape[0] - 1
    out = np.zeros((P, 2 + r), np.float64)
    for k in prange(P):
        q = np.empty(1024 if want_err else 1, np.float64)
        xs = np.empty(1024 if want_err else 1, np.float64)
        e = np.empty(1024 if want_err else 1, np.float64)
        for t in range(tsplit[k], tsplit[k + 1]):
            c0 = t * tile
            w = max(0, min(n, c0 + tile) - c0)
            _tiled_H_tile(ptr, lidx, ldat, t, tile, W, Ht, s, l1, l2, zthr, eps, num[k, :w],
                          out[k, 2:])
            if want_err:
                a0, a1 = _tiled_err_tile(ptr, lidx, ldat, t, tile, W, Ht, eps, q, xs, e)
                out[k, 0] += a0
                out[k, 1] += a1
    return out


# ---- the same sweeps on 8-lane vectors (float64, r a multiple of 8, C-contiguous factors).
# Per stored entry the scalar loops above compile to ~100 instructions (index wraparound
# checks, a runtime-length dot product dispatched through vector/remainder loops, 256-bit
# vectors): ~34 ns per entry per thread and update at r = 32. Written with kernels._simd on
# flat offsets, an entry is r / 8 vector loads of the gathered row, r / 8 fused
# multiply-adds, one horizontal sum, one division and r / 8 read-modify-writes of the
# numerator row.

@numba.njit(inline="always")
def _vdot(A, a, B, b, nv):
    acc = vzero(A)
    for v in range(nv):
        acc = vfma(vload(A, a + 8 * v), vload(B, b + 8 * v), acc)
    return vsum(acc)


@numba.njit(inline="always")
def _vaxpy(c, X, x, Y, y, nv):
    # Y[y : y + 8 nv] += c X[x : x + 8 nv]
    cv = vsplat(c, vzero(Y))
    for v in range(nv):
        vstore(Y, y + 8 * v, vfma(cv, vload(X, x + 8 * v), vload(Y, y + 8 * v)))


@numba.njit(cache=True, nogil=True, fastmath=_FM, error_model="numpy")
def _tiled_W_panel_vec(ptr, lidx, ldat, tile, W, Wf, Hf, s, l1, l2, zthr, eps, lo, hi, num,
                       numf, want_err, q, xs, e, cs):
    r = W.shape[1]
    nv = r // 8
    T = ptr.shape[0]
    a0 = 0.0
    a1 = 0.0
    for i in range(hi - lo):
        for k in range(r):
            num[i, k] = 0.0
    for t in range(T):
        c0 = t * tile
        nb = 0
        for i in range(lo, hi):
            wi = i * r
            ni = (i - lo) * r
            for p in range(ptr[t, i], ptr[t, i + 1]):
                gj = (c0 + np.int64(lidx[p])) * r
                wh = _vdot(Wf, wi, Hf, gj, nv)
                x = np.float64(ldat[p])
                c = x / max(wh, eps)
                _vaxpy(c, Hf, gj, numf, ni, nv)
                if want_err:
                    nb, a0, a1 = _kl_err_entry(x, c, eps, q, xs, nb, a0, a1)
        if want_err and nb:
            a0 += _sum_xlog(xs[:nb], q[:nb], e[:nb])
    _finish_panel(W, num, lo, hi, s, l1, l2, zthr, eps, cs)
    return a0, a1


@numba.njit(parallel=True, cache=True, nogil=True)
def tiled_kl_W_vec(ptr, lidx, ldat, tile, W, Ht, s, l1, l2, zthr, eps, rsplit, num, want_err):
    """``tiled_kl_W`` on 8-lane vectors: float64, r a multiple of 8, C-contiguous W and Ht
    (the caller checks; same arguments and results)."""
    m, r = W.shape
    P = rsplit.shape[0] - 1
    panel = num.shape[1]
    Wf = W.reshape(m * r)
    Hf = Ht.reshape(Ht.shape[0] * r)
    out = np.zeros((P, 2 + r), np.float64)
    maxblk = _max_panel_block(ptr, rsplit, panel) if want_err else 1
    for k in prange(P):
        q = np.empty(maxblk, np.float64)
        xs = np.empty(maxblk, np.float64)
        e = np.empty(maxblk, np.float64)
        numk = num[k]
        numf = numk.reshape(panel * r)
        a0 = 0.0
        a1 = 0.0
        for lo in range(rsplit[k], rsplit[k + 1], panel):
            hi = min(rsplit[k + 1], lo + panel)
            b0, b1 = _tiled_W_panel_vec(ptr, lidx, ldat, tile, W, Wf, Hf, s, l1, l2, zthr, eps,
                                        lo, hi, numk, numf, want_err, q, xs, e, out[k, 2:])
            a0 += b0
            a1 += b1
        out[k, 0] = a0
        out[k, 1] = a1
    return out


@numba.njit(cache=True, nogil=True, fastmath=_FM, error_model="numpy")
def _tiled_H_tile_vec(ptr, lidx, ldat, t, tile, W, Wf, Ht, Hf, s, l1, l2, zthr, eps, num,
                      numf, cs):
    m, r = W.shape
    nv = r // 8
    c0 = t * tile
    w = num.shape[0]
    for j in range(w):
        for k in range(r):
            num[j, k] = 0.0
    for i in range(m):
        wi = i * r
        for p in range(ptr[t, i], ptr[t, i + 1]):
            jl = np.int64(lidx[p])
            wh = _vdot(Wf, wi, Hf, (c0 + jl) * r, nv)
            c = np.float64(ldat[p]) / max(wh, eps)
            _vaxpy(c, Wf, wi, numf, jl * r, nv)
    _finish_tile(Ht, num, c0, w, s, l1, l2, zthr, eps, cs)


@numba.njit(parallel=True, cache=True, nogil=True)
def tiled_kl_H_vec(ptr, lidx, ldat, tile, W, Ht, s, l1, l2, zthr, eps, tsplit, num, want_err):
    """``tiled_kl_H`` on 8-lane vectors (float64, r a multiple of 8, C-contiguous W and Ht)."""
    n, r = Ht.shape
    m = W.shape[0]
    Wf = W.reshape(m * r)
    Hf = Ht.reshape(n * r)
    P = tsplit.shape[0] - 1
    out = np.zeros((P, 2 + r), np.float64)
    for k in prange(P):
        q = np.empty(1024 if want_err else 1, np.float64)
        xs = np.empty(1024 if want_err else 1, np.float64)
        e = np.empty(1024 if want_err else 1, np.float64)
        numk = num[k]
        numf = numk.reshape(numk.shape[0] * r)
        for t in range(tsplit[k], tsplit[k + 1]):
            c0 = t * tile
            w = max(0, min(n, c0 + tile) - c0)
            _tiled_H_tile_vec(ptr, lidx, ldat, t, tile, W, Wf, Ht, Hf, s, l1, l2, zthr, eps,
                              numk[:w], numf, out[k, 2:])
            if want_err:
                a0, a1 = _tiled_err_tile(ptr, lidx, ldat, t, tile, W, Ht, eps, q, xs, e)
                out[k, 0] += a0
                out[k, 1] += a1
    return out


def _tiled_kl(W, Ht):
    """(W update, H update) of the tiled sparse KL sweeps for these factors: the 8-lane
    kernels for float64 C-contiguous factors with r a multiple of 8, else the scalar ones."""
    if (W.dtype == np.float64 and Ht.dtype == np.float64 and W.shape[1] % 8 == 0
            and W.flags.c_contiguous and Ht.flags.c_contiguous):
        return tiled_kl_W_vec, tiled_kl_H_vec
    return tiled_kl_W, tiled_kl_H


# --------------------------------------------------------------------------- objectives

@numba.njit(inline="always")
def _terms(x, wh, kind, beta, eps):
    """Per-entry parts of scikit-learn's ``_beta_divergence`` (see ``objective`` in cpu.py's
    callers): returns (t0, t1, t2, full) where ``full`` is the whole entry divergence."""
    if kind == FROB:
        d = x - wh
        return d * d, 0.0, 0.0, 0.5 * d * d
    whc = wh if wh >= eps else eps
    if kind == KL:
        if x > eps:
            lg = x * math.log(x / whc)
            return lg, x, 0.0, lg - x + wh
        return 0.0, 0.0, 0.0, wh
    if kind == IS:
        if x > eps:
            div = x / whc
            lg = math.log(div)
            return div, lg, 0.0, div - lg - 1.0
        return 0.0, 0.0, 0.0, -1.0
    whb = wh ** beta
    if x > eps:
        xb = x ** beta
        xw = x * whc ** (beta - 1.0)
        return xb, xw, whb, (xb - beta * xw + (beta - 1.0) * whb) / (beta * (beta - 1.0))
    return 0.0, 0.0, whb, (beta - 1.0) * whb / (beta * (beta - 1.0))


@numba.njit(parallel=True, cache=True, nogil=True)
def dense_div(X, WH, M, has_mask, kind, beta, eps):
    """Partial sums (per row) of the divergence terms over a dense block: out (m, 4)."""
    m, n = WH.shape
    out = np.zeros((m, 4), np.float64)
    for i in prange(m):
        a0 = 0.0
        a1 = 0.0
        a2 = 0.0
        a3 = 0.0
        for j in range(n):
            t0, t1, t2, full = _terms(np.float64(X[i, j]), np.float64(WH[i, j]), kind, beta, eps)
            if has_mask:
                a3 += np.float64(M[i, j]) * full
            else:
                a0 += t0
                a1 += t1
                a2 += t2
        out[i, 0] = a0
        out[i, 1] = a1
        out[i, 2] = a2
        out[i, 3] = a3
    return out


@numba.njit(parallel=True, cache=True, nogil=True, fastmath=_FM)
def sparse_div(indptr, indices, data, weights, has_w, F, G, kind, beta, eps):
    """Per-row partial sums of the divergence terms at the stored entries: out (p, 4)."""
    p, r = F.shape
    out = np.zeros((p, 4), np.float64)
    for i in prange(p):
        a0 = 0.0
        a1 = 0.0
        a3 = 0.0
        Fi = F[i]
        for e in range(indptr[i], indptr[i + 1]):
            Gj = G[indices[e]]
            wh = 0.0
            for k in range(r):
                wh += np.float64(Fi[k]) * Gj[k]
            t0, t1, _t2, full = _terms(np.float64(data[e]), wh, kind, beta, eps)
            if has_w:
                a3 += np.float64(weights[e]) * full
            else:
                a0 += t0
                a1 += t1
        out[i, 0] = a0
        out[i, 1] = a1
        out[i, 3] = a3
    return out


@numba.njit(cache=True, nogil=True, fastmath=_FM, error_model="numpy")
def _sparse_kl_rows(indptr, indices, data, F, G, eps, lo, hi, q, xs, e):
    # q, xs, e: scratch of the longest row; the ratios of a row first, then one vectorised
    # log pass over them (``_sum_xlog``)
    r = F.shape[1]
    tiny = 2.2250738585072014e-308
    a0 = 0.0
    a1 = 0.0
    for i in range(lo, hi):
        Fi = F[i]
        e0 = indptr[i]
        ln = indptr[i + 1] - e0
        for t in range(ln):
            Gj = G[indices[e0 + t]]
            wh = 0.0
            for k in range(r):
                wh += np.float64(Fi[k]) * Gj[k]
            x = np.float64(data[e0 + t])
            qj = x / max(wh, eps)
            big = x > eps
            ok = big and qj >= tiny
            q[t] = qj if ok else 1.0
            xs[t] = x if ok else 0.0
            a1 += x if big else 0.0
            if big and not ok:  # subnormal ratio: libm
                a0 += x * math.log(qj)
        if ln:
            a0 += _sum_xlog(xs[:ln], q[:ln], e[:ln])
    return a0, a1


@numba.njit(parallel=True, cache=True, nogil=True)
def sparse_div_kl(indptr, indices, data, F, G, eps, chunk, maxrow):
    """``sparse_div`` for unweighted KL (columns 0 and 1 of its output; per task, not per
    row): the logs by ``_sum_xlog`` (measured 15 -> 3 ns per entry against libm's log)."""
    p = F.shape[0]
    n_tasks = (p + chunk - 1) // chunk
    out = np.zeros((n_tasks, 4), np.float64)
    for t in prange(n_tasks):
        q = np.empty(maxrow, np.float64)
        xs = np.empty(maxrow, np.float64)
        e = np.empty(maxrow, np.float64)
        a0, a1 = _sparse_kl_rows(indptr, indices, data, F, G, eps, t * chunk, min(p, (t + 1) * chunk), q, xs, e)
        out[t, 0] = a0
        out[t, 1] = a1
    return out


# --------------------------------------------------------------------------- batched

# The per-problem products go to BLAS (numba's np.dot with ``out``, through scipy's BLAS):
# for 64 x 64 x 8 problems the six products of an iteration took 7.7 us this way against
# ~34 us for hand-written loops, whose r = 8 inner loops are too short to vectorise.

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
    # written out because numba's error_model="numpy" made the update loops 8x slower here
    d = prev - err
    if err0 != 0:
        return d / err0
    if d > 0:
        return np.inf
    if d < 0:
        return -np.inf
    return np.nan


@numba.njit(inline="always")
def _transpose_small(H, HT):
    r, n = H.shape
    for j in range(n):
        for k in range(r):
            HT[j, k] = H[k, j]


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
# with kernels._simd's 8-lane vectors instead of six small BLAS calls per iteration (64 x 64,
# r = 8: ~4.3 us per iteration on one core against ~6.9 us through BLAS, whose call overhead
# dominates at these sizes). The factors are kept as W^T (r x m) and H (r x n), so that both
# multiplicative updates have the same shape, F (R x P) <- F * (O D) / (G F) (Lee & Seung 2001,
# eq. 4, in scikit-learn's order of operations):
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


# --------------------------------------------------------------------------- launchers

EPS64 = float(np.finfo(np.float64).eps)


class Params:
    """Scalars of one fit: beta, its kind, gamma(beta), eps and the zeroing thresholds."""

    def __init__(self, beta: float, eps: float):
        self.beta = float(beta)
        self.kind = FROB if beta == 2 else KL if beta == 1 else IS if beta == 0 else BETA
        if beta < 1:
            self.gamma = 1.0 / (2.0 - beta)
        elif beta > 2:
            self.gamma = 1.0 / (beta - 1.0)
        else:
            self.gamma = 1.0
        self.eps = float(eps)
        self.clamp_num = bool(beta < 2)
        self.clamp_den = bool(beta < 1)
        self.zW = EPS64 if beta < 1 else 0.0
        self.zH = EPS64 if beta <= 1 else 0.0


def _finish_error(p: Params, a, sum_wh, n_entries, sum_whb):
    """scikit-learn's ``_beta_divergence(..., square_root=True)`` from the partial sums."""
    if p.kind == FROB:
        return float(np.sqrt(a[0]))
    if p.kind == KL:
        res = a[0] + sum_wh - a[1]
    elif p.kind == IS:
        res = a[0] - n_entries - a[1]
    else:
        b = p.beta
        res = (a[0] - b * a[1] + (b - 1.0) * sum_whb) / (b * (b - 1.0))
    return float(np.sqrt(2.0 * max(res, 0.0)))


#: smallest residual (a fraction of ||V||^2) that the expanded Frobenius objective of
#: ``DenseProblem.iterate`` returns; below it the objective is evaluated directly. By
#: itemsize: float32 GEMM outputs carry ~1e-7 relative error (at 5% the objective keeps
#: about 5 digits, more than scikit-learn's float32 sum of squares), float64 ~1e-16.
_EXPANDED_MIN = {4: 0.05, 8: 1e-4}


def _row_blocks(m: int, n: int, itemsize: int):
    rows = max(1, min(m, config.DENSE_BLOCK_BYTES // max(1, n * itemsize)))
    for lo in range(0, m, rows):
        yield lo, min(m, lo + rows)


class DenseProblem:
    """A dense V (m, n) on the CPU, optionally with a weight mask M of the same shape.

    Memory: Frobenius without a mask needs only the (m, r) and (r, n) numerators (the GEMM
    outputs); the other losses keep WH in one (m, n) buffer that the weighting pass
    overwrites with V / WH (KL) in place, plus a second one for WH^(beta-1) (general beta
    or a mask). The objective uses a bounded row block of WH.
    """

    def __init__(self, X, M, p: Params, r: int):
        X = np.ascontiguousarray(X)  # one compiled layout (a copy only for strided input)
        self.X, self.M, self.p = X, M, p
        m, n = X.shape
        dt = X.dtype
        self.has_mask = M is not None
        self.M_arg = M if M is not None else np.empty((1, 1), dt)
        self.plain_frob = p.kind == FROB and not self.has_mask
        self.plain_kl = p.kind == KL and not self.has_mask
        # plain Frobenius / KL: BLAS inside the Numba tasks (one thread pool, see
        # ``frob_update_W``), so all their work counts; the other losses: the O(m n)
        # elementwise passes (the GEMMs are BLAS's, threaded by BLAS)
        self.blas_in_tasks = self.plain_frob or self.plain_kl
        self.work = m * n
        self.numW = np.empty((m, r), dt)
        self.numH = np.empty((r, n), dt)
        self.s0 = np.empty(0, dt)
        self.D0 = np.empty((0, 0), dt)
        self.A = self.B = self.DW = self.DH = None
        T = max(1, numba.get_num_threads())
        self.bs = max(1, min(m, config.DENSE_TASK_ROWS))
        if self.blas_in_tasks:
            # per-task partial numerators / Gram matrices of the H update, summed in finish_H
            self.trans = self.plain_frob and dt == np.float32
            self.parts = np.empty((T, n, r) if self.trans else (T, r, n), dt)
            self.gparts = np.empty((T, r, r), dt)
            self.DH = np.empty((r, n), dt)
            self.blk = np.empty((T, self.bs, n), dt)  # objective: WH by row blocks
            if self.plain_frob:
                self.DW = np.empty((m, r), dt)
            else:
                self.A = np.empty((m, n), dt)
        else:
            self.A = np.empty((m, n), dt)
            self.B = np.empty((m, n), dt)
            self.DW = np.empty((m, r), dt)
            self.DH = np.empty((r, n), dt)
        self._wcache = None  # (numW, G or s) while H is fixed (transform)
        self.T = T
        # plain Frobenius runs whole iterations in one call (``iterate``)
        self.can_iterate = self.plain_frob
        self.XT = None  # V^T for the fused float32 iterations (made on first use)
        self._fbuf = None
        self._xx = None  # ||V||^2 for the expanded objective

    def _use_VT(self, remaining: int) -> bool:
        """Whether the fused iterations read W^T V from a transposed copy of V (float32 only;
        see ``frob_iterate``): worth its one transpose from a few iterations on, and only up
        to ``config.DENSE_VT_MAX_BYTES``."""
        if self.XT is not None:
            return True
        X = self.X
        return (X.dtype == np.float32 and remaining >= config.DENSE_VT_MIN_ITER
                and X.nbytes <= config.DENSE_VT_MAX_BYTES)

    def iterate(self, W, H, count, l1W, l2W, l1H, l2H, remaining=None, want_err0=False,
                want_err=False):
        """``count`` whole iterations (W then H) in one fused call; plain Frobenius only.

        ``remaining``: iterations still to come in this fit (``count`` if None), which
        decides whether V is transposed once for them. ``want_err0`` / ``want_err``: also
        return the objective (``error``'s value) at the entry / the returned factors, from
        the terms ``frob_iterate`` collects (else None).

        Returns
        -------
        err0, err : float or None
        """
        p = self.p
        m, n = self.X.shape
        r = W.shape[1]
        dt = self.X.dtype
        use_T = self._use_VT(count if remaining is None else remaining)
        if use_T and self.XT is None:
            self.XT = transpose_into(self.X, np.empty((n, m), dt))
        key = (use_T, r)
        if self._fbuf is None or self._fbuf[0] != key:
            T = self.T
            shape = (n, r) if use_T else (r, n)
            self._fbuf = (key, np.empty((n, r), dt), np.empty((T, r, r), dt), np.empty((T, r, r), dt),
                          np.empty(shape, dt), np.empty(shape, dt), np.empty((T, r, r), dt))
        _key, HT, gW, gH, numH, DH, g0 = self._fbuf
        want0 = bool(want_err0) and count > 0
        want_end = bool(want_err) and count > 0
        start = (W.copy(), H.copy()) if want0 else None
        out = np.zeros(4)
        frob_iterate(self.X, self.XT if use_T else self.D0, use_T, W, H, HT, gW, gH, self.numW,
                     self.DW, numH, DH, int(count), float(l1W), float(l2W), float(l1H), float(l2H),
                     p.gamma, p.zW, p.zH, p.eps, g0, want0, want_end, out)
        err0 = self._expanded_error(out[0], out[1], start) if want0 else None
        err = self._expanded_error(out[2], out[3], (W, H)) if want_end else None
        return err0, err

    def _expanded_error(self, cross, gram, factors):
        """sqrt(||V||^2 - 2 cross + gram) (scikit-learn's square-root Frobenius objective),
        or ``error`` evaluated directly when the expansion cancels: below
        ``_EXPANDED_MIN`` of ||V||^2 the float64 sums keep too few digits of the residual
        (float32 V: its GEMM outputs carry ~1e-7 relative error; measured on 2000 x 1500
        r = 32 Poisson data, residual 0.32 ||V||^2: 2e-8 relative; a near-exact rank-5 fit,
        3e-7 ||V||^2: 50% off in float32, 2e-10 in float64)."""
        if self._xx is None:
            self._xx = float(sq_norm(self.X, max(1, min(self.X.shape[0], self.T))))
        xx = self._xx
        e2 = xx - 2.0 * cross + gram
        if not (e2 >= _EXPANDED_MIN[self.X.dtype.itemsize] * xx):
            return self.error(*factors)
        return float(np.sqrt(e2))

    def _weights(self, W, H):
        p = self.p
        np.dot(W, H, out=self.A)
        B = self.B if self.B is not None else self.D0
        dense_weights(self.X, self.M_arg, self.A, B, self.has_mask, self.B is not None,
                      p.kind, p.beta, p.eps, p.clamp_num, p.clamp_den)

    def update_W(self, W, H, l1, l2, H_fixed=False):
        p = self.p
        chunk = config.CPU_ROW_CHUNK
        if self.plain_frob:
            if self._wcache is None:
                G = np.dot(H, H.T)
                if H_fixed:
                    self._wcache = G
            else:
                G = self._wcache
            frob_update_W(self.X, W, H, G, self.numW, self.DW, l1, l2, p.gamma, p.zW, p.eps, self.parts.shape[0])
            return
        if self.plain_kl:
            s = H.sum(axis=1)
            kl_update_W(self.X, W, H, self.A, s, self.numW, l1, l2, p.zW, p.eps, self.bs, self.parts.shape[0])
            return
        self._weights(W, H)
        np.dot(self.A, H.T, out=self.numW)
        np.dot(self.B, H.T, out=self.DW)
        update_rows(W, self.numW, self.D0, self.s0, self.DW, DEN_MAT, l1, l2, p.gamma, p.zW, p.eps, chunk)

    def update_H(self, W, H, l1, l2):
        p = self.p
        block = config.CPU_COL_BLOCK
        if self.plain_frob:
            frob_parts_H(self.X, W, self.parts, self.gparts, self.trans)
            finish_H(H, self.parts, self.trans, self.numH, self.gparts, self.DH, self.s0, FROB, l1, l2,
                     p.gamma, p.zH, p.eps)
            return
        if self.plain_kl:
            kl_parts_H(self.X, W, H, self.A, self.parts, p.eps, self.bs)
            s = W.sum(axis=0)
            s[s == 0] = 1.0
            finish_H(H, self.parts, False, self.numH, self.gparts, self.DH, s, KL, l1, l2, p.gamma,
                     p.zH, p.eps)
            return
        self._weights(W, H)
        np.dot(W.T, self.A, out=self.numH)
        np.dot(W.T, self.B, out=self.DH)
        update_cols(H, self.numH, self.D0, self.s0, self.DH, DEN_MAT, l1, l2, p.gamma, p.zH, p.eps, block)

    def error(self, W, H) -> float:
        p = self.p
        m, n = self.X.shape
        if self.blas_in_tasks:
            tot = dense_error_parts(self.X, W, H, self.blk, p.kind, p.beta, p.eps).sum(axis=0)
            sum_wh = float(np.dot(W.sum(axis=0), H.sum(axis=1))) if p.kind == KL else 0.0
            return _finish_error(p, tot, sum_wh, m * n, tot[2])
        tot = np.zeros(4)
        buf = None
        for lo, hi in _row_blocks(m, n, self.X.dtype.itemsize):
            if buf is None:
                buf = np.empty((hi - lo, n), self.X.dtype)
            WHb = buf[: hi - lo]
            np.dot(W[lo:hi], H, out=WHb)
            Mb = self.M[lo:hi] if self.has_mask else self.M_arg
            tot += dense_div(self.X[lo:hi], WHb, Mb, self.has_mask, p.kind, p.beta, p.eps).sum(axis=0)
        if self.has_mask:
            return float(np.sqrt(2.0 * max(tot[3], 0.0)))
        sum_wh = float(np.dot(W.sum(axis=0), H.sum(axis=1))) if p.kind == KL else 0.0
        return _finish_error(p, tot, sum_wh, m * n, tot[2])

    def start(self, W, H):
        return W, H

    def factors(self, W, H, H_out=None):
        return W, H

    def release(self):
        self.XT = None


class SparseProblem:
    """A sparse V (CSR, m x n) on the CPU; with a mask, the stored entries are the observed
    ones (V's values gathered there) and ``weights`` their weights.

    The H update works on H^T (n, r), so that both sides read contiguous r-long factor rows.
    A CSC copy of the structure is made once per fit for the H side.
    """

    def __init__(self, X, weights, p: Params, r: int):
        self.p = p
        self.shape = X.shape
        self.t_ptr = self.t_idx = self.t_data = self.t_numW = self.t_numH = None
        self._wsum = self._hsum = None
        self.work = X.nnz + X.shape[0] + X.shape[1]
        self.dtype = X.dtype
        self.indptr, self.indices, self.data = X.indptr, X.indices, X.data
        self.has_w = weights is not None
        if self.has_w:
            import scipy.sparse as sp

            perm = sp.csr_matrix(
                (np.arange(X.nnz, dtype=np.int64), X.indices, X.indptr), shape=X.shape
            ).tocsc()
            order = perm.data
            self.c_indptr, self.c_indices = perm.indptr, perm.indices
            self.c_data = self.data[order]
            self.w = np.ascontiguousarray(weights, dtype=X.dtype)
            self.c_w = self.w[order]
            del perm, order
        elif p.kind == KL and config.CPU_TILE_COLS > 0:
            # unmasked KL: column tiles of the entries serve both updates (no CSC copy)
            shift = max(0, min(16, int(config.CPU_TILE_COLS).bit_length() - 1))
            self.tile = 1 << shift
            T = max(1, -(-X.shape[1] >> shift))
            ptr = np.zeros((T, X.shape[0] + 1), np.int32 if X.nnz < 2**31 - 1 else np.int64)
            self.t_ptr, self.t_idx, self.t_data = tile_build(
                X.indptr, X.indices, X.data, X.shape[1], shift, config.CPU_ROW_CHUNK * 16, ptr)
            self.c_indptr = self.c_indices = self.c_data = None
            self.w = self.c_w = np.empty(0, X.dtype)
            self._tile_split(X, r)
        else:
            Xc = X.tocsc()
            self.c_indptr, self.c_indices, self.c_data = Xc.indptr, Xc.indices, Xc.data
            self.w = self.c_w = np.empty(0, X.dtype)
        self.X = X
        self.s0 = np.empty(0, np.float64)
        self.D0 = np.empty((0, 0), X.dtype)
        self.g0 = np.empty((0, 0), np.float64)
        self._wcache = None

    def _tile_split(self, X, r):
        """Static, non-zero balanced task partitions of the tiled sweeps (rows of W, column
        tiles of H^T), one task per Numba thread, and their numerator scratch."""
        import numba

        m, n = X.shape
        P = max(1, numba.get_num_threads())
        nnz = X.indptr[-1]
        goal = np.arange(P + 1) * (nnz / P)
        rs = np.searchsorted(X.indptr, goal, side="left").astype(np.int64)
        rs[0], rs[-1] = 0, m
        self.t_rsplit = np.maximum.accumulate(np.minimum(rs, m))
        tn = self.t_ptr[:, m] - self.t_ptr[:, 0]
        cum = np.concatenate(([0], np.cumsum(tn)))
        ts = np.searchsorted(cum, goal, side="left").astype(np.int64)
        T = self.t_ptr.shape[0]
        ts[0], ts[-1] = 0, T
        self.t_tsplit = np.maximum.accumulate(np.minimum(ts, T))
        panel = max(1, min(int(config.CPU_TILE_PANEL), m))
        self.t_numW = np.empty((P, panel, r), np.float64)
        self.t_numH = np.empty((P, max(1, min(self.tile, n)), r), np.float64)

    def start(self, W, H):
        return W, np.ascontiguousarray(H.T)

    def factors(self, W, Ht, H_out=None):
        """H from the working H^T, written into ``H_out`` when given (no new r x n array)."""
        if H_out is not None:
            H_out[...] = Ht.T
            return W, H_out
        return W, np.ascontiguousarray(Ht.T)

    def release(self):
        """Drop the CSC copy once the updates are done (the objective needs only CSR)."""
        self.c_indptr = self.c_indices = self.c_data = self.c_w = None
        self.t_ptr = self.t_idx = self.t_data = self.t_numW = self.t_numH = None
        self._wsum = self._hsum = None

    def _run(self, side, F, G, gram, s, D, den_mode, l1, l2, z):
        p = self.p
        if side == "W":
            ip, ix, dx, w = self.indptr, self.indices, self.data, self.w
        else:
            ip, ix, dx, w = self.c_indptr, self.c_indices, self.c_data, self.c_w
        if p.kind == KL and den_mode == DEN_VEC and self.t_ptr is None:
            sparse_update_kl(ip, ix, dx, F, G, s, l1, l2, z, p.eps, config.CPU_ROW_CHUNK)
            return
        if p.kind == KL and den_mode == DEN_VEC:
            if side == "W":
                out = _tiled_kl(F, G)[0](self.t_ptr, self.t_idx, self.t_data, self.tile, F, G, s, l1,
                                 l2, z, p.eps, self.t_rsplit, self.t_numW, False)
                self._wsum = (F, out[:, 2:].sum(axis=0))
            else:
                out = _tiled_kl(G, F)[1](self.t_ptr, self.t_idx, self.t_data, self.tile, G, F, s, l1,
                                 l2, z, p.eps, self.t_tsplit, self.t_numH, False)
                self._hsum = (F, out[:, 2:].sum(axis=0))
            return
        sparse_update(ip, ix, dx, w, self.has_w, F, G, gram, s, D, p.kind, den_mode,
                      p.beta, l1, l2, p.gamma, z, p.eps, p.clamp_num, p.clamp_den,
                      config.CPU_ROW_CHUNK)

    def _beta_dens(self, W, Ht, side):
        """Dense denominators of sparse general beta: pow(WH) @ H^T or pow(WH)^T @ W,
        formed over bounded row blocks of WH (as scikit-learn's row loop, but with BLAS)."""
        p = self.p
        m, n = self.shape
        r = W.shape[1]
        out = np.empty((m, r) if side == "W" else (n, r), W.dtype)
        if side == "H":
            out[:] = 0
        for lo, hi in _row_blocks(m, n, W.dtype.itemsize):
            WHb = np.dot(W[lo:hi], Ht.T)
            pow_inplace(WHb, p.beta - 1.0, p.clamp_den, p.eps)
            if side == "W":
                np.dot(WHb, Ht, out=out[lo:hi])
            else:
                out += np.dot(WHb.T, W[lo:hi])
        return out

    def update_W(self, W, Ht, l1, l2, H_fixed=False):
        p = self.p
        if self.has_w:
            self._run("W", W, Ht, self.g0, self.s0, self.D0, DEN_ACC, l1, l2, p.zW)
        elif p.kind == FROB:
            gram = self._wcache if self._wcache is not None else np.dot(Ht.T, Ht).astype(np.float64)
            if H_fixed:
                self._wcache = gram
            self._run("W", W, Ht, gram, self.s0, self.D0, DEN_GRAM, l1, l2, p.zW)
        elif p.kind == KL:
            s = self._colsum(Ht, self._hsum)
            self._run("W", W, Ht, self.g0, s, self.D0, DEN_VEC, l1, l2, p.zW)
        else:
            D = self._cached_D(W, Ht, H_fixed)
            self._run("W", W, Ht, self.g0, self.s0, D, DEN_MAT, l1, l2, p.zW)

    def error_then_update_W(self, W, Ht, l1, l2, H_fixed=False):
        """The objective at (W, H) and then ``update_W``, in one pass over the non-zeros for
        unmasked KL; None (nothing done) otherwise."""
        p = self.p
        if self.has_w or p.kind != KL:
            return None
        if self.t_ptr is None:
            m, n = self.shape
            sum_wh = float(np.dot(W.sum(axis=0), Ht.sum(axis=0)))
            s = Ht.sum(axis=0).astype(np.float64)
            maxrow = int(np.diff(self.indptr).max()) if m else 0
            parts = sparse_update_kl_err(self.indptr, self.indices, self.data, W, Ht, s, l1, l2,
                                         p.zW, p.eps, config.CPU_ROW_CHUNK, max(maxrow, 1)).sum(axis=0)
            return _finish_error(p, parts, sum_wh, m * n, 0.0)
        m, n = self.shape
        s = self._colsum(Ht, self._hsum)
        sum_wh = float(np.dot(W.sum(axis=0), s))
        out = _tiled_kl(W, Ht)[0](self.t_ptr, self.t_idx, self.t_data, self.tile, W, Ht, s, l1, l2,
                         p.zW, p.eps, self.t_rsplit, self.t_numW, True)
        self._wsum = (W, out[:, 2:].sum(axis=0))
        return _finish_error(p, out[:, :2].sum(axis=0), sum_wh, m * n, 0.0)

    @staticmethod
    def _colsum(A, cached):
        """Column sums of a factor (float64): those its last tiled update returned when
        ``cached`` is for this very array (only those kernels write it), else numpy's."""
        if cached is not None and cached[0] is A:
            return cached[1].copy()
        return A.sum(axis=0).astype(np.float64)

    def _cached_D(self, W, Ht, H_fixed):
        # the W-side beta denominator depends on W too: never cached
        return self._beta_dens(W, Ht, "W")

    def update_H(self, W, Ht, l1, l2):
        p = self.p
        if self.has_w:
            self._run("H", Ht, W, self.g0, self.s0, self.D0, DEN_ACC, l1, l2, p.zH)
        elif p.kind == FROB:
            gram = np.dot(W.T, W).astype(np.float64)
            self._run("H", Ht, W, gram, self.s0, self.D0, DEN_GRAM, l1, l2, p.zH)
        elif p.kind == KL:
            s = self._colsum(W, self._wsum)
            s[s == 0] = 1.0
            self._run("H", Ht, W, self.g0, s, self.D0, DEN_VEC, l1, l2, p.zH)
        else:
            D = self._beta_dens(W, Ht, "H")
            self._run("H", Ht, W, self.g0, self.s0, D, DEN_MAT, l1, l2, p.zH)

    def update_H_then_error(self, W, Ht, l1, l2):
        """``update_H`` and then the objective at (W, the new H), in one pass over the
        non-zeros for unmasked KL (column tiles); None (nothing done) otherwise."""
        p = self.p
        if self.t_ptr is None:
            return None
        m, n = self.shape
        sw = self._colsum(W, self._wsum)
        s = sw.copy()
        s[s == 0] = 1.0
        out = _tiled_kl(W, Ht)[1](self.t_ptr, self.t_idx, self.t_data, self.tile, W, Ht, s, l1, l2,
                         p.zH, p.eps, self.t_tsplit, self.t_numH, True)
        self._hsum = (Ht, out[:, 2:].sum(axis=0))
        sum_wh = float(np.dot(sw, self._hsum[1]))
        return _finish_error(p, out[:, :2].sum(axis=0), sum_wh, m * n, 0.0)

    def error(self, W, Ht) -> float:
        p = self.p
        m, n = self.shape
        if p.kind == FROB and not self.has_w:
            norm_X = float(np.dot(self.data, self.data))
            norm_WH = float(np.dot(np.dot(np.dot(W.T, W), Ht.T).ravel(), Ht.T.ravel()))
            cross = float(np.dot(np.asarray(self.X @ Ht).ravel(), W.ravel()))
            res = (norm_X + norm_WH - 2.0 * cross) / 2.0
            with np.errstate(invalid="ignore"):
                return float(np.sqrt(np.float64(res * 2)))
        if p.kind == KL and not self.has_w:
            maxrow = int(np.diff(self.indptr).max()) if m else 0
            parts = sparse_div_kl(self.indptr, self.indices, self.data, W, Ht, p.eps,
                                  config.CPU_ROW_CHUNK * 4, max(maxrow, 1)).sum(axis=0)
        else:
            parts = sparse_div(self.indptr, self.indices, self.data, self.w, self.has_w, W, Ht,
                               p.kind, p.beta, p.eps).sum(axis=0)
        if self.has_w:
            return float(np.sqrt(2.0 * max(parts[3], 0.0)))
        sum_wh = float(np.dot(W.sum(axis=0), Ht.sum(axis=0))) if p.kind == KL else 0.0
        sum_whb = 0.0
        if p.kind == BETA:
            for lo, hi in _row_blocks(m, n, W.dtype.itemsize):
                sum_whb += float((np.dot(W[lo:hi], Ht.T) ** p.beta).sum())
        return _finish_error(p, parts, sum_wh, m * n, sum_whb)
