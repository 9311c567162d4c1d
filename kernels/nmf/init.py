"""Initial factors for NMF, shared by ``hotops.NMF``, ``hotops.batched_nmf`` and the torch
binding: scikit-learn's rules ('random', NNDSVD and its variants; Boutsidis & Gallopoulos,
"SVD based initialization: A head start for nonnegative matrix factorization", Pattern
Recognition 41, 2008).

Host 2-D input follows scikit-learn's ``NMF`` initialisation step by step (its public
``randomized_svd`` for NNDSVD, the same draws for 'random' and 'nndsvdar'), so that the
starting point is bit-identical to ``sklearn.decomposition.NMF``'s. CuPy input stays on the GPU: 'random'
draws the very same numbers (numpy's generator, r (m + n) values uploaded) and NNDSVD uses
CuPy's exact SVD. Stacks (B, m, n) use numpy's / CuPy's batched exact SVD.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .._backend import is_cupy

__all__ = ["initialize", "initialize_batched", "nndsvd", "regularization", "resolve_init"]

INITS = (None, "random", "nndsvd", "nndsvda", "nndsvdar")


def _check_penalty(name: str, value, upper=None) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and value >= 0 and (upper is None or value <= upper)):
        where = f"in [0, {upper}]" if upper is not None else "finite and >= 0"
        raise ValueError(f"{name} must be {where}, got {value!r}")
    return value


def regularization(alpha_W, alpha_H, l1_ratio, n_samples, n_features):
    """scikit-learn's ``_compute_regularization``: (l1_W, l1_H, l2_W, l2_H) scaled by size.

    ``alpha_W``, ``alpha_H`` (or ``'same'``) must be finite and >= 0, ``l1_ratio`` in
    [0, 1] (scikit-learn's rules); ``TypeError``/``ValueError`` naming the parameter."""
    _check_penalty("alpha_W", alpha_W)
    if not (isinstance(alpha_H, str) and alpha_H == "same"):
        _check_penalty("alpha_H", alpha_H)
    _check_penalty("l1_ratio", l1_ratio, 1)
    alpha_H = alpha_W if isinstance(alpha_H, str) else alpha_H
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

    from .._validate import check_size

    m, n = V.shape
    if m == 0 or n == 0:
        raise ValueError(f"V must be non-empty, got shape {tuple(V.shape)}")
    init = resolve_init(init, r, m, n)
    check_size("n_components", (max(m, n), r), V.dtype, "factors")
    xp = _xp(V.data if hasattr(V, "indptr") else V)
    if xp is np:
        W, H = _initialize_host(V, r, init, random_state)
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


def _initialize_host(X, r, init, random_state, eps=1e-6):
    """scikit-learn's NMF initialisation of numpy / scipy.sparse X (m, n) for a resolved
    ``init``, operation for operation (``sklearn.decomposition.NMF`` 1.x): 'random' scales
    |N(0, 1)| draws (H first, then W) by sqrt(mean(X) / r); NNDSVD runs on the public
    ``randomized_svd`` with ``random_state``, zeroes entries below ``eps``, and 'nndsvda' /
    'nndsvdar' fill the zeros with mean(X) / small random values."""
    from sklearn.utils import check_random_state
    from sklearn.utils.extmath import randomized_svd

    n_samples, n_features = X.shape
    if init == "random":
        avg = np.sqrt(X.mean() / r)
        rng = check_random_state(random_state)
        H = avg * rng.standard_normal(size=(r, n_features)).astype(X.dtype, copy=False)
        W = avg * rng.standard_normal(size=(n_samples, r)).astype(X.dtype, copy=False)
        np.abs(H, out=H)
        np.abs(W, out=W)
        return W, H
    U, S, Vt = randomized_svd(X, r, random_state=random_state)
    W = np.zeros_like(U)
    H = np.zeros_like(Vt)
    # the leading singular triplet is non-negative: used as it is
    W[:, 0] = np.sqrt(S[0]) * np.abs(U[:, 0])
    H[0, :] = np.sqrt(S[0]) * np.abs(Vt[0, :])

    def norm(v):
        v = np.ravel(v, order="K")
        return math.sqrt(np.dot(v, v))

    for j in range(1, r):
        x, y = U[:, j], Vt[j, :]
        x_p, y_p = np.maximum(x, 0), np.maximum(y, 0)
        x_n, y_n = np.abs(np.minimum(x, 0)), np.abs(np.minimum(y, 0))
        x_p_nrm, y_p_nrm = norm(x_p), norm(y_p)
        x_n_nrm, y_n_nrm = norm(x_n), norm(y_n)
        m_p, m_n = x_p_nrm * y_p_nrm, x_n_nrm * y_n_nrm
        if m_p > m_n:
            u, v, sigma = x_p / x_p_nrm, y_p / y_p_nrm, m_p
        else:
            u, v, sigma = x_n / x_n_nrm, y_n / y_n_nrm, m_n
        lbd = np.sqrt(S[j] * sigma)
        W[:, j] = lbd * u
        H[j, :] = lbd * v
    W[W < eps] = 0
    H[H < eps] = 0
    if init == "nndsvda":
        avg = X.mean()
        W[W == 0] = avg
        H[H == 0] = avg
    elif init == "nndsvdar":
        rng = check_random_state(random_state)
        avg = X.mean()
        W[W == 0] = abs(avg * rng.standard_normal(size=len(W[W == 0])) / 100)
        H[H == 0] = abs(avg * rng.standard_normal(size=len(H[H == 0])) / 100)
    return W, H


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
