"""Numba CPU kernel: per-pixel log-likelihood under a full-covariance Gaussian mixture.

For pixel features x (P, D) and K components with weights pi_k, means mu_k and covariances
Sigma_k = L_k L_k^T (Cholesky), the launcher passes A_k = L_k^{-1} (lower triangular) and
c_k = log pi_k - D/2 log(2 pi) - sum_i log (L_k)_ii, so that

    log p(x) = logsumexp_k ( c_k - 1/2 || A_k (x - mu_k) ||^2 ).

Each parallel task owns a chunk of pixels; for each pixel the K terms are formed in a small
stack buffer and reduced with the max-shifted log-sum-exp (no overflow or underflow for far
away pixels: the largest term is exact). Arithmetic in float64 whatever the input dtype;
the result is stored in the output's dtype. Only the lower triangle of A_k is read.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange


@numba.njit(parallel=True, cache=True, nogil=True, fastmath=False)
def _loglik(x, means, inv_chol, log_const, out, chunk):
    n_pix, dim = x.shape
    n_comp = means.shape[0]
    n_chunks = (n_pix + chunk - 1) // chunk
    for task in prange(n_chunks):
        lo = task * chunk
        hi = min(lo + chunk, n_pix)
        diff = np.empty(dim, np.float64)
        terms = np.empty(n_comp, np.float64)
        for p in range(lo, hi):
            best = -np.inf
            for k in range(n_comp):
                for i in range(dim):
                    diff[i] = np.float64(x[p, i]) - means[k, i]
                maha = 0.0
                for i in range(dim):
                    z = 0.0
                    for j in range(i + 1):
                        z += inv_chol[k, i, j] * diff[j]
                    maha += z * z
                t = log_const[k] - 0.5 * maha
                terms[k] = t
                if t > best or t != t:  # NaN wins, and stays
                    best = t if best == best else best
            if best == -np.inf or best != best:
                out[p] = best
                continue
            acc = 0.0
            for k in range(n_comp):
                acc += math.exp(terms[k] - best)
            out[p] = best + math.log(acc)
    return out


def log_likelihood(x: np.ndarray, means: np.ndarray, inv_chol: np.ndarray, log_const: np.ndarray,
                   out: np.ndarray) -> None:
    """Fill ``out`` (P,) with log p(x_p); parameters as prepared by ``gmm.__init__``."""
    from . import config

    _loglik(x, means, inv_chol, log_const, out, config.CPU_CHUNK)
