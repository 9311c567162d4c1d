"""Per-pixel log-likelihood under a full-covariance Gaussian mixture (GMM colour models).

Simonyan, Vedaldi & Zisserman (2013), Sec. 3.2 / Boykov & Jolly (2001) / GrabCut (Rother
et al. 2004): the data term of the GraphCut segmentation is -log p(z_m | GMM) for the
foreground and for the background colour model of every pixel z_m. This op evaluates
log p(x_p) = log sum_k pi_k N(x_p; mu_k, Sigma_k) for all pixels at once.
"""
from __future__ import annotations

import math

import numpy as np

from .._backend import CPU, backend_of
from .._validate import check_dtype, check_ndim, check_out, overlaps_any
from . import config

__all__ = ["gmm_log_likelihood", "prepare_parameters"]

_DTYPES = (np.float32, np.float64)


def prepare_parameters(weights, means, covariances):
    """Validate GMM parameters and turn them into the kernels' form (float64, host numpy).

    Parameters
    ----------
    weights : (K,) non-negative, positive sum (normalised here)
    means : (K, D)
    covariances : (K, D, D) symmetric positive definite

    Returns
    -------
    means (K, D), inv_chol (K, D, D) lower-triangular L_k^{-1} with Sigma_k = L_k L_k^T,
    log_const (K,) = log pi_k - D/2 log(2 pi) - log det L_k  (float64 arrays).

    Raises
    ------
    ValueError
        Shapes that disagree, negative or all-zero weights, non-finite values, a
        covariance that is not symmetric positive definite (names the component).
    """
    for name, a in (("weights", weights), ("means", means), ("covariances", covariances)):
        kind = np.asarray(a).dtype.kind
        if kind not in "fiu":
            raise TypeError(f"{name} must hold real numbers, got dtype {np.asarray(a).dtype}")
    w = np.asarray(weights, dtype=np.float64)
    mu = np.asarray(means, dtype=np.float64)
    cov = np.asarray(covariances, dtype=np.float64)
    if w.ndim != 1 or w.shape[0] < 1:
        raise ValueError(f"weights must have shape (K,) with K >= 1, got {w.shape}")
    k = w.shape[0]
    if mu.ndim != 2 or mu.shape[0] != k or mu.shape[1] < 1:
        raise ValueError(f"means must have shape (K={k}, D), got {mu.shape}")
    d = mu.shape[1]
    if cov.shape != (k, d, d):
        raise ValueError(f"covariances must have shape (K, D, D) = {(k, d, d)}, got {cov.shape}")
    for name, a in (("weights", w), ("means", mu), ("covariances", cov)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} must be finite")
    if np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"weights must be non-negative with a positive sum, got {w}")
    if not np.allclose(cov, np.swapaxes(cov, 1, 2), rtol=1e-6, atol=1e-12):
        raise ValueError("covariances must be symmetric")
    w = w / w.sum()
    inv_chol = np.empty_like(cov)
    log_const = np.empty(k)
    for i in range(k):
        try:
            chol = np.linalg.cholesky(cov[i])
        except np.linalg.LinAlgError:
            raise ValueError(f"covariances[{i}] is not positive definite") from None
        inv_chol[i] = np.linalg.solve(chol, np.eye(d))
        with np.errstate(divide="ignore"):
            log_const[i] = math.log(w[i]) if w[i] > 0 else -np.inf
        log_const[i] -= 0.5 * d * math.log(2 * math.pi) + float(np.log(np.diag(chol)).sum())
    return np.ascontiguousarray(mu), np.ascontiguousarray(np.tril(inv_chol)), log_const


def gmm_log_likelihood(x, weights, means, covariances, *, out=None, stream=None):
    """log p(x_p) under a full-covariance Gaussian mixture, for every row x_p of x.

    Parameters
    ----------
    x : array, shape (P, D)
        numpy (Numba CPU kernel) or a CUDA array (numba.cuda kernel), float32 or float64,
        any strides (read in place). D <= ``config.MAX_DIM`` on CUDA.
    weights, means, covariances : array-like, (K,), (K, D), (K, D, D)
        Mixture parameters (host arrays, e.g. a fitted ``sklearn.mixture.GaussianMixture``'s
        ``weights_``, ``means_``, ``covariances_``); weights are normalised to sum to one.
    out : array, optional
        Preallocated C-contiguous, writeable (P,) output on x's device, x's dtype (one that
        shares memory with x is written through a temporary).
    stream : int, optional
        CUDA stream handle to launch on.

    Returns
    -------
    loglik : array (P,), x's dtype and device.

    Notes
    -----
    log p(x) = logsumexp_k [log pi_k - D/2 log 2pi - 1/2 log|Sigma_k|
    - 1/2 (x - mu_k)^T Sigma_k^{-1} (x - mu_k)], computed with the Cholesky factor of each
    Sigma_k (the Mahalanobis term as ||L_k^{-1}(x - mu_k)||^2) and a max-shifted
    log-sum-exp, in float64 arithmetic. This is the GraphCut data term of Simonyan et al.
    (2013), Sec. 3.2 (colour models of GrabCut, Rother et al. 2004). A NaN in x gives NaN.
    """
    backend = backend_of(x=x, out=out)
    check_ndim("x", x, 2, "(P, D)")
    dtype = check_dtype("x", x, _DTYPES)
    mu, inv_chol, log_const = prepare_parameters(weights, means, covariances)
    if x.shape[1] != mu.shape[1]:
        raise ValueError(f"x has D={x.shape[1]} features but the mixture has D={mu.shape[1]}")
    n = x.shape[0]
    if out is None:
        if backend == CPU:
            out = np.empty(n, dtype=dtype)
        else:
            from .. import _cuda

            out = _cuda.empty((n,), dtype, like=x)
    else:
        check_out("out", out, (n,), dtype)
        if overlaps_any(out, x):  # out shares x's memory: compute first, then write
            res = gmm_log_likelihood(x, weights, means, covariances, stream=stream)
            if backend == CPU:
                out[...] = res
            else:
                from .. import _cuda

                _cuda.copy_into(out, res, stream)
            return out
    if n == 0:
        return out
    if backend == CPU:
        from . import cpu

        cpu.log_likelihood(x, mu, inv_chol, log_const, out)
    else:
        if mu.shape[1] > config.MAX_DIM:
            raise ValueError(f"x has D={mu.shape[1]} features; the CUDA kernel supports D <= {config.MAX_DIM}")
        from . import cuda

        cuda.log_likelihood(x, mu, inv_chol, log_const, out, stream=stream)
    return out
