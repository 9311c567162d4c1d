"""Numba CPU kernels of the NMF objective: scikit-learn's ``_beta_divergence`` (square-root
form after ``common.finish_error``) from per-entry terms (``terms.div_terms``), without
forming W H in full: dense V by bounded row blocks of W H, sparse V at its stored entries
only (W H there is an r-long dot product, never stored). Sums are float64.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from .common import FASTMATH as _FM, FROB, KL
from .common import span as _span
from .terms import div_terms_cpu as _terms


@numba.njit(parallel=True, cache=True, nogil=True)
def dense_error_parts(X, W, H, blk, kind, beta, eps):
    """Per-task partial sums of the divergence terms (``terms.div_terms``) of plain dense V: WH
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
    row): the logs by ``_sum_xlog``, in vectorised loops instead of one libm call per entry."""
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

