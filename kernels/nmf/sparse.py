"""Numba CPU kernels of the sparse multiplicative updates (Lee & Seung 2001; Fevotte & Idier
2011), on V's stored entries only.

The general kernel (``sparse_update``) walks V's non-zeros row by row (CSR, for W) and
column by column (a CSC copy made once per fit, for H^T). Each task owns whole rows of the
factor it updates, so the accumulation ``num_i = sum_j c(V_ij, (WH)_ij) H_:j`` needs no
atomics; (WH)_ij is an r-long dot product evaluated only at the non-zeros and never stored
(no nnz-sized temporaries). Accumulators are float64 (as scikit-learn's
``_special_sparse_dot``), also for float32 V. Unmasked KL has its own kernels: the plain
CSR / CSC sweeps (``sparse_update_kl``) and the tiled sweeps below, with 8-lane vector
variants. The launcher is ``cpu.SparseProblem``.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from .._simd import vfma, vload, vsplat, vstore, vsum, vzero
from .common import DEN_ACC, DEN_GRAM, DEN_MAT, DEN_VEC, FASTMATH as _FM, FROB
from .divergence import _sum_xlog
from .terms import den_weight_cpu as _den_weight
from .terms import finish1 as _finish1
from .terms import finish_cpu as _finish
from .terms import num_weight_cpu as _num_weight


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
    own small kernel: one dot and one axpy per stored entry, both vectorised (the general
    kernel's branches on the kind and the mask keep its loops scalar)."""
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
    initial objective without its own pass over the non-zeros."""
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
# Unmasked sparse KL gathers one r-long row of the other factor per stored entry. For large
# V the whole gathered factor (H^T: n x r, W: m x r) misses L2, so the plain CSR / CSC
# sweeps are bound by L3 latency. The entries are therefore regrouped once per fit into
# column tiles of ``TILE`` columns (a tile of H^T: TILE x r, in L2): tile t holds, row by
# row, the entries of its columns (``ptr[t, i]``..``ptr[t, i + 1]``, local column indices
# as uint16). The W update walks panels of rows (parallel) and inside a panel the tiles, so
# its gathers hit the L2-resident tile of H^T; the H update walks the tiles (parallel, each
# task owns its columns' numerators) and streams W row by row. This one structure replaces
# the CSC copy.


@numba.njit(parallel=True, cache=True, nogil=True)
def tile_build(indptr, indices, data, n, shift, chunk, ptr):
    """Regroup a CSR matrix (m x n) into column tiles of 2^shift columns (shifts and masks,
    cheaper than integer divisions): returns (ptr (T, m + 1) int64, local column
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
# Per stored entry the scalar loops above compile to many instructions (index wraparound
# checks, a runtime-length dot product dispatched through vector/remainder loops, 256-bit
# vectors). Written with kernels._simd on flat offsets, an entry is r / 8 vector loads of
# the gathered row, r / 8 fused multiply-adds, one horizontal sum, one division and r / 8
# read-modify-writes of the numerator row.

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


def tiled_kl_sweeps(W, Ht):
    """(W update, H update) of the tiled sparse KL sweeps for these factors: the 8-lane
    kernels for float64 C-contiguous factors with r a multiple of 8, else the scalar ones."""
    if (W.dtype == np.float64 and Ht.dtype == np.float64 and W.shape[1] % 8 == 0
            and W.flags.c_contiguous and Ht.flags.c_contiguous):
        return tiled_kl_W_vec, tiled_kl_H_vec
    return tiled_kl_W, tiled_kl_H

