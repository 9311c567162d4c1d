"""Initial factors for NMF, shared by ``hotops.NMF``, ``hotops.batched_nmf`` and the torch
binding: scikit-learn's rules ('random', NNDSVD and its variants; Boutsidis & Gallopoulos,
"SVD based initialization: A head start for nonnegative matrix factorization", Pattern
Recognition 41, 2008).

Host 2-D input calls scikit-learn's own ``_initialize_nmf`` so that the starting point is
bit-identical to ``sklearn.decomposition.NMF``'s. CuPy input stays on the GPU: 'random'
draws the very same numbers (numpy's generator, r (m + n) values uploaded) and NNDSVD uses
CuPy's exact SVD. Stacks (B, m, n) use numpy's / CuPy's batched exact SVD.
"""
from __future__ import annotations

import numpy as np

from .._backend import is_cupy

__all__ = ["initialize", "initialize_batched", "nndsvd", "regularization", "resolve_init"]

INITS = (None, "random", "nndsvd", "nndsvda", "nndsvdar")


def regularization(alpha_W, alpha_H, l1_ratio, n_samples, n_features):
    """scikit-learn's ``_compute_regularization``: (l1_W, l1_H, l2_W, l2_H) scaled by size."""
    alpha_H = alpha_W if alpha_H == "same" else alpha_H
    return (n_features * alpha_W * l1_ratio, n_samples * alpha_H * l1_ratio,
            n_features * alpha_W * (1.0 - l1_ratio), n_samples * alpha_H * (1.0 - l1_ratio))


def resolve_init(init, r, m, n):
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS} or 'custom', got {init!r}")
    if init is not None and init != "random" and r > min(m, n):
        raise ValueError(
            f"init = '{init}' can only be used when n_components <= min(n_samples, n_features) "
            f"= {min(m, n)}, got n_components={r}"
        )
    if init is None:
        init = "nndsvda" if r <= min(m, n) else "random"
    return init


def _xp(a):
    if is_cupy(a):
        import cupy

        return cupy
    return np


def nndsvd(xp, V, U, S, Vt, r, variant, rng, mean):
    """NNDSVD (Boutsidis & Gallopoulos 2008) of the stack V (B, m, n) from its SVD factors
    U (B, m, k), S (B, k), Vt (B, k, n); ``variant`` 'nndsvd', 'nndsvda' (zeros filled with
    the mean of V[b], ``mean[b]``) or 'nndsvdar' (zeros filled with small random values from
    ``rng``). Returns (W (B, m, r), H (B, r, n))."""
    U, S, Vt = U[:, :, :r], S[:, :r], Vt[:, :r, :]
    nb, m, n = V.shape
    W = xp.zeros((nb, m, r), V.dtype)
    H = xp.zeros((nb, r, n), V.dtype)
    W[:, :, 0] = xp.sqrt(S[:, :1]) * xp.abs(U[:, :, 0])
    H[:, 0, :] = xp.sqrt(S[:, :1]) * xp.abs(Vt[:, 0, :])
    for j in range(1, r):
        x, y = U[:, :, j], Vt[:, j, :]
        xp_, yp_ = xp.maximum(x, 0), xp.maximum(y, 0)
        xn_, yn_ = xp.abs(xp.minimum(x, 0)), xp.abs(xp.minimum(y, 0))
        xpn, ypn = xp.linalg.norm(xp_, axis=1), xp.linalg.norm(yp_, axis=1)
        xnn, ynn = xp.linalg.norm(xn_, axis=1), xp.linalg.norm(yn_, axis=1)
        mp, mn = xpn * ypn, xnn * ynn
        pos = (mp > mn)[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = xp.where(pos, xp_ / xpn[:, None], xn_ / xnn[:, None])
            v = xp.where(pos, yp_ / ypn[:, None], yn_ / ynn[:, None])
        sigma = xp.where(pos[:, 0], mp, mn)
        lbd = xp.sqrt(S[:, j] * sigma)[:, None]
        W[:, :, j] = xp.nan_to_num(lbd * u)
        H[:, j, :] = xp.nan_to_num(lbd * v)
    W[W < 1e-6] = 0
    H[H < 1e-6] = 0
    if variant in ("nndsvda", "nndsvdar"):
        for b in range(nb):
            avg = float(mean[b])
            for F in (W[b], H[b]):
                zero = F == 0
                if variant == "nndsvda":
                    F[zero] = avg
                else:
                    k = int(zero.sum())
                    F[zero] = xp.asarray(np.abs(avg * rng.standard_normal(k) / 100), dtype=V.dtype)
    return W, H


def initialize(V, r, init=None, random_state=None):
    """(W, H) for V (m, n): numpy / scipy.sparse (scikit-learn's ``_initialize_nmf``) or
    CuPy / cupyx (on the device, see the module doc)."""
    from sklearn.utils import check_random_state

    m, n = V.shape
    init = resolve_init(init, r, m, n)
    xp = _xp(V.data if hasattr(V, "indptr") else V)
    if xp is np:
        from sklearn.decomposition._nmf import _initialize_nmf

        W, H = _initialize_nmf(V, r, init=init, random_state=random_state)
        return np.ascontiguousarray(W, V.dtype), np.ascontiguousarray(H, V.dtype)
    mean = float(V.sum()) / (m * n)
    rng = check_random_state(random_state)
    if init == "random":
        avg = np.sqrt(mean / r)
        H = np.abs(avg * rng.standard_normal(size=(r, n)).astype(V.dtype, copy=False))
        W = np.abs(avg * rng.standard_normal(size=(m, r)).astype(V.dtype, copy=False))
        return xp.asarray(W), xp.asarray(H)
    Vd = V.toarray() if hasattr(V, "toarray") else V
    U, S, Vt = xp.linalg.svd(Vd, full_matrices=False)
    W, H = nndsvd(xp, Vd[None], U[None], S[None], Vt[None], r, init, rng, [mean])
    return xp.ascontiguousarray(W[0]), xp.ascontiguousarray(H[0])


def initialize_batched(V, r, init=None, random_state=None):
    """(W, H) of shapes (B, m, r), (B, r, n) for a stack V (B, m, n), numpy or CuPy.

    'random': |N(0, 1)| * sqrt(mean(V[b]) / r), H for all problems drawn first, then W, from
    one generator. NNDSVD variants: per problem, with a batched exact SVD.
    """
    from sklearn.utils import check_random_state

    nb, m, n = V.shape
    init = resolve_init(init, r, m, n)
    xp = _xp(V)
    rng = check_random_state(random_state)
    mean = V.mean(axis=(1, 2))
    if init == "random":
        avg = np.sqrt(np.asarray(mean.get() if hasattr(mean, "get") else mean, np.float64) / r)
        H = np.abs(avg[:, None, None] * rng.standard_normal(size=(nb, r, n))).astype(V.dtype)
        W = np.abs(avg[:, None, None] * rng.standard_normal(size=(nb, m, r))).astype(V.dtype)
        return xp.asarray(W), xp.asarray(H)
    U, S, Vt = xp.linalg.svd(V, full_matrices=False)
    mean_h = mean.get() if hasattr(mean, "get") else mean
    W, H = nndsvd(xp, V, U, S, Vt, r, init, rng, mean_h)
    return xp.ascontiguousarray(W), xp.ascontiguousarray(H)
