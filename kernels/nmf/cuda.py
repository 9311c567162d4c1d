"""numba.cuda twins of the NMF CPU kernels (``dense.py``, ``sparse.py``, ``divergence.py``)
and of their launchers (``cpu.py``): same passes, same arithmetic rules; the per-entry
arithmetic is the very source of the CPU kernels' (``terms.py``), compiled as device
functions.

* GEMMs (V H^T, W^T V, W H, the Gram matrices, batched ``matmul`` for the batched solver)
  go to cuBLAS through CuPy; without CuPy (and under the simulator) a plain numba.cuda
  GEMM kernel stands in.
* ``update_kernel``: the fused elementwise step F <- F * (num / (den + l1 + l2 F))^gamma
  with eps for zero denominators and the zeroing thresholds (one thread per entry; the
  Gram-matrix denominators W (H H^T) and (W^T W) H are cuBLAS GEMMs into a p x r buffer
  first, since one thread per entry cannot read a row of F that others update in place).
* ``sparse_update_kernel``: one thread per row of the compressed matrix (CSR for W, CSC for
  H^T) walks its stored entries, evaluates (WH)_ij = F_i . G_j there only, accumulates the
  numerator (and for masks the denominator) in a p x r float64 buffer owned by that row,
  and applies the update to its own row of F: no atomics, no nnz-sized temporaries.
* ``dense_weights_kernel``: WH -> M V WH^(beta-2) in place (and M WH^(beta-1)).
* ``div_dense_kernel`` / ``div_sparse_kernel``: per-row partial sums of the objective.

The batched solver runs B problems with batched GEMMs and the same elementwise kernels over
the stacked (B*m, .) views; a per-problem flag freezes the problems that have converged.
"""
from __future__ import annotations

import numpy as np

from .. import _cuda
from . import config, terms
from .common import BETA, DEN_ACC, DEN_GRAM, DEN_MAT, DEN_VEC, FROB, KL, finish_error

_cuda.numba_cuda()  # raises the install hint when neither a GPU nor the simulator is there
from numba import cuda  # noqa: E402  (module global: the simulator swaps it for its fake)

# the per-entry arithmetic: the same source as the CPU kernels' (terms.py), compiled as
# device functions
_num_weight = cuda.jit(device=True)(terms.num_weight)
_den_weight = cuda.jit(device=True)(terms.den_weight)
_finish = cuda.jit(device=True)(terms.finish)
_terms = cuda.jit(device=True)(terms.div_terms)


# --------------------------------------------------------------------------- kernels

@cuda.jit
def update_kernel(F, num, D, s, den_mode, vec_axis, l1, l2, gamma, zthr, eps, active, group):
    """F (p, q) in place: den = D[i, k] (DEN_MAT) or s[k] / s[i] (DEN_VEC, by vec_axis)."""
    p, q = F.shape
    t = cuda.grid(1)
    if t >= p * q:
        return
    i = t // q
    k = t % q
    if active[i // group] == 0:
        return
    if den_mode == DEN_MAT:
        d = D[i, k]
    elif vec_axis == 1:
        d = s[k]
    else:
        d = s[i]
    F[i, k] = _finish(F[i, k], num[i, k], d, l1, l2, gamma, zthr, eps)


@cuda.jit
def dense_weights_kernel(X, M, A, B, has_mask, want_b, kind, beta, eps, clamp_num, clamp_den):
    m, n = A.shape
    t = cuda.grid(1)
    if t >= m * n:
        return
    i = t // n
    j = t % n
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


@cuda.jit
def pow_kernel(A, pw, clamp, eps):
    m, n = A.shape
    t = cuda.grid(1)
    if t >= m * n:
        return
    i = t // n
    j = t % n
    a = A[i, j]
    if clamp and a < eps:
        a = eps
    A[i, j] = a ** pw


@cuda.jit
def sparse_update_kernel(indptr, indices, data, weights, has_w, F, G, gram, s, D, num, den,
                         kind, den_mode, beta, l1, l2, gamma, zthr, eps, clamp_num, clamp_den):
    p, r = F.shape
    i = cuda.grid(1)
    if i >= p:
        return
    for k in range(r):
        num[i, k] = 0.0
        den[i, k] = 0.0
    need_wh = kind != FROB or den_mode == DEN_ACC
    for e in range(indptr[i], indptr[i + 1]):
        j = indices[e]
        wh = 0.0
        if need_wh:
            for k in range(r):
                wh += F[i, k] * G[j, k]
        c = _num_weight(data[e], wh, kind, beta, eps, clamp_num)
        if has_w:
            w = weights[e]
            c *= w
            b = w * _den_weight(wh, kind, beta, eps, clamp_den)
            for k in range(r):
                num[i, k] += c * G[j, k]
                den[i, k] += b * G[j, k]
        else:
            for k in range(r):
                num[i, k] += c * G[j, k]
    if den_mode == DEN_GRAM:
        for k in range(r):
            acc = 0.0
            for l in range(r):
                acc += F[i, l] * gram[l, k]
            den[i, k] = acc
    elif den_mode == DEN_VEC:
        for k in range(r):
            den[i, k] = s[k]
    elif den_mode == DEN_MAT:
        for k in range(r):
            den[i, k] = D[i, k]
    for k in range(r):
        F[i, k] = _finish(F[i, k], num[i, k], den[i, k], l1, l2, gamma, zthr, eps)


@cuda.jit
def div_dense_kernel(X, WH, M, has_mask, kind, beta, eps, out):
    m, n = WH.shape
    i = cuda.grid(1)
    if i >= m:
        return
    a0 = 0.0
    a1 = 0.0
    a2 = 0.0
    a3 = 0.0
    for j in range(n):
        t0, t1, t2, full = _terms(X[i, j], WH[i, j], kind, beta, eps)
        if has_mask:
            a3 += M[i, j] * full
        else:
            a0 += t0
            a1 += t1
            a2 += t2
    out[i, 0] = a0
    out[i, 1] = a1
    out[i, 2] = a2
    out[i, 3] = a3


@cuda.jit
def div_sparse_kernel(indptr, indices, data, weights, has_w, F, G, kind, beta, eps, out):
    p, r = F.shape
    i = cuda.grid(1)
    if i >= p:
        return
    a0 = 0.0
    a1 = 0.0
    a3 = 0.0
    for e in range(indptr[i], indptr[i + 1]):
        j = indices[e]
        wh = 0.0
        for k in range(r):
            wh += F[i, k] * G[j, k]
        t0, t1, t2, full = _terms(data[e], wh, kind, beta, eps)
        if has_w:
            a3 += weights[e] * full
        else:
            a0 += t0
            a1 += t1
    out[i, 0] = a0
    out[i, 1] = a1
    out[i, 2] = 0.0
    out[i, 3] = a3


@cuda.jit
def gemm_kernel(A, B, C, ta, tb):
    """Fallback C = op(A) op(B) (no CuPy): one thread per entry of C."""
    i, j = cuda.grid(2)
    p, q = C.shape
    if i >= p or j >= q:
        return
    kk = A.shape[0] if ta else A.shape[1]
    acc = 0.0
    for k in range(kk):
        a = A[k, i] if ta else A[i, k]
        b = B[j, k] if tb else B[k, j]
        acc += a * b
    C[i, j] = acc


@cuda.jit
def gemm_batched_kernel(A, B, C, ta, tb):
    """Fallback batched C[b] = op(A[b]) op(B[b])."""
    bb, i, j = cuda.grid(3)
    nb, p, q = C.shape
    if bb >= nb or i >= p or j >= q:
        return
    kk = A.shape[1] if ta else A.shape[2]
    acc = 0.0
    for k in range(kk):
        a = A[bb, k, i] if ta else A[bb, i, k]
        b = B[bb, j, k] if tb else B[bb, k, j]
        acc += a * b
    C[bb, i, j] = acc


@cuda.jit
def broadcast_sums_kernel(F, out, axis_rows, zero_to_one, group_rows, group_out):
    """Batched KL denominators: per problem, the sums of H's rows (W side) or of W's
    columns (H side), broadcast into ``out`` (a p x q MAT denominator)."""
    p, q = out.shape
    t = cuda.grid(1)
    if t >= p * q:
        return
    i = t // q
    k = t % q
    b = i // group_out
    acc = 0.0
    if axis_rows:
        # W side: out[b*m + i', k] = sum_j H[b*r + k, j]
        n = F.shape[1]
        for j in range(n):
            acc += F[b * group_rows + k, j]
    else:
        # H side: out[b*r + k', j] = sum_i W[b*m + i, k'] ; here k indexes columns j of H
        kp = i % group_out
        for ii in range(group_rows):
            acc += F[b * group_rows + ii, kp]
        if zero_to_one and acc == 0:
            acc = 1.0
    out[i, k] = acc


# --------------------------------------------------------------------------- launch glue

def _cupy():
    return _cuda._cupy_or_none()


def _dev(x):
    return _cuda.as_device(x)


class Device:
    """Allocation, GEMMs and launches on one stream (CuPy when present)."""

    def __init__(self, like, stream=None):
        self.like = like
        self.cp = _cupy() if _cuda.is_cupy(like) else None
        self.stream = _cuda.stream_for(stream, like=like)
        self.threads = config.CUDA_THREADS

    def empty(self, shape, dtype):
        return _cuda.empty(shape, dtype, like=self.like)

    def zeros(self, shape, dtype):
        if self.cp is not None:
            return self.cp.zeros(shape, dtype)
        return cuda.to_device(np.zeros(shape, dtype))

    def upload(self, a):
        if self.cp is not None:
            return self.cp.asarray(a)
        return cuda.to_device(np.ascontiguousarray(a))

    def launch1(self, kernel, n, *args):
        args = tuple(_dev(a) if _is_array(a) else a for a in args)
        kernel[_cuda.blocks_for(n, self.threads), self.threads, self.stream](*args)

    def gemm(self, A, B, out, ta=False, tb=False):
        if self.cp is not None:
            a = A.swapaxes(-1, -2) if ta else A
            b = B.swapaxes(-1, -2) if tb else B
            self.cp.matmul(a, b, out=out)
            return out
        tile = config.CUDA_GEMM_TILE
        if len(out.shape) == 2:
            p, q = out.shape
            grid = (_cuda.blocks_for(p, tile), _cuda.blocks_for(q, tile))
            gemm_kernel[grid, (tile, tile), self.stream](_dev(A), _dev(B), _dev(out), ta, tb)
        else:
            nb, p, q = out.shape
            t = max(1, tile // 2)
            grid = (nb, _cuda.blocks_for(p, t), _cuda.blocks_for(q, t))
            gemm_batched_kernel[grid, (1, t, t), self.stream](_dev(A), _dev(B), _dev(out), ta, tb)
        return out

    def to_host(self, a) -> np.ndarray:
        if self.cp is not None:
            return self.cp.asnumpy(a)
        return _dev(a).copy_to_host(stream=self.stream) if not _is_fake(a) else a.copy_to_host()

    def col_sums(self, F):
        """F.sum(axis=0) of a (p, q) device array, as a float64 host vector (q small)."""
        if self.cp is not None:
            return self.cp.asnumpy(F.sum(axis=0, dtype=np.float64))
        return self.to_host(F).sum(axis=0, dtype=np.float64)

    def row_sums(self, F):
        if self.cp is not None:
            return self.cp.asnumpy(F.sum(axis=1, dtype=np.float64))
        return self.to_host(F).sum(axis=1, dtype=np.float64)


def _is_fake(a) -> bool:
    from .._backend import is_simulated_device_array

    return is_simulated_device_array(a)


def _is_array(a) -> bool:
    return hasattr(a, "shape") and not isinstance(a, (np.ndarray, np.generic)) and hasattr(a, "dtype")


class DeviceCSR:
    """A CSR matrix whose arrays live on the device (cupyx.scipy.sparse.csr_matrix has the
    same attributes and is accepted as is). ``from_scipy`` uploads a host matrix (tests)."""

    format = "csr"

    def __init__(self, indptr, indices, data, shape):
        self.indptr, self.indices, self.data = indptr, indices, data
        self.shape = tuple(shape)
        self.dtype = np.dtype(data.dtype)

    @property
    def nnz(self) -> int:
        return int(self.data.shape[0])

    @classmethod
    def from_scipy(cls, X):
        X = X.tocsr()
        return cls(cuda.to_device(X.indptr), cuda.to_device(X.indices), cuda.to_device(X.data), X.shape)

    def tocsr(self):
        return self

    def tocoo(self):
        import scipy.sparse as sp

        host = sp.csr_matrix((self.data.copy_to_host(), self.indices.copy_to_host(),
                              self.indptr.copy_to_host()), shape=self.shape)
        return host.tocoo()


def _host_csr(V):
    import scipy.sparse as sp

    if isinstance(V, DeviceCSR):
        return sp.csr_matrix((V.data.copy_to_host(), V.indices.copy_to_host(), V.indptr.copy_to_host()),
                             shape=V.shape)
    return V.get().tocsr()  # cupyx


def _partial_error(p, dev, parts_dev, sum_wh, n_entries, sum_whb, has_mask):
    parts = dev.to_host(parts_dev).sum(axis=0)
    if has_mask:
        return float(np.sqrt(2.0 * max(parts[3], 0.0)))
    return finish_error(p, parts, sum_wh, n_entries, sum_whb if sum_whb is not None else parts[2])


class CudaDenseProblem:
    """Device twin of ``cpu.DenseProblem`` (same buffers, same passes)."""

    def __init__(self, X, M, p, r, stream=None):
        self.X, self.M, self.p = X, M, p
        self.dev = dev = Device(X, stream)
        m, n = X.shape
        dt = np.dtype(X.dtype)
        self.has_mask = M is not None
        self.M_arg = M if M is not None else dev.empty((1, 1), dt)
        self.plain_frob = p.kind == FROB and not self.has_mask
        self.plain_kl = p.kind == KL and not self.has_mask
        self.numW = dev.empty((m, r), dt)
        self.numH = dev.empty((r, n), dt)
        self.DW = dev.empty((m, r), dt)
        self.DH = dev.empty((r, n), dt)
        self.G = dev.empty((r, r), dt)
        self.s_dummy = dev.empty((1,), dt)
        self.one = dev.upload(np.ones(1, np.int8))
        self.A = self.B = None
        if not self.plain_frob:
            self.A = dev.empty((m, n), dt)
            if not self.plain_kl:
                self.B = dev.empty((m, n), dt)

    def start(self, W, H):
        return W, H

    def factors(self, W, H, H_out=None):
        return W, H

    def release(self):
        pass

    def _update(self, F, num, D, s, den_mode, vec_axis, l1, l2, z):
        p = self.p
        q0, q1 = F.shape
        self.dev.launch1(update_kernel, q0 * q1, F, num, D, s, den_mode, vec_axis, l1, l2,
                         p.gamma, z, p.eps, self.one, 1 << 62)

    def _weights(self, W, H):
        p = self.p
        m, n = self.X.shape
        self.dev.gemm(W, H, self.A)
        B = self.B if self.B is not None else self.A
        self.dev.launch1(dense_weights_kernel, m * n, self.X, self.M_arg, self.A, B, self.has_mask,
                         self.B is not None, p.kind, p.beta, p.eps, p.clamp_num, p.clamp_den)

    def update_W(self, W, H, l1, l2, H_fixed=False):
        p, dev = self.p, self.dev
        if self.plain_frob:
            dev.gemm(self.X, H, self.numW, tb=True)
            dev.gemm(H, H, self.G, tb=True)
            dev.gemm(W, self.G, self.DW)
            self._update(W, self.numW, self.DW, self.s_dummy, DEN_MAT, 1, l1, l2, p.zW)
            return
        self._weights(W, H)
        dev.gemm(self.A, H, self.numW, tb=True)
        if self.plain_kl:
            s = dev.upload(dev.row_sums(H).astype(self.X.dtype))
            self._update(W, self.numW, self.DW, s, DEN_VEC, 1, l1, l2, p.zW)
        else:
            dev.gemm(self.B, H, self.DW, tb=True)
            self._update(W, self.numW, self.DW, self.s_dummy, DEN_MAT, 1, l1, l2, p.zW)

    def update_H(self, W, H, l1, l2):
        p, dev = self.p, self.dev
        if self.plain_frob:
            dev.gemm(W, self.X, self.numH, ta=True)
            dev.gemm(W, W, self.G, ta=True)
            dev.gemm(self.G, H, self.DH)
            self._update(H, self.numH, self.DH, self.s_dummy, DEN_MAT, 0, l1, l2, p.zH)
            return
        self._weights(W, H)
        dev.gemm(W, self.A, self.numH, ta=True)
        if self.plain_kl:
            s = dev.col_sums(W)
            s[s == 0] = 1.0
            s = dev.upload(s.astype(self.X.dtype))
            self._update(H, self.numH, self.DH, s, DEN_VEC, 0, l1, l2, p.zH)
        else:
            dev.gemm(W, self.B, self.DH, ta=True)
            self._update(H, self.numH, self.DH, self.s_dummy, DEN_MAT, 0, l1, l2, p.zH)

    def error(self, W, H) -> float:
        p, dev = self.p, self.dev
        m, n = self.X.shape
        WH = self.A if self.A is not None else dev.empty((m, n), self.X.dtype)
        dev.gemm(W, H, WH)
        out = dev.empty((m, 4), np.float64)
        dev.launch1(div_dense_kernel, m, self.X, WH, self.M_arg, self.has_mask, p.kind, p.beta, p.eps, out)
        sum_wh = float(np.dot(dev.col_sums(W), dev.row_sums(H))) if p.kind == KL else 0.0
        return _partial_error(p, dev, out, sum_wh, m * n, None, self.has_mask)


class CudaSparseProblem:
    """Device twin of ``cpu.SparseProblem`` (CSR rows for W, a CSC copy for H^T)."""

    def __init__(self, X, weights, p, r, stream=None, csc=None, csc_weights=None):
        self.p = p
        self.shape = tuple(X.shape)
        self.X = X
        self.dev = dev = Device(X.data, stream)
        self.dtype = np.dtype(X.data.dtype)
        self.indptr, self.indices, self.data = X.indptr, X.indices, X.data
        self.has_w = weights is not None
        if csc is None:
            if dev.cp is not None:
                C = X.tocsc()
                csc = (C.indptr, C.indices, C.data)
            else:
                Ch = _host_csr(X).tocsc()
                csc = tuple(cuda.to_device(a) for a in (Ch.indptr, Ch.indices, Ch.data))
        self.c_indptr, self.c_indices, self.c_data = csc
        self.w = weights if weights is not None else dev.empty((1,), self.dtype)
        self.c_w = csc_weights if csc_weights is not None else self.w
        m, n = self.shape
        self.numW = dev.empty((m, r), np.float64)
        self.denW = dev.empty((m, r), np.float64)
        self.numH = dev.empty((n, r), np.float64)
        self.denH = dev.empty((n, r), np.float64)
        self.g_dummy = dev.empty((1, 1), np.float64)
        self.s_dummy = dev.empty((1,), np.float64)
        self.D_dummy = dev.empty((1, 1), self.dtype)

    def start(self, W, H):
        Ht = self.dev.empty((H.shape[1], H.shape[0]), self.dtype)
        _transpose_into(self.dev, H, Ht)
        return W, Ht

    def factors(self, W, Ht, H_out=None):
        H = H_out if H_out is not None else self.dev.empty((Ht.shape[1], Ht.shape[0]), self.dtype)
        _transpose_into(self.dev, Ht, H)
        return W, H

    def release(self):
        self.c_indptr = self.c_indices = self.c_data = None

    def _run(self, side, F, G, gram, s, D, den_mode, l1, l2, z):
        p = self.p
        if side == "W":
            ip, ix, dx, w, num, den = self.indptr, self.indices, self.data, self.w, self.numW, self.denW
        else:
            ip, ix, dx, w, num, den = self.c_indptr, self.c_indices, self.c_data, self.c_w, self.numH, self.denH
        self.dev.launch1(sparse_update_kernel, F.shape[0], ip, ix, dx, w, self.has_w, F, G, gram, s, D,
                         num, den, p.kind, den_mode, p.beta, l1, l2, p.gamma, z, p.eps,
                         p.clamp_num, p.clamp_den)

    def _beta_den(self, W, Ht, side):
        p, dev = self.p, self.dev
        m, n = self.shape
        r = W.shape[1]
        out = dev.zeros((m, r) if side == "W" else (n, r), self.dtype)
        WH = dev.empty((m, n), self.dtype)  # one bounded-by-V block: the whole matrix on GPU
        dev.gemm(W, Ht, WH, tb=True)
        dev.launch1(pow_kernel, m * n, WH, p.beta - 1.0, p.clamp_den, p.eps)
        if side == "W":
            dev.gemm(WH, Ht, out)
        else:
            dev.gemm(WH, W, out, ta=True)
        return out, WH

    def update_W(self, W, Ht, l1, l2, H_fixed=False):
        p, dev = self.p, self.dev
        if self.has_w:
            self._run("W", W, Ht, self.g_dummy, self.s_dummy, self.D_dummy, DEN_ACC, l1, l2, p.zW)
        elif p.kind == FROB:
            r = W.shape[1]
            gram = dev.empty((r, r), self.dtype)
            dev.gemm(Ht, Ht, gram, ta=True)
            gram64 = dev.upload(dev.to_host(gram).astype(np.float64))
            self._run("W", W, Ht, gram64, self.s_dummy, self.D_dummy, DEN_GRAM, l1, l2, p.zW)
        elif p.kind == KL:
            s = dev.upload(dev.col_sums(Ht))
            self._run("W", W, Ht, self.g_dummy, s, self.D_dummy, DEN_VEC, l1, l2, p.zW)
        else:
            D, _ = self._beta_den(W, Ht, "W")
            self._run("W", W, Ht, self.g_dummy, self.s_dummy, D, DEN_MAT, l1, l2, p.zW)

    def update_H(self, W, Ht, l1, l2):
        p, dev = self.p, self.dev
        if self.has_w:
            self._run("H", Ht, W, self.g_dummy, self.s_dummy, self.D_dummy, DEN_ACC, l1, l2, p.zH)
        elif p.kind == FROB:
            r = W.shape[1]
            gram = dev.empty((r, r), self.dtype)
            dev.gemm(W, W, gram, ta=True)
            gram64 = dev.upload(dev.to_host(gram).astype(np.float64))
            self._run("H", Ht, W, gram64, self.s_dummy, self.D_dummy, DEN_GRAM, l1, l2, p.zH)
        elif p.kind == KL:
            s = dev.col_sums(W)
            s[s == 0] = 1.0
            self._run("H", Ht, W, self.g_dummy, dev.upload(s), self.D_dummy, DEN_VEC, l1, l2, p.zH)
        else:
            D, _ = self._beta_den(W, Ht, "H")
            self._run("H", Ht, W, self.g_dummy, self.s_dummy, D, DEN_MAT, l1, l2, p.zH)

    def error(self, W, Ht) -> float:
        p, dev = self.p, self.dev
        m, n = self.shape
        if p.kind == FROB and not self.has_w:
            # scikit-learn's sparse Frobenius: ||X||^2 + tr(W^T W H H^T) - 2 tr(W^T X H^T)
            Wh, Hth = dev.to_host(W).astype(np.float64), dev.to_host(Ht).astype(np.float64)
            data = dev.to_host(self.data).astype(np.float64)
            Xh = _host_csr(self.X) if dev.cp is None else None
            if Xh is not None:
                XHt = np.asarray(Xh @ Hth)
            else:
                XHt = dev.to_host(self.X @ Ht).astype(np.float64)
            res = (data @ data + np.sum((Wh.T @ Wh @ Hth.T) * Hth.T) - 2.0 * np.sum(XHt * Wh)) / 2.0
            with np.errstate(invalid="ignore"):
                return float(np.sqrt(np.float64(res * 2)))
        out = dev.empty((m, 4), np.float64)
        dev.launch1(div_sparse_kernel, m, self.indptr, self.indices, self.data, self.w, self.has_w,
                    W, Ht, p.kind, p.beta, p.eps, out)
        sum_wh = float(np.dot(dev.col_sums(W), dev.col_sums(Ht))) if p.kind == KL else 0.0
        sum_whb = 0.0
        if p.kind == BETA and not self.has_w:
            WH = dev.empty((m, n), self.dtype)
            dev.gemm(W, Ht, WH, tb=True)
            dev.launch1(pow_kernel, m * n, WH, p.beta, False, p.eps)
            sum_whb = float(dev.row_sums(WH).sum())
        return _partial_error(p, dev, out, sum_wh, m * n, sum_whb, self.has_w)


@cuda.jit
def transpose_kernel(A, B):
    p, q = A.shape
    t = cuda.grid(1)
    if t >= p * q:
        return
    i = t // q
    j = t % q
    B[j, i] = A[i, j]


def _transpose_into(dev, A, B):
    if dev.cp is not None:
        B[...] = A.T
        return
    p, q = A.shape
    dev.launch1(transpose_kernel, p * q, A, B)


def make_problem(V, mask, p, r, stream=None):
    """The device problem for V: dense CUDA array, cupyx CSR/CSC or ``DeviceCSR``."""
    if hasattr(V, "indptr"):
        X = V.tocsr() if getattr(V, "format", "csr") != "csr" else V
        if mask is None:
            return CudaSparseProblem(X, None, p, r, stream)
        # masked sparse: the pattern (mask's stored entries, V gathered there) is built on
        # the host once per fit, then uploaded; the iterations run on the device.
        from .cpu import cpu_problem

        hp = cpu_problem(_host_csr(X), _mask_host(mask), p.beta, r)
        up = cuda.to_device if Device(X.data, stream).cp is None else Device(X.data, stream).upload
        Xd = DeviceCSR(up(hp.indptr), up(hp.indices), up(hp.data), hp.shape)
        return CudaSparseProblem(Xd, up(hp.w), p, r, stream,
                                 csc=(up(hp.c_indptr), up(hp.c_indices), up(hp.c_data)),
                                 csc_weights=up(hp.c_w))
    M = mask
    if M is not None and hasattr(M, "toarray"):
        M = M.toarray()
    return CudaDenseProblem(V, M, p, r, stream)


def _mask_host(mask):
    if hasattr(mask, "copy_to_host"):
        return mask.copy_to_host()
    if hasattr(mask, "get"):
        return mask.get()
    return mask


# --------------------------------------------------------------------------- batched

def batched_fit(V, W, H, mask, p, max_iter, tol, regs, stream=None):
    """B problems on the device; see ``batched_multiplicative_update``."""
    dev = Device(V, stream)
    nb, m, n = V.shape
    r = W.shape[2]
    dt = np.dtype(V.dtype)
    has_mask = mask is not None
    plain_frob = p.kind == FROB and not has_mask
    plain_kl = p.kind == KL and not has_mask
    l1W, l1H, l2W, l2H = (float(x[0]) for x in regs)
    if any(float(x.min()) != float(x.max()) for x in regs):
        raise ValueError("per-problem penalties are supported on the CPU only; pass scalars")
    V2 = V.reshape(nb * m, n)
    M2 = mask.reshape(nb * m, n) if has_mask else dev.empty((1, 1), dt)
    W2 = W.reshape(nb * m, r)
    H2 = H.reshape(nb * r, n)
    numW = dev.empty((nb, m, r), dt)
    denW = dev.empty((nb, m, r), dt)
    numH = dev.empty((nb, r, n), dt)
    denH = dev.empty((nb, r, n), dt)
    G = dev.empty((nb, r, r), dt)
    A = dev.empty((nb, m, n), dt)
    B = dev.empty((nb, m, n), dt)
    parts = dev.empty((nb * m, 4), np.float64)
    s_dummy = dev.empty((1,), dt)
    active_h = np.ones(nb, np.int8)
    active = dev.upload(active_h)
    n_iter = np.full(nb, max_iter, np.int64)

    def errors():
        dev.gemm(W, H, A)
        dev.launch1(div_dense_kernel, nb * m, V2, A.reshape(nb * m, n), M2, has_mask, p.kind,
                    p.beta, p.eps, parts)
        ph = dev.to_host(parts).reshape(nb, m, 4).sum(axis=1)
        out = np.empty(nb)
        sum_wh = dev.to_host(A).reshape(nb, -1).sum(axis=1) if p.kind == KL else np.zeros(nb)
        for b in range(nb):
            if has_mask:
                out[b] = np.sqrt(2.0 * max(ph[b, 3], 0.0))
            else:
                out[b] = finish_error(p, ph[b], sum_wh[b], m * n, ph[b, 2])
        return out

    def weights():
        dev.gemm(W, H, A)
        dev.launch1(dense_weights_kernel, nb * m * n, V2, M2, A.reshape(nb * m, n),
                    B.reshape(nb * m, n), has_mask, not plain_kl, p.kind, p.beta, p.eps,
                    p.clamp_num, p.clamp_den)

    err0 = errors()
    prev = err0.copy()
    for it in range(1, max_iter + 1):
        if plain_frob:
            dev.gemm(V, H, numW, tb=True)
            dev.gemm(H, H, G, tb=True)
            dev.gemm(W, G, denW)
        else:
            weights()
            dev.gemm(A, H, numW, tb=True)
            if plain_kl:
                dev.launch1(broadcast_sums_kernel, nb * m * r, H2, denW.reshape(nb * m, r), True, False, r, m)
            else:
                dev.gemm(B, H, denW, tb=True)
        dev.launch1(update_kernel, nb * m * r, W2, numW.reshape(nb * m, r), denW.reshape(nb * m, r),
                    s_dummy, DEN_MAT, 1, l1W, l2W, p.gamma, p.zW, p.eps, active, m)
        if plain_frob:
            dev.gemm(W, V, numH, ta=True)
            dev.gemm(W, W, G, ta=True)
            dev.gemm(G, H, denH)
        else:
            weights()
            dev.gemm(W, A, numH, ta=True)
            if plain_kl:
                dev.launch1(broadcast_sums_kernel, nb * r * n, W2, denH.reshape(nb * r, n), False, True, m, r)
            else:
                dev.gemm(W, B, denH, ta=True)
        dev.launch1(update_kernel, nb * r * n, H2, numH.reshape(nb * r, n), denH.reshape(nb * r, n),
                    s_dummy, DEN_MAT, 1, l1H, l2H, p.gamma, p.zH, p.eps, active, r)
        if tol > 0 and it % 10 == 0:
            err = errors()
            with np.errstate(divide="ignore", invalid="ignore"):
                stop = ((prev - err) / err0 < tol) & (active_h == 1)
            n_iter[stop] = it
            active_h[stop] = 0
            prev = np.where(active_h == 1, err, prev)
            if not active_h.any():
                break
            active = dev.upload(active_h)
    return n_iter, errors()
