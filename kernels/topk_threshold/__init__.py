"""Top-k hard thresholding H_k: keep the k entries of largest magnitude per row, zero the rest.

Bafna, Murtagh & Vyas, "Thwarting Adversarial Examples: An L0-Robust Sparse Fourier
Transform" (NeurIPS 2018): H_k is the projection used by their iterative hard thresholding
(Algorithm 1) in the transform domain (k coefficients) and in pixel space (t pixels).
"""
from __future__ import annotations

import functools
import math
import numbers

import numpy as np

from .._backend import CPU, backend_of
from .._validate import check_dtype

__all__ = ["topk_threshold", "hermitian_threshold", "apply_mask", "hermitian_partner", "check_k"]

_CPU_DTYPES = (np.float32, np.float64, np.complex64, np.complex128)
_CUDA_DTYPES = (np.float32, np.float64)


def check_k(name: str, k, n: int) -> int:
    """``k`` as an int in [1, n]; ``TypeError``/``ValueError`` naming ``name`` otherwise."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {k!r}")
    k = int(k)
    if not 1 <= k <= n:
        raise ValueError(f"{name} must be in [1, {n}] (the row length), got {k}")
    return k


def _check_axis(axis, ndim: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"axis must be an integer, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of range for an array with {ndim} dimensions")
    return int(axis) % ndim


def _shares_memory(a, b) -> bool:
    if a is None or b is None:
        return False
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return np.shares_memory(a, b)
    try:
        return a.__cuda_array_interface__["data"][0] == b.__cuda_array_interface__["data"][0]
    except Exception:
        return a is b


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
        Result array of c's shape and dtype on c's device; may be ``c`` itself (in place).
        Otherwise ``c`` is never modified.
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
    if out is not None:
        if tuple(out.shape) != tuple(c.shape):
            raise ValueError(f"out must have shape {tuple(c.shape)}, got {tuple(out.shape)}")
        if np.dtype(out.dtype) != dtype:
            raise TypeError(f"out must have dtype {dtype.name}, got {np.dtype(out.dtype).name}")
    if backend == CPU:
        return _topk_cpu(c, k, ax, out, return_mask)
    from . import cuda

    return cuda.topk_threshold(c, k, ax, out, return_mask, stream=stream,
                               in_place=_shares_memory(c, out))


def _raise_nonfinite(name: str, bad: np.ndarray) -> None:
    rows = np.flatnonzero(bad)
    raise ValueError(f"{name} must be finite: {rows.size} row(s) hold NaN or inf (first: row {rows[0]})")


def _topk_cpu(c, k, ax, out, return_mask):
    from . import cpu

    in_place = out is not None and np.shares_memory(c, out)
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


@functools.lru_cache(maxsize=64)
def hermitian_partner(shape: tuple[int, ...]) -> np.ndarray:
    """Flat partner table of the rfftn half spectrum of a real signal of ``shape``.

    For half-spectrum index f (flattened over the half spectrum's shape, whose last axis
    has ``shape[-1] // 2 + 1`` entries): -1 when the conjugate frequency -f lies outside
    the half spectrum, else the flat index of -f inside it (f itself when self-conjugate).
    The table is cached per shape and read-only (the meshgrid build took ~5 us per
    ``sparse_project`` call).
    """
    return _hermitian_partner(tuple(int(s) for s in shape))


@functools.lru_cache(maxsize=64)
def _hermitian_partner(shape: tuple[int, ...]) -> np.ndarray:
    *lead, w = shape
    wh = w // 2 + 1
    grids = np.meshgrid(*[np.arange(s) for s in lead], np.arange(wh), indexing="ij")
    neg = [(-g) % s for g, s in zip(grids[:-1], lead)]
    v = grids[-1]
    inside = (v == 0) | ((w % 2 == 0) & (v == w // 2))
    half_shape = (*lead, wh)
    flat_neg = np.ravel_multi_index((*neg, v), half_shape) if lead else v
    part = np.where(inside, flat_neg, -1).astype(np.int64).ravel()
    part.setflags(write=False)
    return part


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

    backend_of(X=X, out=out)
    check_dtype("X", X, (np.complex64, np.complex128))
    signal_shape = tuple(int(s) for s in signal_shape)
    d = len(signal_shape)
    half = (*signal_shape[:-1], signal_shape[-1] // 2 + 1)
    if tuple(X.shape[len(X.shape) - d:]) != half:
        raise ValueError(f"X must end in the half-spectrum shape {half}, got {tuple(X.shape)}")
    k = check_k("k", k, math.prod(signal_shape))
    m = math.prod(half)
    lead = tuple(X.shape[: len(X.shape) - d])
    x2 = np.ascontiguousarray(X.reshape(-1, m))
    out2 = np.empty_like(x2)
    mask2 = np.zeros(x2.shape, np.bool_)
    if x2.shape[0]:
        bad = cpu.threshold_hermitian(x2, hermitian_partner(signal_shape), k, out2, mask2)
        if bad.any():
            _raise_nonfinite("X", bad)
    res = out2.reshape(*lead, *half)
    if out is not None:
        out[...] = res
        res = out
    mask = mask2.reshape(*lead, *half)
    return (res, mask) if return_mask else res


def apply_mask(x, mask, out=None):
    """x where mask else 0 (numpy, same shapes): the linear part of H_k with a fixed support."""
    from . import cpu

    if tuple(mask.shape) != tuple(x.shape):
        raise ValueError(f"mask must have shape {tuple(x.shape)}, got {tuple(mask.shape)}")
    x2 = np.ascontiguousarray(x).reshape(-1, x.shape[-1] if x.ndim else 1)
    m2 = np.ascontiguousarray(mask, dtype=np.bool_).reshape(x2.shape)
    out2 = np.empty_like(x2)
    if x2.size:
        cpu.apply_mask(x2, m2, out2)
    res = out2.reshape(x.shape)
    if out is not None:
        out[...] = res
        return out
    return res
