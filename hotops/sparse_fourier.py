"""Sparse Fourier projections and iterative hard thresholding (IHT).

Bafna, Murtagh & Vyas, "Thwarting Adversarial Examples: An L0-Robust Sparse Fourier
Transform" (NeurIPS 2018). An attacked image is modelled as y = x + e, where x is k-sparse
in an orthonormal transform F (the 2-D DCT in their experiments, the DFT in their theory)
and e is t-sparse in pixel space (an L0 attack). Algorithm 1 (IHT) alternates

    e^p = H_t(y - F^-1 x^{p-1}),    x^p = H_k(F(y - e^p)),    x^0 = 0,

and Algorithm 2 runs it on image patches. Everything here is batched over all leading
dimensions: the transform runs over ``axes`` (default the last two), one "sample" being
one slice over those axes.

Functions: :func:`topk_threshold` (the kernel, re-exported), :func:`sparse_project`,
:func:`iht`, :func:`patchwise_iht`. numpy inputs run on the Numba CPU kernels with
``scipy.fft`` (``workers`` threads); CuPy inputs on cuFFT (``cupyx.scipy.fft``) and the
numba.cuda select; torch tensors go through :mod:`hotops.bindings` (``sparse_project``) or
are viewed without copies (``iht``).

The DFT convention for real input (``transform='fft'``)
----------------------------------------------------------
The spectrum of a real signal is Hermitian, X(-f) = conj(X(f)). k counts coefficients of
the *full* spectrum, as the paper does: a conjugate pair {f, -f} counts 2, a self-conjugate
coefficient (zero frequency, Nyquist frequencies) counts 1. Coefficients are ranked by
magnitude (ties: lower index of the rfftn half spectrum first) and the kept set is the
longest prefix of that ranking whose count is <= k, pairs kept or dropped together: k or
k - 1 coefficients survive, and the projection of a real signal is real (computed with
``rfftn``/``irfftn``). Complex input uses the full ``fftn`` and keeps exactly k.
"""
from __future__ import annotations

import functools
import math
import numbers
import os

import numpy as np

from hotops.kernels._validate import check_axes
from hotops.kernels.topk_threshold import check_k, topk_threshold

__all__ = ["topk_threshold", "sparse_project", "project_with_mask", "iht", "patchwise_iht", "TRANSFORMS"]

TRANSFORMS = ("dct", "fft")


# --------------------------------------------------------------------------- validation

def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def _is_cupy(x) -> bool:
    return type(x).__module__.startswith("cupy")


def _check_transform(transform) -> str:
    if transform not in TRANSFORMS:
        raise ValueError(f"transform must be one of {TRANSFORMS}, got {transform!r}")
    return transform


def _check_axes(axes, ndim: int) -> tuple[int, ...]:
    if type(axes) is tuple and axes == (-2, -1) and ndim >= 2:  # the default, without the generic checks
        return (ndim - 2, ndim - 1)
    return check_axes(axes, ndim, "an array")


def _as_float(x, transform: str, name: str = "x"):
    """x with a float/complex dtype the kernels take (integers: float64 for the DCT only)."""
    dt = np.dtype(x.dtype)
    if dt in (np.float32, np.float64, np.complex64, np.complex128):
        return x
    if dt.kind in "iub":
        if transform == "fft":
            raise TypeError(
                f"{name} has integer dtype {dt.name}: the complex transform 'fft' needs float or "
                f"complex input (cast it, e.g. {name}.astype(np.float64))")
        return x.astype(np.float64)
    raise TypeError(f"{name} must have dtype float32, float64, complex64 or complex128; got {dt.name}")


def _workers(workers):
    if workers is None:
        try:
            import numba

            return numba.get_num_threads()
        except Exception:
            return os.cpu_count() or 1
    return int(workers)


def _xp_fft(x):
    """(numpy-like module, scipy.fft-like module) for x's device."""
    if _is_cupy(x):
        import cupy
        import cupyx.scipy.fft as cfft

        return cupy, cfft
    import scipy.fft as sfft

    return np, sfft


# --------------------------------------------------------------------------- projection

def _to_end(x, axes):
    """x with ``axes`` moved to the end, and the shapes (lead, sizes)."""
    d = len(axes)
    ends = tuple(range(x.ndim - d, x.ndim))
    if tuple(axes) == ends:  # already last: no moveaxis (a few us per call)
        xm = x
    else:
        xp = np if isinstance(x, np.ndarray) else _xp_fft(x)[0]
        xm = xp.moveaxis(x, axes, ends)
    return xm, tuple(xm.shape[: x.ndim - d]), tuple(xm.shape[x.ndim - d:])


def _from_end(y, axes):
    d = len(axes)
    ends = tuple(range(y.ndim - d, y.ndim))
    if tuple(axes) == ends:
        return y
    xp = np if isinstance(y, np.ndarray) else _xp_fft(y)[0]
    return xp.moveaxis(y, ends, axes)


#: Largest axis length for which the orthonormal DCT of real numpy input is computed as
#: matrix products (one GEMM over all rows per axis) instead of scipy's FFT-based dctn:
#: for MNIST-sized images that is 3.2x faster here (1024x28x28 float32, 2 threads: 1.8 ms
#: against 5.8 ms), and the error is that of one float matrix product (1.4e-6 in float32).
DCT_MATMUL_MAX = 64


@functools.lru_cache(maxsize=64)
def _dct_matrix(n: int, dtype, transposed: bool = False) -> np.ndarray:
    """The orthonormal DCT-II matrix D (n x n): C = D @ x, x = D.T @ C (C-contiguous,
    also when ``transposed``: a transposed *view* makes numpy's stacked matmul slow)."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    D = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    D[0] /= np.sqrt(2.0)
    D = np.ascontiguousarray(D.T if transposed else D).astype(dtype)
    D.setflags(write=False)
    return D


def _dct_by_matmul(a, d: int, inverse: bool):
    """DCT-II (or its inverse) over the last d in (1, 2) axes of a real numpy array a."""
    shape = a.shape
    # rows times D^T along the last axis (forward), times D (inverse)
    t = np.ascontiguousarray(a).reshape(-1, shape[-1]) @ _dct_matrix(shape[-1], a.dtype, not inverse)
    t = t.reshape(shape)
    if d == 2:
        t = np.matmul(_dct_matrix(shape[-2], a.dtype, inverse), t)
    return t


#: OpenBLAS runs a GEMM on one thread when M * N * K <= 65536 * GEMM_MULTITHREAD_THRESHOLD
#: (4 in its default build): the fused small-image kernels' products stay below this bound
#: for images up to about 40 x 40 (28 x 28: 23520), and then need no one-BLAS-thread
#: context around the parallel region (threadpoolctl's limit and restore cost 20-100 us per
#: call here, 2-3% of a 1024-image projection).
_SERIAL_GEMM_MNK = 65536


def _fused_needs_blas_limit(h: int, w: int) -> bool:
    """Whether a fused small-image kernel's products (at most h w (max(h, w) + 2)
    multiply-adds each) could make BLAS start its own threads."""
    return h * w * (max(h, w) + 2) > _SERIAL_GEMM_MNK


def _use_dct_matmul(a, d: int) -> bool:
    return (isinstance(a, np.ndarray) and d in (1, 2) and a.dtype in (np.float32, np.float64)
            and max(a.shape[a.ndim - d:]) <= DCT_MATMUL_MAX)


@functools.lru_cache(maxsize=32)
def _dct_mats_2d(h: int, w: int, dtype) -> tuple[np.ndarray, ...]:
    """(Dw^T, Dh, Dw, Dh^T), C-contiguous, for ``kernels.topk_threshold.cpu.dct_project_small``."""
    Dh = _dct_matrix(h, dtype)
    Dw = _dct_matrix(w, dtype)
    return _dct_matrix(w, dtype, True), Dh, Dw, _dct_matrix(h, dtype, True)


def _dct_project_fused(xm, k, lead, sizes, want_mask=True):
    """sparse_project's DCT of real numpy images with both sides <= DCT_MATMUL_MAX, in one
    Numba pass over the batch (transform, select and inverse per image while it is in cache;
    single-threaded BLAS inside the parallel region; for k << h w the inverse runs over the
    kept coefficients only). Measured on 1024x28x28 float32, k = 40, 2 threads: 4.6-8.8 ms
    against 9-14 ms for the batched GEMMs + select + GEMMs it replaces (first version);
    3.3-5.3 ms now, depending on the machine's phase. ``want_mask=False`` skips the mask
    (then None)."""
    from hotops.kernels.topk_threshold import cpu

    h, w = sizes
    x3 = np.ascontiguousarray(xm.reshape(-1, h, w))
    out3 = np.empty_like(x3)
    mask2 = np.empty((x3.shape[0], h * w), np.bool_) if want_mask else None
    if x3.shape[0]:
        if _fused_needs_blas_limit(h, w):
            with _one_blas_thread(True):
                bad = cpu.dct_project_small(x3, k, _dct_mats_2d(h, w, x3.dtype), out3, mask2)
        else:  # (a no-op context manager costs ~10-30 us here)
            bad = cpu.dct_project_small(x3, k, _dct_mats_2d(h, w, x3.dtype), out3, mask2)
        if bad:
            raise ValueError(f"x must be finite: {bad} sample(s) hold NaN or inf")
    return out3.reshape(*lead, h, w), (mask2.reshape(*lead, h, w) if want_mask else None)


@functools.lru_cache(maxsize=32)
def _dft_mats_2d(h: int, w: int, dtype) -> tuple[np.ndarray, ...]:
    """(Wf, FH, Ch, Sh, Wi) for ``kernels.topk_threshold.cpu.fft_project_small``.

    Orthonormal, real and imaginary parts in separate planes: x Wf = [Re | Im] of the rfft
    along w (columns v and wh + v: cos and -sin of 2 pi v j / w, over sqrt(w)). Along h,
    Ch[u, j] = cos(2 pi u j / h) / sqrt(h) and Sh the sines; since row h - u of the DFT is the
    conjugate of row u, FH = [Ch[0 .. h//2]; Sh[1 .. (h-1)//2]] (h rows) gives every row of the
    forward transform in one real product. Wi is the real inverse along w of a half spectrum
    stored as [Re | Im] rows (weight 2 for the columns whose conjugate lies outside the half
    spectrum, 1 for the zero and Nyquist columns).
    """
    wh = w // 2 + 1
    ang = 2 * np.pi * np.outer(np.arange(w), np.arange(wh)) / w  # (w, wh)
    Wf = np.concatenate([np.cos(ang), -np.sin(ang)], axis=1) / np.sqrt(w)
    v = np.arange(wh)
    a = np.where((v == 0) | ((w % 2 == 0) & (v == w // 2)), 1.0, 2.0)[:, None]
    Wi = np.concatenate([a * np.cos(ang.T), -a * np.sin(ang.T)]) / np.sqrt(w)
    ang_h = 2 * np.pi * np.outer(np.arange(h), np.arange(h)) / h
    Ch = np.cos(ang_h) / np.sqrt(h)
    Sh = np.sin(ang_h) / np.sqrt(h)
    FH = np.concatenate([Ch[: h // 2 + 1], Sh[1: (h - 1) // 2 + 1]])
    mats = tuple(np.ascontiguousarray(a, dtype=dtype) for a in (Wf, FH, Ch, Sh, Wi))
    for m in mats:
        m.setflags(write=False)
    return mats


def _fft_project_fused(xm, k, lead, sizes, want_mask=True):
    """sparse_project's real DFT of numpy images with both sides <= DCT_MATMUL_MAX in one
    Numba pass over the batch (the forward DFT as two small products per image, the inverse
    as a sum over the kept coefficients along h and one product along w, single-threaded
    BLAS inside the parallel region; the pair-aware select in between). ``want_mask=False``
    skips the mask output (then None)."""
    from hotops.kernels.topk_threshold import cpu, hermitian_partner

    h, w = sizes
    wh = w // 2 + 1
    x3 = np.ascontiguousarray(xm.reshape(-1, h, w))
    out3 = np.empty_like(x3)
    mask2 = np.empty((x3.shape[0], h * wh), np.bool_) if want_mask else None
    if x3.shape[0]:
        if _fused_needs_blas_limit(h, w):
            with _one_blas_thread(True):
                bad = cpu.fft_project_small(x3, k, _dft_mats_2d(h, w, x3.dtype), hermitian_partner((h, w)), out3, mask2)
        else:  # (a no-op context manager costs ~10-30 us here)
            bad = cpu.fft_project_small(x3, k, _dft_mats_2d(h, w, x3.dtype), hermitian_partner((h, w)), out3, mask2)
        if bad:
            raise ValueError(f"x must be finite: {bad} sample(s) hold NaN or inf")
    return out3.reshape(*lead, h, w), (mask2.reshape(*lead, h, wh) if want_mask else None)


def _forward(xm, transform, d, workers, real_fft):
    xp, fft = _xp_fft(xm)
    ax = tuple(range(xm.ndim - d, xm.ndim))
    kw = {"workers": workers} if xp is np else {}
    if transform == "dct" and _use_dct_matmul(xm, d):
        return _dct_by_matmul(xm, d, inverse=False)
    if transform == "dct":
        return fft.dctn(xm, type=2, norm="ortho", axes=ax, **kw)
    if real_fft:
        return fft.rfftn(xm, axes=ax, norm="ortho", **kw)
    return fft.fftn(xm, axes=ax, norm="ortho", **kw)


def _inverse(C, transform, sizes, workers, real_fft, dtype):
    xp, fft = _xp_fft(C)
    d = len(sizes)
    ax = tuple(range(C.ndim - d, C.ndim))
    kw = {"workers": workers} if xp is np else {}
    if transform == "dct" and _use_dct_matmul(C, d):
        y = _dct_by_matmul(C, d, inverse=True)
    elif transform == "dct":
        y = fft.idctn(C, type=2, norm="ortho", axes=ax, **kw)
    elif real_fft:
        y = fft.irfftn(C, s=sizes, axes=ax, norm="ortho", **kw)
    else:
        y = fft.ifftn(C, axes=ax, norm="ortho", **kw)
    return y.astype(dtype, copy=False)


def _select(C, k, transform, sizes, real_fft, stream=None):
    """H_k of the coefficients C (..., *coef_shape) over the trailing axes: (C_kept, mask)."""
    d = len(sizes)
    lead = C.shape[: C.ndim - d]
    coef_shape = C.shape[C.ndim - d:]
    m = math.prod(coef_shape)
    if _is_cupy(C):
        return _select_cuda(C, k, transform, sizes, real_fft, stream)
    from hotops.kernels.topk_threshold import cpu, hermitian_partner

    C2 = np.ascontiguousarray(C.reshape(-1, m))
    mask2 = np.zeros(C2.shape, np.bool_)
    if C2.shape[0]:
        if real_fft:
            bad = cpu.threshold_hermitian(C2, hermitian_partner(sizes), k, C2, mask2)
        else:
            bad = cpu.threshold_rows(C2, k, C2, mask2)
        if bad.any():
            raise ValueError(f"x must be finite: {int(bad.sum())} sample(s) hold NaN or inf")
    return C2.reshape(*lead, *coef_shape), mask2.reshape(*lead, *coef_shape)


def _select_cuda(C, k, transform, sizes, real_fft, stream):
    import cupy

    d = len(sizes)
    lead = C.shape[: C.ndim - d]
    coef_shape = C.shape[C.ndim - d:]
    m = math.prod(coef_shape)
    C2 = cupy.ascontiguousarray(C.reshape(-1, m))
    if not bool(cupy.isfinite(C2).all()):
        raise ValueError("x must be finite (it holds NaN or inf)")
    if not real_fft and C2.dtype.kind != "c":
        out2, mask2 = topk_threshold(C2, k, out=C2, return_mask=True, stream=stream)
    elif not real_fft:
        # complex rows: the numba.cuda select is real-only; rank |z| on the device instead
        mag = cupy.abs(C2)
        mag_t, mask2 = topk_threshold(mag, k, return_mask=True, stream=stream)
        out2 = cupy.where(mask2, C2, 0)
    else:
        # Hermitian half spectra: weighted ranking (pairs cost 2) by a stable device sort.
        from hotops.kernels.topk_threshold import hermitian_partner

        part = cupy.asarray(hermitian_partner(sizes))
        idx = cupy.arange(m)
        rep = (part < 0) | (part >= idx)
        cost = cupy.where(part < 0, 2, cupy.where(part == idx, 1, cupy.where(part > idx, 2, 0)))
        mag = cupy.where(rep[None, :], cupy.abs(C2), -1.0)
        order = cupy.argsort(-mag, axis=1)  # CuPy's sort is stable: ties keep the lower index
        csum = cupy.cumsum(cost[order], axis=1)
        keep_sorted = (csum <= k) & (cupy.take_along_axis(mag, order, axis=1) >= 0)
        mask2 = cupy.zeros(C2.shape, dtype=bool)
        mask2[cupy.arange(C2.shape[0])[:, None], order] = keep_sorted
        nonrep = ~rep
        mask2[:, nonrep] = mask2[:, part[nonrep]]
        out2 = cupy.where(mask2, C2, 0)
    return out2.reshape(*lead, *coef_shape), mask2.reshape(*lead, *coef_shape)


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
        For ``'fft'`` of real input conjugate pairs count 2 and stay together (see the module
        docstring): k or k - 1 coefficients survive.
    transform : {'dct', 'fft'}
        Orthonormal DCT-II (``norm='ortho'``) or orthonormal DFT.
    axes : int or tuple of int
        The transformed axes (default: the last two).
    return_mask : bool
        Also return the boolean support in the coefficient domain (``'dct'``: x's shape with
        ``axes`` last; ``'fft'`` of real input: the rfftn half spectrum; complex: fftn).
    workers : int, optional
        scipy.fft threads (default: numba's thread count).

    Returns
    -------
    y : array of x's shape and (float) dtype; and the mask if requested.

    Notes
    -----
    H_k of Bafna et al. (2018), Algorithm 1, x^p = H_k(F(y - e^p)), with F orthonormal so that
    the projection is orthogonal: y = F^-1 M F x, M the 0/1 support. Ties at the k-th
    magnitude keep the lower coefficient index (flattened, C order).
    """
    if (type(x) is np.ndarray and type(axes) is tuple and axes == (-2, -1) and type(k) is int
            and x.ndim >= 2 and x.dtype.char in "fd" and transform in TRANSFORMS):
        # the common case (real numpy images, default axes) without the generic validation's
        # ~50-80 us: small images go straight to the fused kernels
        h, w = x.shape[-2:]
        if 0 < h <= DCT_MATMUL_MAX and 0 < w <= DCT_MATMUL_MAX and 1 <= k <= h * w:
            fused = _dct_project_fused if transform == "dct" else _fft_project_fused
            y, mask = fused(x, k, x.shape[:-2], (h, w), return_mask)
            return (y, mask) if return_mask else y
    if _is_torch(x):
        from hotops.bindings.topk_threshold import sparse_project as torch_sparse_project

        if return_mask:
            raise TypeError("return_mask is not supported for torch tensors (use hotops.bindings.sparse_project_with_mask)")
        return torch_sparse_project(x, k, transform=transform, axes=axes)
    transform = _check_transform(transform)
    if not (isinstance(x, np.ndarray) or _is_cupy(x)):
        raise TypeError(f"x must be a numpy array, a CuPy array or a torch tensor, got {type(x).__module__}.{type(x).__qualname__}")
    if x.ndim == 0:
        raise ValueError("x must have at least one dimension, got a 0-d array")
    axes = _check_axes(axes, x.ndim)
    x = _as_float(x, transform)
    xm, lead, sizes = _to_end(x, axes)
    n = math.prod(sizes)
    if n == 0:
        raise ValueError(f"x has no entries over axes {axes} (shape {tuple(x.shape)})")
    k = check_k("k", k, n)
    real_fft = transform == "fft" and np.dtype(x.dtype).kind == "f"
    if _use_dct_matmul(xm, len(axes)) and len(axes) == 2:  # small real images: one fused pass
        fused = _dct_project_fused if transform == "dct" else _fft_project_fused
        y, mask = fused(xm, k, lead, sizes, return_mask)
        y = _from_end(y, axes)
        return (y, mask) if return_mask else y
    w = _workers(workers)
    C = _forward(xm, transform, len(axes), w, real_fft)
    C, mask = _select(C, k, transform, sizes, real_fft, stream)
    y = _from_end(_inverse(C, transform, sizes, w, real_fft, x.dtype), axes)
    return (y, mask) if return_mask else y


def project_with_mask(x, mask, transform="dct", axes=(-2, -1), *, workers=None):
    """F^-1 M F x for a fixed support ``mask`` (as returned by ``sparse_project``).

    The linear map behind ``sparse_project`` once its support is chosen; since F is
    orthonormal and M is conjugate-closed, it is self-adjoint, so it is also the backward
    of ``sparse_project`` (``hotops.bindings.SparseProjection``).
    """
    transform = _check_transform(transform)
    axes = _check_axes(axes, x.ndim)
    x = _as_float(x, transform)
    xm, lead, sizes = _to_end(x, axes)
    real_fft = transform == "fft" and np.dtype(x.dtype).kind == "f"
    w = _workers(workers)
    C = _forward(xm, transform, len(axes), w, real_fft)
    if tuple(mask.shape) != tuple(C.shape):
        raise ValueError(f"mask must have shape {tuple(C.shape)} (the coefficients'), got {tuple(mask.shape)}")
    xp = _xp_fft(C)[0]
    C = xp.where(mask, C, 0).astype(C.dtype, copy=False)
    return _from_end(_inverse(C, transform, sizes, w, real_fft, x.dtype), axes)


# --------------------------------------------------------------------------- IHT

def _check_pos_int(name, v):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {v!r}")
    if v < 1:
        raise ValueError(f"{name} must be >= 1, got {v}")
    return int(v)


def _check_tol(tol):
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not math.isfinite(tol) or tol < 0:
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    return float(tol)


def _pixel_step(ya, xa, t, n):
    """(e, y - e) with e = H_t(y - x) per sample (numpy): one Numba pass, no temporaries."""
    from hotops.kernels.topk_threshold import cpu

    y2 = np.ascontiguousarray(ya).reshape(-1, n)
    x2 = np.ascontiguousarray(xa).reshape(-1, n)
    e2 = np.empty_like(y2)
    z2 = np.empty_like(y2)
    if y2.shape[0] and cpu.threshold_residual(y2, x2, t, e2, z2).any():
        raise ValueError("c must be finite: the residual y - x holds NaN or inf")
    return e2.reshape(ya.shape), z2.reshape(ya.shape)


def _one_blas_thread(enabled: bool):
    """``hotops.kernels._blas.single_threaded_blas``: one BLAS thread while the fused kernels
    call BLAS from Numba tasks (a no-op when not ``enabled``).

    IHT alternates BLAS products with Numba kernels; with both pools at full size, OpenBLAS's
    threads spin-wait after every product while Numba's threads want the same cores. One BLAS
    thread for the loop measured 204 -> 146 ms (median) for 1024 28x28 images, 10 iterations,
    on a 2-core machine with 2 Numba threads.
    """
    from hotops.kernels._blas import single_threaded_blas

    return single_threaded_blas(enabled)


def _iht_loop(xp, y2, x_hat, e_hat, iters, active, k, t, n, n_iter, tol, transform, sizes, d, w, real_fft):
    """Algorithm 1's iterations on the (b, *sizes) batch y2 (see :func:`iht`)."""
    b = y2.shape[0]
    for _p in range(n_iter):
        if active.size == 0:
            break
        full = active.size == b  # every sample still running: no gathers, no scatters
        idx = active if xp is np else xp.asarray(active)
        ya = y2 if full else y2[idx]
        xa = x_hat if full else x_hat[idx]
        if xp is np:  # H_t in pixel space and y - e in one pass, no temporaries
            e_new, z = _pixel_step(ya, xa, t, n)
        else:
            r = (ya - xa).reshape(active.size, n)
            e_new = topk_threshold(r, t, out=r).reshape(ya.shape)  # H_t in pixel space
            z = ya - e_new
        C = _forward(z, transform, d, w, real_fft)
        C, _ = _select(C, k, transform, sizes, real_fft)
        x_new = _inverse(C, transform, sizes, w, real_fft, y2.dtype)
        iters[active] += 1
        if tol > 0:
            diff = (x_new - xa).reshape(active.size, n)
            xn = x_new.reshape(active.size, n)
            change = xp.sqrt(xp.einsum("ij,ij->i", diff, diff))
            norm = xp.sqrt(xp.einsum("ij,ij->i", xn, xn))
            done = change <= tol * norm
            done = done.get() if hasattr(done, "get") else np.asarray(done)
        if full:
            x_hat, e_hat = x_new, e_new
        else:
            x_hat[idx] = x_new
            e_hat[idx] = e_new
        if tol > 0:
            active = active[~done]
    return x_hat, e_hat


def iht(y, k, t, n_iter=20, tol=1e-6, transform="dct", axes=(-2, -1), *, return_iterations=False, workers=None):
    """Iterative hard thresholding: split y = x + e into a k-sparse x (in F) and a t-sparse e.

    Parameters
    ----------
    y : array
        numpy or CuPy (float32/float64), or a torch tensor (read without a copy on CPU;
        the result comes back as tensors, without autograd). Batched over all leading axes.
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
    if _is_torch(y):
        import torch

        from hotops.bindings._interop import from_kernel, to_kernel

        res = iht(to_kernel(y), k, t, n_iter, tol, transform, axes, return_iterations=return_iterations,
                  workers=workers)
        return tuple(from_kernel(r) if not isinstance(r, np.ndarray) or r.dtype != np.int64 else torch.from_numpy(r)
                     for r in res)
    transform = _check_transform(transform)
    if not (isinstance(y, np.ndarray) or _is_cupy(y)):
        raise TypeError(f"y must be a numpy array, a CuPy array or a torch tensor, got {type(y).__module__}.{type(y).__qualname__}")
    if y.ndim == 0:
        raise ValueError("y must have at least one dimension, got a 0-d array")
    axes = _check_axes(axes, y.ndim)
    y = _as_float(y, transform, "y")
    if np.dtype(y.dtype).kind == "c":
        raise TypeError(f"y must be real (float32 or float64) for IHT, got {np.dtype(y.dtype).name}")
    xp = _xp_fft(y)[0]
    ym, lead, sizes = _to_end(y, axes)
    n = math.prod(sizes)
    if n == 0:
        raise ValueError(f"y has no entries over axes {axes} (shape {tuple(y.shape)})")
    k = check_k("k", k, n)
    t = check_k("t", t, n)
    n_iter = _check_pos_int("n_iter", n_iter)
    tol = _check_tol(tol)
    w = _workers(workers)
    d = len(sizes)
    y2 = xp.ascontiguousarray(ym.reshape(-1, *sizes))
    b = y2.shape[0]
    if b and not bool(xp.isfinite(y2).all()):
        raise ValueError("y must be finite (it holds NaN or inf)")
    x_hat = xp.zeros_like(y2)
    e_hat = xp.zeros_like(y2)
    iters = np.zeros(b, np.int64)
    active = np.arange(b)
    real_fft = transform == "fft"
    if transform == "dct" and d == 2 and _use_dct_matmul(y2, d):
        # small real images: every iteration of every image in one Numba pass (same arithmetic)
        from hotops.kernels.topk_threshold import cpu

        if b:
            with _one_blas_thread(True):
                bad = cpu.iht_dct_small(y2, k, t, n_iter, tol, _dct_mats_2d(*sizes, y2.dtype), x_hat, e_hat, iters)
            if bad.any():
                raise ValueError(f"the IHT iterates of {int(bad.sum())} sample(s) overflowed (not finite)")
        x_out = _from_end(x_hat.reshape(*lead, *sizes), axes)
        e_out = _from_end(e_hat.reshape(*lead, *sizes), axes)
        return (x_out, e_out, iters.reshape(lead)) if return_iterations else (x_out, e_out)
    with _one_blas_thread(xp is np):
        x_hat, e_hat = _iht_loop(xp, y2, x_hat, e_hat, iters, active, k, t, n, n_iter, tol, transform, sizes, d, w,
                                 real_fft)
    x_out = _from_end(x_hat.reshape(*lead, *sizes), axes)
    e_out = _from_end(e_hat.reshape(*lead, *sizes), axes)
    if return_iterations:
        return x_out, e_out, iters.reshape(lead)
    return x_out, e_out


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
    n_iter, tol, transform : as in :func:`iht`.

    Returns
    -------
    x_hat, e_hat : arrays of y's shape, assembled from the patches' reconstructions.

    Notes
    -----
    Each patch is modelled as k-sparse in the patch's own 2-D transform plus a t-sparse
    corruption, which lets k and t scale with the image area while every sub-problem keeps
    k * t small relative to the patch size (the condition of their recovery theorem).
    """
    if _is_torch(y):
        from hotops.bindings._interop import from_kernel, to_kernel

        return tuple(from_kernel(r) for r in patchwise_iht(to_kernel(y), k, t, patch, n_iter, tol, transform,
                                                           workers=workers))
    if not (isinstance(y, np.ndarray) or _is_cupy(y)):
        raise TypeError(f"y must be a numpy array, a CuPy array or a torch tensor, got {type(y).__module__}.{type(y).__qualname__}")
    if y.ndim < 2:
        raise ValueError(f"y must have at least 2 dimensions (..., H, W), got shape {tuple(y.shape)}")
    try:
        ph, pw = (int(p) for p in patch)
    except (TypeError, ValueError):
        raise TypeError(f"patch must be a pair of integers, got {patch!r}") from None
    h, w_ = y.shape[-2:]
    if ph < 1 or pw < 1 or h % ph or w_ % pw:
        raise ValueError(f"patch {tuple(patch)} must have positive sides dividing the image size {(h, w_)}")
    lead = y.shape[:-2]
    xp = _xp_fft(y)[0]
    nh, nw = h // ph, w_ // pw
    tiles = y.reshape(*lead, nh, ph, nw, pw)
    tiles = xp.moveaxis(tiles, -3, -2)  # (..., nh, nw, ph, pw)
    x_t, e_t = iht(xp.ascontiguousarray(tiles), k, t, n_iter=n_iter, tol=tol, transform=transform,
                   axes=(-2, -1), workers=workers)

    def untile(a):
        return xp.ascontiguousarray(xp.moveaxis(a, -2, -3)).reshape(*lead, h, w_)

    return untile(x_t), untile(e_t)
