"""The orthonormal transforms F of the sparse Fourier projection, batched over leading axes.

Bafna, Murtagh & Vyas, "Thwarting Adversarial Examples: An L0-Robust Sparse Fourier
Transform" (NeurIPS 2018) model an image as k-sparse in an orthonormal F: the 2-D DCT-II in
their experiments, the DFT in their theory. Here:

* ``forward`` / ``inverse``: F and F^-1 over the trailing d axes of a numpy or CuPy array
  (``scipy.fft`` with ``workers`` threads, or ``cupyx.scipy.fft`` on cuFFT), ``norm='ortho'``.
  The DCT of real numpy input with sides <= ``config.DCT_MATMUL_MAX`` is computed as matrix
  products instead (``dct_by_matmul``): one GEMM over all rows per axis.
* ``dct_matrix``, ``dct_mats_2d``, ``dft_mats_2d``: the cached, read-only matrices of the
  product forms and of the fused small-image kernels in ``cpu.py``.
* ``hermitian_partner``: the conjugate pairs of the ``rfftn`` half spectrum of a real signal,
  which the pair-aware select (``cpu.threshold_hermitian``) keeps together.
* ``to_end`` / ``from_end``: move the transformed axes last and back.

Arguments are validated by the op's entry (``__init__.py``); nothing here checks them again.
"""
from __future__ import annotations

import functools
import os

import numpy as np

from .._backend import is_cupy
from . import config

#: The transforms F: the orthonormal DCT-II and the orthonormal DFT.
TRANSFORMS = ("dct", "fft")


def workers_for(workers) -> int:
    """scipy.fft's thread count: ``workers``, or Numba's thread count when None."""
    if workers is None:
        try:
            import numba

            return numba.get_num_threads()
        except Exception:
            return os.cpu_count() or 1
    return int(workers)


def xp_fft(x):
    """(numpy-like module, scipy.fft-like module) for x's device."""
    if is_cupy(x):
        import cupy
        import cupyx.scipy.fft as cfft

        return cupy, cfft
    import scipy.fft as sfft

    return np, sfft


def to_end(x, axes):
    """x with ``axes`` moved to the end, and the shapes (lead, sizes)."""
    d = len(axes)
    ends = tuple(range(x.ndim - d, x.ndim))
    if tuple(axes) == ends:  # already last: no moveaxis (it costs more than the check)
        xm = x
    else:
        xp = np if isinstance(x, np.ndarray) else xp_fft(x)[0]
        xm = xp.moveaxis(x, axes, ends)
    return xm, tuple(xm.shape[: x.ndim - d]), tuple(xm.shape[x.ndim - d:])


def from_end(y, axes):
    """Inverse of :func:`to_end`: the trailing axes of y back to ``axes``."""
    d = len(axes)
    ends = tuple(range(y.ndim - d, y.ndim))
    if tuple(axes) == ends:
        return y
    xp = np if isinstance(y, np.ndarray) else xp_fft(y)[0]
    return xp.moveaxis(y, ends, axes)


# --------------------------------------------------------------------------- DCT as products

@functools.lru_cache(maxsize=64)
def dct_matrix(n: int, dtype, transposed: bool = False) -> np.ndarray:
    """The orthonormal DCT-II matrix D (n x n): C = D @ x, x = D.T @ C (C-contiguous,
    also when ``transposed``: a transposed *view* makes numpy's stacked matmul slow)."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    D = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    D[0] /= np.sqrt(2.0)
    D = np.ascontiguousarray(D.T if transposed else D).astype(dtype)
    D.setflags(write=False)
    return D


def dct_by_matmul(a, d: int, inverse: bool):
    """DCT-II (or its inverse) over the last d in (1, 2) axes of a real numpy array a."""
    shape = a.shape
    # rows times D^T along the last axis (forward), times D (inverse)
    t = np.ascontiguousarray(a).reshape(-1, shape[-1]) @ dct_matrix(shape[-1], a.dtype, not inverse)
    t = t.reshape(shape)
    if d == 2:
        t = np.matmul(dct_matrix(shape[-2], a.dtype, inverse), t)
    return t


def use_dct_matmul(a, d: int) -> bool:
    """Whether the DCT over a's last d axes runs as products (and small real images take
    the fused kernels): real numpy input, d in (1, 2), sides <= ``config.DCT_MATMUL_MAX``."""
    return (isinstance(a, np.ndarray) and d in (1, 2) and a.dtype in (np.float32, np.float64)
            and max(a.shape[a.ndim - d:]) <= config.DCT_MATMUL_MAX)


@functools.lru_cache(maxsize=32)
def dct_mats_2d(h: int, w: int, dtype) -> tuple[np.ndarray, ...]:
    """(Dw^T, Dh, Dw, Dh^T), C-contiguous, for ``cpu.dct_project_small`` / ``cpu.iht_dct_small``."""
    Dh = dct_matrix(h, dtype)
    Dw = dct_matrix(w, dtype)
    return dct_matrix(w, dtype, True), Dh, Dw, dct_matrix(h, dtype, True)


@functools.lru_cache(maxsize=32)
def dft_mats_2d(h: int, w: int, dtype) -> tuple[np.ndarray, ...]:
    """(Wf, FH, Ch, Sh, Wi) for ``cpu.fft_project_small``.

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


# --------------------------------------------------------------------------- F and F^-1

def forward(xm, transform: str, d: int, workers: int, real_fft: bool):
    """F over the last d axes of xm: DCT-II, rfftn (``real_fft``) or fftn, orthonormal."""
    xp, fft = xp_fft(xm)
    ax = tuple(range(xm.ndim - d, xm.ndim))
    kw = {"workers": workers} if xp is np else {}
    if transform == "dct" and use_dct_matmul(xm, d):
        return dct_by_matmul(xm, d, inverse=False)
    if transform == "dct":
        return fft.dctn(xm, type=2, norm="ortho", axes=ax, **kw)
    if real_fft:
        return fft.rfftn(xm, axes=ax, norm="ortho", **kw)
    return fft.fftn(xm, axes=ax, norm="ortho", **kw)


def inverse(C, transform: str, sizes, workers: int, real_fft: bool, dtype):
    """F^-1 over the trailing ``len(sizes)`` axes of the coefficients C, cast to ``dtype``."""
    xp, fft = xp_fft(C)
    d = len(sizes)
    ax = tuple(range(C.ndim - d, C.ndim))
    kw = {"workers": workers} if xp is np else {}
    if transform == "dct" and use_dct_matmul(C, d):
        y = dct_by_matmul(C, d, inverse=True)
    elif transform == "dct":
        y = fft.idctn(C, type=2, norm="ortho", axes=ax, **kw)
    elif real_fft:
        y = fft.irfftn(C, s=sizes, axes=ax, norm="ortho", **kw)
    else:
        y = fft.ifftn(C, axes=ax, norm="ortho", **kw)
    return y.astype(dtype, copy=False)


# --------------------------------------------------------------------------- half spectra

def hermitian_partner(shape: tuple[int, ...]) -> np.ndarray:
    """Flat partner table of the rfftn half spectrum of a real signal of ``shape``.

    For half-spectrum index f (flattened over the half spectrum's shape, whose last axis
    has ``shape[-1] // 2 + 1`` entries): -1 when the conjugate frequency -f lies outside
    the half spectrum, else the flat index of -f inside it (f itself when self-conjugate).
    The table is cached per shape and read-only: every projection of a shape reuses it
    instead of rebuilding the meshgrid.
    """
    from .._validate import check_int, check_size

    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__len__") or not len(shape):
        raise TypeError(f"shape must be a non-empty sequence of integers, got {shape!r}")
    shape = tuple(check_int("shape", s, min=1) for s in shape)
    check_size("shape", (*shape[:-1], shape[-1] // 2 + 1), np.int64, "a partner table")
    return _hermitian_partner(shape)


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
