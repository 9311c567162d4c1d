"""CPU launchers of the NMF kernels: the problem objects that scikit-learn's MU loop
(``run_loop`` in the package) drives, and the batched launcher.

* ``DenseProblem``, ``SparseProblem``: one V on the CPU with its buffers (allocated once per
  fit) and its ``update_W`` / ``update_H`` / ``error`` steps, each one or a few calls of the
  Numba kernels in ``dense.py``, ``sparse.py`` and ``divergence.py``; ``cpu_problem`` builds
  the right one for an input (and the observed-entry pattern of a masked sparse V).
* ``threads_for``: the thread settings of a fit (one Numba thread for small problems,
  one-thread BLAS where BLAS runs inside Numba tasks).
* ``batched_fit``: B problems at once on ``batched.batched_fit``.

``cuda.py`` holds the numba.cuda twins (``CudaDenseProblem``, ``CudaSparseProblem``,
``cuda.batched_fit``).
"""
from __future__ import annotations

import numba
import numpy as np

from .._blas import single_threaded_blas
from . import batched, config
from .common import BETA, DEN_ACC, DEN_GRAM, DEN_MAT, DEN_VEC, FROB, KL, Params, finish_error
from .common import is_host_sparse
from .dense import (dense_weights, finish_H, frob_iterate, frob_parts_H, frob_update_W, kl_parts_H,
                    kl_update_W, pow_inplace, sq_norm, transpose_into, update_cols, update_rows)
from .divergence import dense_div, dense_error_parts, sparse_div, sparse_div_kl
from .sparse import sparse_update, sparse_update_kl, sparse_update_kl_err, tile_build, tiled_kl_sweeps

__all__ = ["DenseProblem", "SparseProblem", "batched_fit", "cpu_problem", "threads_for"]


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
        # ``dense.frob_update_W``), so all their work counts; the other losses: the O(m n)
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
            return finish_error(p, tot, sum_wh, m * n, tot[2])
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
        return finish_error(p, tot, sum_wh, m * n, tot[2])

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
                sweep_W = tiled_kl_sweeps(F, G)[0]
                out = sweep_W(self.t_ptr, self.t_idx, self.t_data, self.tile, F, G, s, l1, l2, z,
                              p.eps, self.t_rsplit, self.t_numW, False)
                self._wsum = (F, out[:, 2:].sum(axis=0))
            else:
                sweep_H = tiled_kl_sweeps(G, F)[1]
                out = sweep_H(self.t_ptr, self.t_idx, self.t_data, self.tile, G, F, s, l1, l2, z,
                              p.eps, self.t_tsplit, self.t_numH, False)
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
            return finish_error(p, parts, sum_wh, m * n, 0.0)
        m, n = self.shape
        s = self._colsum(Ht, self._hsum)
        sum_wh = float(np.dot(W.sum(axis=0), s))
        sweep_W = tiled_kl_sweeps(W, Ht)[0]
        out = sweep_W(self.t_ptr, self.t_idx, self.t_data, self.tile, W, Ht, s, l1, l2, p.zW, p.eps,
                      self.t_rsplit, self.t_numW, True)
        self._wsum = (W, out[:, 2:].sum(axis=0))
        return finish_error(p, out[:, :2].sum(axis=0), sum_wh, m * n, 0.0)

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
        sweep_H = tiled_kl_sweeps(W, Ht)[1]
        out = sweep_H(self.t_ptr, self.t_idx, self.t_data, self.tile, W, Ht, s, l1, l2, p.zH, p.eps,
                      self.t_tsplit, self.t_numH, True)
        self._hsum = (Ht, out[:, 2:].sum(axis=0))
        sum_wh = float(np.dot(sw, self._hsum[1]))
        return finish_error(p, out[:, :2].sum(axis=0), sum_wh, m * n, 0.0)

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
        return finish_error(p, parts, sum_wh, m * n, sum_whb)


# --------------------------------------------------------------------------- building and running

def cpu_problem(V, mask, beta, r):
    """The CPU problem object for V (numpy, or scipy.sparse in any format; CSR is used) and
    an optional mask. Masked sparse V: the mask's stored entries are the observed ones, V's
    values gathered there (V's implicit zeros at them count as observed zeros)."""
    p = Params(beta)
    if is_host_sparse(V):
        import scipy.sparse as sp

        X = V.tocsr() if V.format != "csr" else V
        if not X.data.flags.writeable:  # Numba's kernels are typed for writeable arrays
            X = X.copy()
        if not X.has_canonical_format:  # duplicates would be fitted as separate entries
            X = X.copy() if X is V else X
            X.sum_duplicates()
        weights = None
        if mask is not None:
            Mc = sp.csr_matrix(mask) if not sp.issparse(mask) else mask.tocsr()
            Mc = Mc.astype(X.dtype)
            Mc.sum_duplicates()
            Mc.eliminate_zeros()
            rows = np.repeat(np.arange(Mc.shape[0]), np.diff(Mc.indptr))
            vals = np.asarray(X[rows, Mc.indices]).ravel().astype(X.dtype) if Mc.nnz else np.empty(0, X.dtype)
            X = sp.csr_matrix((vals, Mc.indices.copy(), Mc.indptr.copy()), shape=X.shape)
            weights = Mc.data
        return SparseProblem(X, weights, p, r)
    M = None
    if mask is not None:
        M = mask.toarray() if is_host_sparse(mask) else np.asarray(mask)
        M = np.ascontiguousarray(M, dtype=V.dtype)
        if not M.flags.writeable:
            M = M.copy()
    if not V.flags.writeable:  # Numba's kernels are typed for writeable arrays: one copy
        V = V.copy()
    return DenseProblem(V, M, p, r)


class threads_for:
    """Context manager for the thread settings of a fit: small CPU fits run on one Numba
    thread (see ``config.CPU_SERIAL_WORK``); problems that call BLAS inside their Numba tasks
    (``blas_in_tasks``) get single-threaded BLAS meanwhile. Any other problem (a device
    problem) leaves both as they are."""

    def __init__(self, problem, r):
        work = getattr(problem, "work", None)
        self.serial = work is not None and work * r < config.CPU_SERIAL_WORK
        self.saved = None
        self.blas = None
        self.one_blas = bool(getattr(problem, "blas_in_tasks", False))

    def __enter__(self):
        if self.serial:
            self.saved = numba.get_num_threads()
            numba.set_num_threads(1)
        if self.one_blas:
            self.blas = single_threaded_blas()
            self.blas.__enter__()
        return self

    def __exit__(self, *exc):
        if self.blas is not None:
            self.blas.__exit__(*exc)
            self.blas = None
        if self.saved is not None:
            numba.set_num_threads(self.saved)
            self.saved = None
        return False


def batched_fit(V, W, H, mask, p: Params, max_iter, tol, regs):
    """B problems V (B, m, n) ~ W H on ``batched.batched_fit``, W and H updated in place;
    ``regs``: the four penalties (l1_W, l1_H, l2_W, l2_H) as (B,) float64 arrays. Problems
    that share their penalties run in one parallel call, per-problem penalties one call per
    problem. Returns (n_iter (B,) int64, error (B,) float64)."""
    nb = V.shape[0]
    dtype = V.dtype
    has_mask = mask is not None
    M = np.ascontiguousarray(mask, dtype=dtype) if has_mask else np.empty((1, 1, 1), dtype)
    X = np.ascontiguousarray(V)
    n_iter = np.empty(nb, np.int64)
    err = np.empty(nb, np.float64)
    if all(float(x.min()) == float(x.max()) for x in regs):
        batched.batched_fit(X, M, has_mask, W, H, p.kind, p.beta, p.gamma, int(max_iter),
                            float(tol), *(float(x[0]) for x in regs), p.eps, p.clamp_num,
                            p.clamp_den, p.zW, p.zH, n_iter, err)
    else:  # per-problem penalties: one call per distinct set (rare)
        for b in range(nb):
            batched.batched_fit(X[b:b + 1], M[b:b + 1] if has_mask else M, has_mask,
                                W[b:b + 1], H[b:b + 1], p.kind, p.beta, p.gamma, int(max_iter),
                                float(tol), *(float(x[b]) for x in regs), p.eps, p.clamp_num,
                                p.clamp_den, p.zW, p.zH, n_iter[b:b + 1], err[b:b + 1])
    return n_iter, err
