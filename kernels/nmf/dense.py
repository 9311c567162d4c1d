"""Numba CPU kernels of the dense multiplicative updates (Lee & Seung 2001, eqs. (4)-(5);
Fevotte & Idier 2011 for general beta).

Every update of a factor F (W, or H) is one fused parallel pass over the rows of F (columns
of H) that

1. forms the denominator of the multiplicative rule (from a Gram matrix, a vector of sums
   or a precomputed matrix),
2. adds the L1 / L2 penalties, replaces zero denominators by ``eps``,
3. raises the ratio to the Fevotte-Idier exponent gamma(beta) and multiplies F in place,
4. sets entries below float64's eps to zero where scikit-learn does (beta < 1 for W,
   beta <= 1 for H),

without any m x n or r x n temporary (``update_rows`` / ``update_cols``; the per-entry
arithmetic is ``terms.py``'s). GEMMs (W^T V, V H^T, W H) go through BLAS.

Plain Frobenius and plain KL (no mask) call one-thread BLAS inside the Numba tasks
(``frob_update_W``, ``kl_update_W``, ...), and dense Frobenius without a mask runs whole
iterations in one parallel call (``frob_iterate``); see the section comments below.
The launchers that drive these kernels are ``cpu.DenseProblem``'s methods.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .._blas import gemm
from .common import DEN_GRAM, DEN_VEC, FASTMATH as _FM, FROB
from .common import span as _span
from .terms import den_weight_cpu as _den_weight
from .terms import finish1 as _finish1
from .terms import finish_cpu as _finish
from .terms import num_weight_cpu as _num_weight


# --------------------------------------------------------------------------- dense updates

@numba.njit(cache=True, nogil=True)
def _rows_task(F, num, G, s, D, den_mode, l1, l2, gamma, zthr, eps, lo, hi):
    # one task's rows; a plain function, not inlined into the parallel loop: compiled
    # outside the parfor, its loops vectorise (inside it they do not)
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
# thread for the fit (``cpu.threads_for``): one thread pool instead of two that busy-wait
# against each other on a small machine (an elementwise pass right after a multi-threaded
# BLAS call competes with BLAS's still-spinning workers).

@numba.njit(cache=True, nogil=True, error_model="numpy")
def _finish_block1(F, num, den, l1, l2, zthr, eps):
    # error_model="numpy": no zero-divisor branch (den is never 0 here), so the loop
    # vectorises; _finish itself must not be compiled this way: its pow branch would then
    # be evaluated for every entry
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
    vectorises."""
    p, n = A.shape
    for i in range(p):
        Ai = A[i]
        Xi = X[i]
        for j in range(n):
            a = Ai[j]
            if a < eps:
                a = eps
            Ai[j] = Xi[j] / a



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
    gparts[t] = W_t^T W_t over each task's rows (summed in ``finish_H``). ``trans`` is the
    caller's choice of operand order: one-thread OpenBLAS sgemm is faster at X_t^T W_t,
    dgemm at W_t^T X_t."""
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



# --------------------------------------------------------------------------- dense Frobenius, fused
# ``frob_iterate`` runs whole Frobenius iterations in one Numba call: per iteration one
# parallel pass over row blocks of V (the W update) and one over column blocks (the H
# update), every product a single-threaded BLAS call on the task's block (``_blas.gemm``:
# sub-blocks with a leading dimension, no copies). The r x r Gram matrices each update needs
# are produced by the other update while its block is in cache: the W pass leaves the
# tasks' W_t^T W_t (summed by every H task: W^T W), the H pass their H_c H_c^T (H H^T for
# the next W pass), so no pass re-reads a whole factor and no Python runs between updates.
# H is kept transposed (H^T, n x r) for the V H^T product: OpenBLAS' one-thread sgemm
# multiplies a row-major V by a contiguous n x r right operand faster than by H with the
# transpose flag.
#
# ``VT`` (float32): W^T V as (V^T W)^T from a transposed copy of V made once per fit (one
# m x n array per fit, none per iteration; ``config.DENSE_VT_MAX_BYTES`` bounds it).
# One-thread OpenBLAS sgemm is markedly slower with V as the transposed operand (W_t^T V_t,
# V_t^T W_t, column blocks alike) than at V^T W from a contiguous V^T, which runs as fast as
# V H^T. float64 is the other way round: no copy, column blocks of V. With the copy the H
# pass works on H^T's rows (the numerator V^T W, the denominator H^T (W^T W), the update)
# and H is written back once at the end.

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
    # H^T and H H^T for the first W update: serial (little work; two parallel loops fewer
    # keep this function's compile time down, each parallel loop takes long to compile)
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
    count that LLVM unrolls, where a plain tiled loop does not)."""
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
        # contiguous sums first, then one transposing copy (a strided sum over t innermost
        # would take most of this function's time)
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

@numba.njit(inline="always")
def _transpose_small(H, HT):
    r, n = H.shape
    for j in range(n):
        for k in range(r):
            HT[j, k] = H[k, j]

