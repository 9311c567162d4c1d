"""Sparse Fourier projections and iterative hard thresholding (IHT): the library's entry points.

Bafna, Murtagh & Vyas, "Thwarting Adversarial Examples: An L0-Robust Sparse Fourier
Transform" (NeurIPS 2018). An attacked image is modelled as y = x + e, where x is k-sparse
in an orthonormal transform F (the 2-D DCT in their experiments, the DFT in their theory)
and e is t-sparse in pixel space (an L0 attack). Algorithm 1 (IHT) alternates

    e^p = H_t(y - F^-1 x^{p-1}),    x^p = H_k(F(y - e^p)),    x^0 = 0,

and Algorithm 2 runs it on image patches. Everything is batched over all leading
dimensions: the transform runs over ``axes`` (default the last two), one "sample" being
one slice over those axes.

Functions: :func:`topk_threshold` (the kernel, re-exported), :func:`sparse_project`,
:func:`project_with_mask`, :func:`iht`, :func:`patchwise_iht`. This module only routes:
numpy and CuPy arrays go straight to :mod:`hotops.kernels.topk_threshold` (the Numba CPU
kernels with ``scipy.fft``; cuFFT and the numba.cuda select), torch tensors to
:mod:`hotops.bindings.topk_threshold` (differentiable ``sparse_project``; ``iht`` on
zero-copy views, results back as tensors). The kernel's module docstring states the DFT
convention for real input (conjugate pairs count 2 and are kept together).
"""
from __future__ import annotations

import numpy as np

from hotops.kernels import topk_threshold as _op
from hotops.kernels._backend import is_torch
from hotops.kernels.topk_threshold import TRANSFORMS, topk_threshold

__all__ = ["topk_threshold", "sparse_project", "project_with_mask", "iht", "patchwise_iht", "TRANSFORMS"]


def sparse_project(x, k, transform="dct", axes=(-2, -1), *, return_mask=False, workers=None, stream=None):
    """Project x onto its k largest coefficients in an orthonormal transform: F^-1 H_k F x.

    Parameters
    ----------
    x : array
        numpy, CuPy, or a torch tensor (then :func:`hotops.bindings.sparse_project` runs,
        differentiable). float32/float64 (complex64/complex128 accepted; integers only for
        ``'dct'``, converted to float64). Batched over every axis not in ``axes``.
    k : int
        Coefficients kept per sample, 1 <= k <= the sample size (product of ``axes``' sizes).
        For ``'fft'`` of real input conjugate pairs count 2 and stay together (see
        :mod:`hotops.kernels.topk_threshold`): k or k - 1 coefficients survive.
    transform : {'dct', 'fft'}
        Orthonormal DCT-II (``norm='ortho'``) or orthonormal DFT.
    axes : int or tuple of int
        The transformed axes (default: the last two).
    return_mask : bool
        Also return the boolean support in the coefficient domain (``'dct'``: x's shape with
        ``axes`` last; ``'fft'`` of real input: the rfftn half spectrum; complex: fftn).
        numpy and CuPy only (torch: :func:`hotops.bindings.sparse_project_with_mask`).
    workers : int, optional
        scipy.fft threads (default: numba's thread count).
    stream : int, optional
        CUDA stream handle for the numba.cuda select (CuPy input).

    Returns
    -------
    y : array of x's shape and (float) dtype; and the mask if requested.

    Notes
    -----
    H_k of Bafna et al. (2018), Algorithm 1, x^p = H_k(F(y - e^p)), with F orthonormal so that
    the projection is orthogonal: y = F^-1 M F x, M the 0/1 support. Ties at the k-th
    magnitude keep the lower coefficient index (flattened, C order).
    """
    if type(x) is not np.ndarray and is_torch(x):
        if return_mask:
            raise TypeError("return_mask is not supported for torch tensors (use hotops.bindings.sparse_project_with_mask)")
        from hotops.bindings.topk_threshold import sparse_project as torch_sparse_project

        return torch_sparse_project(x, k, transform=transform, axes=axes)
    return _op.sparse_project(x, k, transform, axes, return_mask=return_mask, workers=workers, stream=stream)


def project_with_mask(x, mask, transform="dct", axes=(-2, -1), *, workers=None):
    """F^-1 M F x for a fixed support ``mask`` (as returned by :func:`sparse_project`).

    The linear map behind ``sparse_project`` once its support is chosen; since F is
    orthonormal and M is conjugate-closed, it is self-adjoint, so it is also the backward
    of ``sparse_project`` (``hotops.bindings.SparseProjection``). numpy or CuPy arrays.
    """
    return _op.project_with_mask(x, mask, transform, axes, workers=workers)


def iht(y, k, t, n_iter=20, tol=1e-6, transform="dct", axes=(-2, -1), *, return_iterations=False, workers=None):
    """Iterative hard thresholding: split y = x + e into a k-sparse x (in F) and a t-sparse e.

    Parameters
    ----------
    y : array
        numpy or CuPy (float32/float64), or a torch tensor (read without a copy; the result
        comes back as tensors, without autograd: :func:`hotops.bindings.topk_threshold.iht`).
        Batched over all leading axes.
    k : int
        Transform coefficients kept per sample (1 <= k <= sample size).
    t : int
        Pixels of the sparse corruption per sample (1 <= t <= sample size).
    n_iter : int
        Maximum iterations T.
    tol : float
        A sample stops once ||x^p - x^{p-1}|| <= tol * ||x^p|| (and it is then left out of
        the remaining iterations). 0 runs all n_iter iterations.
    transform, axes : as in :func:`sparse_project`.
    return_iterations : bool
        Also return the iterations each sample ran (int array of the batch shape).
    workers : int, optional
        scipy.fft threads (default: numba's thread count).

    Returns
    -------
    x_hat : array of y's shape
        The reconstruction F^-1 x^p in pixel space (k-sparse in F).
    e_hat : array of y's shape
        The estimated corruption, t-sparse in pixel space.

    Notes
    -----
    Bafna, Murtagh & Vyas (2018), Algorithm 1: x^0 = 0; for p = 1..T:
    e^p = H_t(y - F^-1 x^{p-1}), x^p = H_k(F(y - e^p)). Their Theorem gives exact recovery
    when k * t is small relative to the sample size (an incoherence condition); hard
    thresholds use the deterministic tie rule of :func:`topk_threshold`.
    """
    if is_torch(y):
        from hotops.bindings.topk_threshold import iht as torch_iht

        return torch_iht(y, k, t, n_iter, tol, transform, axes, return_iterations=return_iterations, workers=workers)
    return _op.iht(y, k, t, n_iter, tol, transform, axes, return_iterations=return_iterations, workers=workers)


def patchwise_iht(y, k, t, patch=(7, 7), n_iter=20, tol=1e-6, transform="dct", *, workers=None):
    """Algorithm 2 of Bafna et al. (2018): IHT on non-overlapping patches of the last two axes.

    Parameters
    ----------
    y : array (..., H, W)
        numpy or CuPy float32/float64 (torch tensors: as in :func:`iht`).
    k, t : int
        Coefficients and corrupted pixels *per patch*.
    patch : (int, int)
        Patch height and width; they must divide H and W.
    n_iter, tol, transform, workers : as in :func:`iht`.

    Returns
    -------
    x_hat, e_hat : arrays of y's shape, assembled from the patches' reconstructions.

    Notes
    -----
    Each patch is modelled as k-sparse in the patch's own 2-D transform plus a t-sparse
    corruption, which lets k and t scale with the image area while every sub-problem keeps
    k * t small relative to the patch size (the condition of their recovery theorem).
    """
    if is_torch(y):
        from hotops.bindings.topk_threshold import patchwise_iht as torch_patchwise_iht

        return torch_patchwise_iht(y, k, t, patch, n_iter, tol, transform, workers=workers)
    return _op.patchwise_iht(y, k, t, patch, n_iter, tol, transform, workers=workers)
