"""The top-k hard threshold H_k and the sparse Fourier projection / IHT built on it.

Bafna, Murtagh & Vyas, "Thwarting Adversarial Examples: An L0-Robust Sparse Fourier
Transform" (NeurIPS 2018). An attacked image is modelled as y = x + e, where x is k-sparse
in an orthonormal transform F (the 2-D DCT in their experiments, the DFT in their theory)
and e is t-sparse in pixel space (an L0 attack). H_k keeps the k entries of largest
magnitude and zeroes the rest; Algorithm 1 (IHT) alternates

    e^p = H_t(y - F^-1 x^{p-1}),    x^p = H_k(F(y - e^p)),    x^0 = 0,

and Algorithm 2 runs it on image patches.

This is the op's one public entry: every function validates its arguments here and
dispatches on the array type (numpy -> the Numba kernels of ``cpu.py`` with ``scipy.fft``,
CuPy / CUDA arrays -> ``cuda.py`` with cuFFT). Arrays in, arrays out; no torch.

* :func:`topk_threshold`: H_k along one axis; :func:`hermitian_threshold`: H_k on the half
  spectra of real signals, conjugate pairs together; :func:`apply_mask`.
* :func:`sparse_project` (F^-1 H_k F over ``axes``, batched over the other axes),
  :func:`project_with_mask` (F^-1 M F for a fixed support), :func:`iht`,
  :func:`patchwise_iht`. The algorithm lives in ``transforms.py`` (F, F^-1 and their
  matrices), ``project.py`` (the projection and its fused small-image launchers) and
  ``recovery.py`` (the IHT iterations).

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

import math
import numbers

import numpy as np

from .._backend import CPU, backend_of, is_cupy, is_torch
from .._validate import PARTIAL_OVERLAP, SAME_MEMORY, check_axes, check_dtype, check_int, check_out, overlap
from . import config, project, recovery
from .transforms import TRANSFORMS, _hermitian_partner, from_end, hermitian_partner, to_end, workers_for, xp_fft

__all__ = ["topk_threshold", "hermitian_threshold", "apply_mask", "hermitian_partner", "check_k", "check_transform",
           "sparse_project", "project_with_mask", "iht", "patchwise_iht", "TRANSFORMS"]

_CPU_DTYPES = (np.float32, np.float64, np.complex64, np.complex128)
_CUDA_DTYPES = (np.float32, np.float64)


def check_k(name: str, k, n: int) -> int:
    """``k`` as an int in [1, n]; ``TypeError``/``ValueError`` naming ``name`` otherwise."""
    k = check_int(name, k)
    if not 1 <= k <= n:
        raise ValueError(f"{name} must be in [1, {n}] (the row length), got {k}")
    return k


def check_transform(transform) -> str:
    """``transform`` if it is one of :data:`TRANSFORMS`; ``ValueError`` naming it otherwise."""
    if transform not in TRANSFORMS:
        raise ValueError(f"transform must be one of {TRANSFORMS}, got {transform!r}")
    return transform


def _check_axis(axis, ndim: int) -> int:
    axis = check_int("axis", axis)
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of range for an array with {ndim} dimensions")
    return axis % ndim


def topk_threshold(c, k, axis=-1, out=None, return_mask=False, stream=None):
    """Keep the k entries of largest magnitude along ``axis``, set the others to zero.

    Parameters
    ----------
    c : array
        numpy (float32, float64, complex64, complex128: Numba CPU kernel) or a CUDA array
        (float32, float64: numba.cuda kernel). Any shape; every 1-D slice along ``axis`` is a
        row. Must be finite.
    k : int
        Entries kept per row, 1 <= k <= row length.
    axis : int
        The axis along which rows run (default: last).
    out : array, optional
        Writeable result array of c's shape and dtype on c's device; may be ``c`` itself
        (in place). An ``out`` that overlaps ``c`` only in part is written through a
        temporary (the result is as if they were disjoint). Otherwise ``c`` is never
        modified.
    return_mask : bool
        Also return the boolean mask of the kept entries (exactly k True per row).
    stream : int, optional
        CUDA stream handle to launch on.

    Returns
    -------
    out : array of c's shape and dtype; and ``mask`` (bool) if requested.

    Raises
    ------
    TypeError
        c not a numpy/CUDA array, or of another dtype; k or axis not an integer.
    ValueError
        k outside [1, row length], axis out of range, c empty along ``axis`` or holding NaN
        or inf (named in the message), ``out`` of the wrong shape.

    Notes
    -----
    H_k of Bafna et al. (2018), Algorithm 1 (x <- H_k(F(y - e)), e <- H_t(y - F^-1 x)).
    Complex entries are ranked by a float64 key monotone in |z|: re^2 + im^2 for complex64
    (exact products), ``hypot(re, im)`` for complex128 (no overflow). Ties at the
    k-th magnitude go to the lower index, so the result is deterministic and exactly k
    entries survive per row (``min(k, nnz)`` of them non-zero). Selection is a radix select
    on the magnitude's bit pattern, O(n) per row (see ``cpu.py``); the GPU twin selects with
    one block per row, and several blocks per row beyond ``config.CUDA_ROW_MAX`` entries.
    """
    backend = backend_of(c=c, out=out)
    dtype = check_dtype("c", c, _CPU_DTYPES if backend == CPU else _CUDA_DTYPES)
    if len(c.shape) == 0:
        raise ValueError("c must have at least one dimension, got a 0-d array")
    ax = _check_axis(axis, len(c.shape))
    n = int(c.shape[ax])
    if n == 0:
        raise ValueError(f"c has no entries along axis {axis} (shape {tuple(c.shape)})")
    k = check_k("k", k, n)
    in_place = False
    if out is not None:
        check_out("out", out, c.shape, dtype, contiguous=False)
        how = overlap(c, out)
        if how == PARTIAL_OVERLAP:  # out overlaps c in part: compute first, then write
            res = topk_threshold(c, k, ax, None, return_mask, stream)
            _write_out(out, res[0] if return_mask else res, backend, stream)
            return (out, res[1]) if return_mask else out
        in_place = how == SAME_MEMORY
    if backend == CPU:
        return _topk_cpu(c, k, ax, out, return_mask, in_place)
    from . import cuda

    return cuda.topk_threshold(c, k, ax, out, return_mask, stream=stream, in_place=in_place)


def _write_out(out, res, backend, stream=None) -> None:
    """out[...] = res, on the host or the device."""
    if backend == CPU:
        out[...] = res
        return
    from .. import _cuda

    _cuda.copy_into(out, res, stream)


def _raise_nonfinite(name: str, bad: np.ndarray) -> None:
    rows = np.flatnonzero(bad)
    raise ValueError(f"{name} must be finite: {rows.size} row(s) hold NaN or inf (first: row {rows[0]})")


def _topk_cpu(c, k, ax, out, return_mask, in_place):
    from . import cpu

    if in_place and not np.isfinite(c).all():
        raise ValueError("c must be finite (it holds NaN or inf); nothing was written")
    x = np.moveaxis(c, ax, -1)
    n = x.shape[-1]
    rows_shape = x.shape
    x2 = np.ascontiguousarray(x.reshape(-1, n)) if x.size else np.empty((0, n), c.dtype)
    # write straight into out when its rows are contiguous (in place: x2 is then c's view)
    direct = out is not None and ax == c.ndim - 1 and out.flags.c_contiguous
    if out is not None and direct:
        out2 = out.reshape(-1, n)
    else:
        out2 = np.empty_like(x2)
    mask2 = np.empty(x2.shape, np.bool_) if return_mask else None
    if x2.shape[0]:
        bad = cpu.threshold_rows(x2, k, out2, mask2)
        if bad.any():
            _raise_nonfinite("c", bad)
    result = out2.reshape(rows_shape)
    result = np.moveaxis(result, -1, ax)
    if out is None:
        out = result
    elif not direct:
        out[...] = result
    if return_mask:
        return out, np.moveaxis(mask2.reshape(rows_shape), -1, ax)
    return out


def hermitian_threshold(X, k, signal_shape, out=None, return_mask=True):
    """H_k on the half spectra of real signals, keeping conjugate pairs together.

    Parameters
    ----------
    X : numpy complex array, shape (..., *half_shape)
        ``scipy.fft.rfftn`` of real signals of shape ``signal_shape`` over the trailing axes.
    k : int
        Budget counted in coefficients of the *full* spectrum: a conjugate pair counts 2, a
        self-conjugate coefficient (zero frequency, Nyquist frequencies) counts 1.
    signal_shape : tuple of int
        Shape of the real signal over the transformed (trailing) axes.

    Returns
    -------
    out, mask : X's shape; the kept half-spectrum entries and their mask.

    Notes
    -----
    The kept set is the longest prefix of the ranking (magnitude descending, lower index
    first on ties) whose cost is <= k: k or k - 1 coefficients of the full spectrum are kept
    (fewer only when the spectrum has fewer non-zero ones), and the inverse transform of the
    result is exactly the projection of the real signal onto a real, conjugate-closed set of
    at most k Fourier coefficients, as the DFT model of Bafna et al. (2018) requires.
    """
    from . import cpu

    if backend_of(X=X, out=out) != CPU:
        raise TypeError("X must be a numpy array: the pair-aware select runs on the CPU")
    dtype = check_dtype("X", X, (np.complex64, np.complex128))
    signal_shape = _check_shape("signal_shape", signal_shape)
    d = len(signal_shape)
    half = (*signal_shape[:-1], signal_shape[-1] // 2 + 1)
    if tuple(X.shape[len(X.shape) - d:]) != half:
        raise ValueError(f"X must end in the half-spectrum shape {half}, got {tuple(X.shape)}")
    k = check_k("k", k, math.prod(signal_shape))
    if out is not None:
        check_out("out", out, X.shape, dtype, contiguous=False)
    m = math.prod(half)
    lead = tuple(X.shape[: len(X.shape) - d])
    x2 = np.ascontiguousarray(X.reshape(-1, m))
    out2 = np.empty_like(x2)
    mask2 = np.zeros(x2.shape, np.bool_)
    if x2.shape[0]:
        bad = cpu.threshold_hermitian(x2, _hermitian_partner(signal_shape), k, out2, mask2)
        if bad.any():
            _raise_nonfinite("X", bad)
    res = out2.reshape(*lead, *half)
    if out is not None:
        out[...] = res
        res = out
    mask = mask2.reshape(*lead, *half)
    return (res, mask) if return_mask else res


def _check_shape(name: str, shape) -> tuple[int, ...]:
    """A signal shape: a non-empty sequence of positive integers (numpy integers too)."""
    try:
        values = tuple(shape)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of integers, got {shape!r}") from None
    if not values:
        raise ValueError(f"{name} must name at least one axis, got {shape!r}")
    return tuple(check_int(f"{name}[{i}]", v, min=1) for i, v in enumerate(values))


def apply_mask(x, mask, out=None):
    """x where mask else 0 (numpy, same shapes): the linear part of H_k with a fixed support."""
    from . import cpu

    if backend_of(x=x, mask=mask, out=out) != CPU:
        raise TypeError("x must be a numpy array: apply_mask runs on the CPU")
    dtype = np.dtype(x.dtype)
    if dtype.kind not in "biu" and dtype not in _CPU_DTYPES:
        raise TypeError(f"x must have a float32, float64, complex64, complex128, integer or bool dtype; "
                        f"got {dtype.name}")
    if np.dtype(mask.dtype).kind not in "biu":
        raise TypeError(f"mask must have dtype bool (or integer 0/1), got {np.dtype(mask.dtype).name}")
    if tuple(mask.shape) != tuple(x.shape):
        raise ValueError(f"mask must have shape {tuple(x.shape)}, got {tuple(mask.shape)}")
    if out is not None:
        check_out("out", out, x.shape, dtype, contiguous=False)
    x2 = np.ascontiguousarray(x).reshape(-1, x.shape[-1] if x.ndim and x.size else 1)
    m2 = np.ascontiguousarray(mask, dtype=np.bool_).reshape(x2.shape)
    out2 = np.empty_like(x2)
    if x2.size:
        cpu.apply_mask(x2, m2, out2)
    res = out2.reshape(x.shape)
    if out is not None:
        out[...] = res
        return out
    return res


# --------------------------------------------------------------------------- sparse projection

def _check_array(name: str, x, entry: str) -> None:
    """TypeError unless x is a numpy or CuPy array (the arrays the projections take)."""
    if isinstance(x, np.ndarray) or is_cupy(x):
        return
    if is_torch(x):
        raise TypeError(f"{name} must be a numpy array or a CuPy array, got torch.Tensor "
                        f"(torch tensors go through hotops.bindings or hotops.{entry})")
    raise TypeError(f"{name} must be a numpy array, a CuPy array or a torch tensor, "
                    f"got {type(x).__module__}.{type(x).__qualname__}")


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


def sparse_project(x, k, transform="dct", axes=(-2, -1), *, return_mask=False, workers=None, stream=None):
    """Project x onto its k largest coefficients in an orthonormal transform: F^-1 H_k F x.

    Parameters
    ----------
    x : numpy or CuPy array
        float32/float64 (complex64/complex128 accepted; integers only for ``'dct'``,
        converted to float64). Batched over every axis not in ``axes``.
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
    stream : int, optional
        CUDA stream handle for the numba.cuda select (CuPy input).

    Returns
    -------
    y : array of x's shape and (float) dtype; and the mask if requested.

    Notes
    -----
    H_k of Bafna et al. (2018), Algorithm 1, x^p = H_k(F(y - e^p)), with F orthonormal so that
    the projection is orthogonal: y = F^-1 M F x, M the 0/1 support. Ties at the k-th
    magnitude keep the lower coefficient index (flattened, C order). Real numpy images with
    both sides <= ``config.DCT_MATMUL_MAX`` run in one fused Numba pass (``project.py``).
    """
    if (type(x) is np.ndarray and type(axes) is tuple and axes == (-2, -1) and type(k) is int
            and x.ndim >= 2 and x.dtype.char in "fd" and transform in TRANSFORMS):
        # the common case (real numpy images, default axes) goes straight to the fused kernels,
        # past the generic validation below: for small batches that validation would cost a
        # noticeable share of the call (this fast path checks the same conditions)
        h, w = x.shape[-2:]
        side = config.DCT_MATMUL_MAX
        if 0 < h <= side and 0 < w <= side and 1 <= k <= h * w:
            fused = project.dct_project_fused if transform == "dct" else project.fft_project_fused
            y, mask = fused(x, k, x.shape[:-2], (h, w), return_mask)
            return (y, mask) if return_mask else y
    transform = check_transform(transform)
    _check_array("x", x, "sparse_project")
    if x.ndim == 0:
        raise ValueError("x must have at least one dimension, got a 0-d array")
    axes = _check_axes(axes, x.ndim)
    x = _as_float(x, transform)
    xm, lead, sizes = to_end(x, axes)
    n = math.prod(sizes)
    if n == 0:
        raise ValueError(f"x has no entries over axes {axes} (shape {tuple(x.shape)})")
    k = check_k("k", k, n)
    y, mask = project.project(xm, k, transform, axes, lead, sizes, want_mask=return_mask, workers=workers,
                              stream=stream)
    return (y, mask) if return_mask else y


def project_with_mask(x, mask, transform="dct", axes=(-2, -1), *, workers=None):
    """F^-1 M F x for a fixed support ``mask`` (as returned by :func:`sparse_project`).

    The linear map behind ``sparse_project`` once its support is chosen; since F is
    orthonormal and M is conjugate-closed, it is self-adjoint, so it is also the backward
    of ``sparse_project`` (``hotops.bindings.SparseProjection``). numpy or CuPy x; ``mask``
    a bool array of the coefficients' shape on the same device.
    """
    transform = check_transform(transform)
    _check_array("x", x, "project_with_mask")
    _check_array("mask", mask, "project_with_mask")
    if x.ndim == 0:
        raise ValueError("x must have at least one dimension, got a 0-d array")
    if is_cupy(x) != is_cupy(mask):
        raise TypeError("x and mask are on different devices (one CuPy, one numpy array)")
    if np.dtype(mask.dtype) != np.bool_:
        raise TypeError(f"mask must have dtype bool (the support), got {np.dtype(mask.dtype).name}")
    axes = _check_axes(axes, x.ndim)
    x = _as_float(x, transform)
    xm, _lead, sizes = to_end(x, axes)
    return project.project_masked(xm, mask, transform, axes, sizes, workers)


# --------------------------------------------------------------------------- IHT

def _check_tol(tol):
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not math.isfinite(tol) or tol < 0:
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    return float(tol)


def iht(y, k, t, n_iter=20, tol=1e-6, transform="dct", axes=(-2, -1), *, return_iterations=False, workers=None):
    """Iterative hard thresholding: split y = x + e into a k-sparse x (in F) and a t-sparse e.

    Parameters
    ----------
    y : numpy or CuPy array
        Real (float32/float64; integers for ``'dct'``, as float64). Batched over all axes
        not in ``axes``.
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
        Also return the iterations each sample ran (int64 numpy array of the batch shape).
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
    transform = check_transform(transform)
    _check_array("y", y, "iht")
    if y.ndim == 0:
        raise ValueError("y must have at least one dimension, got a 0-d array")
    axes = _check_axes(axes, y.ndim)
    y = _as_float(y, transform, "y")
    if np.dtype(y.dtype).kind == "c":
        raise TypeError(f"y must be real (float32 or float64) for IHT, got {np.dtype(y.dtype).name}")
    xp = xp_fft(y)[0]
    ym, lead, sizes = to_end(y, axes)
    n = math.prod(sizes)
    if n == 0:
        raise ValueError(f"y has no entries over axes {axes} (shape {tuple(y.shape)})")
    k = check_k("k", k, n)
    t = check_k("t", t, n)
    n_iter = check_int("n_iter", n_iter, min=1)
    tol = _check_tol(tol)
    w = workers_for(workers)
    y2 = xp.ascontiguousarray(ym.reshape(-1, *sizes))
    if y2.shape[0] and not bool(xp.isfinite(y2).all()):
        raise ValueError("y must be finite (it holds NaN or inf)")
    x_hat, e_hat, iters = recovery.run(y2, k, t, n_iter, tol, transform, sizes, w)
    x_out = from_end(x_hat.reshape(*lead, *sizes), axes)
    e_out = from_end(e_hat.reshape(*lead, *sizes), axes)
    if return_iterations:
        return x_out, e_out, iters.reshape(lead)
    return x_out, e_out


def patchwise_iht(y, k, t, patch=(7, 7), n_iter=20, tol=1e-6, transform="dct", *, workers=None):
    """Algorithm 2 of Bafna et al. (2018): IHT on non-overlapping patches of the last two axes.

    Parameters
    ----------
    y : numpy or CuPy array (..., H, W)
        float32/float64.
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
    _check_array("y", y, "patchwise_iht")
    if y.ndim < 2:
        raise ValueError(f"y must have at least 2 dimensions (..., H, W), got shape {tuple(y.shape)}")
    if (isinstance(patch, (str, bytes)) or not hasattr(patch, "__len__") or len(patch) != 2
            or any(isinstance(p, bool) or not isinstance(p, numbers.Integral) for p in patch)):
        raise TypeError(f"patch must be a pair of integers, got {patch!r}")
    ph, pw = (int(p) for p in patch)
    h, w_ = y.shape[-2:]
    if ph < 1 or pw < 1 or h % ph or w_ % pw:
        raise ValueError(f"patch {tuple(patch)} must have positive sides dividing the image size {(h, w_)}")
    lead = y.shape[:-2]
    xp = xp_fft(y)[0]
    nh, nw = h // ph, w_ // pw
    tiles = y.reshape(*lead, nh, ph, nw, pw)
    tiles = xp.moveaxis(tiles, -3, -2)  # (..., nh, nw, ph, pw)
    x_t, e_t = iht(xp.ascontiguousarray(tiles), k, t, n_iter=n_iter, tol=tol, transform=transform,
                   axes=(-2, -1), workers=workers)

    def untile(a):
        return xp.ascontiguousarray(xp.moveaxis(a, -2, -3)).reshape(*lead, h, w_)

    return untile(x_t), untile(e_t)
