"""The sparse projection F^-1 H_k F over the trailing axes, for validated numpy / CuPy input.

Bafna, Murtagh & Vyas (NeurIPS 2018), Algorithm 1, step x^p = H_k(F(y - e^p)): keep the k
coefficients of largest magnitude in an orthonormal F (see ``transforms.py``) and transform
back. Three ways to run it:

* real numpy images with both sides <= ``config.DCT_MATMUL_MAX``: one Numba pass over the
  batch (``cpu.dct_project_small`` / ``cpu.fft_project_small``): transform, select and
  inverse per image while it is in cache, no (B, h, w) temporaries, and no BLAS thread pool
  spin-waiting against Numba's between a batched product and the select;
* other numpy input: ``transforms.forward`` (scipy.fft or DCT products), the Numba row
  select (``cpu.threshold_rows``, pair-aware ``cpu.threshold_hermitian`` for the half
  spectra of real signals), ``transforms.inverse``;
* CuPy input: cuFFT and the numba.cuda select (``cuda.topk_threshold``); complex spectra
  ranked by |z| on the device, half spectra by a stable device sort of the pair costs.

The op's entry (``__init__.py``) validates the arguments and calls these launchers with
the transformed axes moved last (``transforms.to_end``).
"""
from __future__ import annotations

import math

import numpy as np

from .._backend import is_cupy
from . import config
from .transforms import (_hermitian_partner, dct_mats_2d, dft_mats_2d, forward, from_end, inverse, use_dct_matmul,
                         workers_for, xp_fft)


def one_blas_thread(enabled: bool):
    """``hotops.kernels._blas.single_threaded_blas``: one BLAS thread while Numba's tasks call
    BLAS (a no-op when not ``enabled``).

    The fused kernels call BLAS from inside their parallel region, and IHT alternates BLAS
    products with Numba kernels; with both thread pools at full size, OpenBLAS's threads
    spin-wait after every product while Numba's threads want the same cores.
    """
    from .._blas import single_threaded_blas

    return single_threaded_blas(enabled)


def fused_needs_blas_limit(h: int, w: int) -> bool:
    """Whether a fused small-image kernel's products (at most h w (max(h, w) + 2)
    multiply-adds each) could make BLAS start its own threads (``config.SERIAL_GEMM_MNK``)."""
    return h * w * (max(h, w) + 2) > config.SERIAL_GEMM_MNK


def dct_project_fused(xm, k, lead, sizes, want_mask=True):
    """The DCT projection of real numpy images (``sizes`` = (h, w), both <= DCT_MATMUL_MAX)
    in one Numba pass over the batch: transform, select and inverse per image while it is
    in cache, single-threaded BLAS inside the parallel region; for k << h w the inverse runs
    over the kept coefficients only. ``want_mask=False`` skips the mask (then None)."""
    from . import cpu

    h, w = sizes
    x3 = np.ascontiguousarray(xm.reshape(-1, h, w))
    out3 = np.empty_like(x3)
    mask2 = np.empty((x3.shape[0], h * w), np.bool_) if want_mask else None
    if x3.shape[0]:
        if fused_needs_blas_limit(h, w):
            with one_blas_thread(True):
                bad = cpu.dct_project_small(x3, k, dct_mats_2d(h, w, x3.dtype), out3, mask2)
        else:  # no context manager at all: even a no-op one costs per call
            bad = cpu.dct_project_small(x3, k, dct_mats_2d(h, w, x3.dtype), out3, mask2)
        if bad:
            raise ValueError(f"x must be finite: {bad} sample(s) hold NaN or inf")
    return out3.reshape(*lead, h, w), (mask2.reshape(*lead, h, w) if want_mask else None)


def fft_project_fused(xm, k, lead, sizes, want_mask=True):
    """The real-DFT projection of numpy images (both sides <= DCT_MATMUL_MAX) in one Numba
    pass over the batch: the forward DFT as two small products per image, the pair-aware
    select, the inverse as a sum over the kept coefficients along h and one product along
    w, single-threaded BLAS inside the parallel region. ``want_mask=False`` skips the mask
    output (then None)."""
    from . import cpu

    h, w = sizes
    wh = w // 2 + 1
    x3 = np.ascontiguousarray(xm.reshape(-1, h, w))
    out3 = np.empty_like(x3)
    mask2 = np.empty((x3.shape[0], h * wh), np.bool_) if want_mask else None
    if x3.shape[0]:
        if fused_needs_blas_limit(h, w):
            with one_blas_thread(True):
                bad = cpu.fft_project_small(x3, k, dft_mats_2d(h, w, x3.dtype), _hermitian_partner((h, w)), out3, mask2)
        else:  # no context manager at all: even a no-op one costs per call
            bad = cpu.fft_project_small(x3, k, dft_mats_2d(h, w, x3.dtype), _hermitian_partner((h, w)), out3, mask2)
        if bad:
            raise ValueError(f"x must be finite: {bad} sample(s) hold NaN or inf")
    return out3.reshape(*lead, h, w), (mask2.reshape(*lead, h, wh) if want_mask else None)


def select(C, k, sizes, real_fft, stream=None):
    """H_k of the coefficients C (..., *coef_shape) over the trailing axes: (C_kept, mask).

    numpy C is overwritten when it is C-contiguous (the transforms' outputs are fresh).
    """
    if is_cupy(C):
        return select_cuda(C, k, sizes, real_fft, stream)
    from . import cpu

    d = len(sizes)
    lead = C.shape[: C.ndim - d]
    coef_shape = C.shape[C.ndim - d:]
    m = math.prod(coef_shape)
    C2 = np.ascontiguousarray(C.reshape(-1, m))
    mask2 = np.zeros(C2.shape, np.bool_)
    if C2.shape[0]:
        if real_fft:
            bad = cpu.threshold_hermitian(C2, _hermitian_partner(tuple(sizes)), k, C2, mask2)
        else:
            bad = cpu.threshold_rows(C2, k, C2, mask2)
        if bad.any():
            raise ValueError(f"x must be finite: {int(bad.sum())} sample(s) hold NaN or inf")
    return C2.reshape(*lead, *coef_shape), mask2.reshape(*lead, *coef_shape)


def select_cuda(C, k, sizes, real_fft, stream=None):
    """:func:`select` for CuPy coefficients."""
    import cupy

    from . import cuda

    d = len(sizes)
    lead = C.shape[: C.ndim - d]
    coef_shape = C.shape[C.ndim - d:]
    m = math.prod(coef_shape)
    C2 = cupy.ascontiguousarray(C.reshape(-1, m))
    if not bool(cupy.isfinite(C2).all()):
        raise ValueError("x must be finite (it holds NaN or inf)")
    if not real_fft and C2.dtype.kind != "c":
        out2, mask2 = cuda.topk_threshold(C2, k, 1, C2, True, stream=stream, in_place=True)
    elif not real_fft:
        # complex rows: the numba.cuda select is real-only; rank |z| on the device instead
        mag = cupy.abs(C2)
        _mag_t, mask2 = cuda.topk_threshold(mag, k, 1, None, True, stream=stream)
        out2 = cupy.where(mask2, C2, 0)
    else:
        # Hermitian half spectra: weighted ranking (pairs cost 2) by a stable device sort.
        part = cupy.asarray(_hermitian_partner(tuple(sizes)))
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


def project(xm, k, transform, axes, lead, sizes, *, want_mask, workers=None, stream=None):
    """F^-1 H_k F of xm over its trailing ``len(sizes)`` axes (``axes``: where they go back to).

    xm: numpy or CuPy, float or complex, the transformed axes last (``transforms.to_end``);
    k validated. Returns (y, mask); mask is None when not ``want_mask`` on the fused path.
    """
    d = len(sizes)
    if use_dct_matmul(xm, d) and d == 2:  # small real images: one fused pass
        fused = dct_project_fused if transform == "dct" else fft_project_fused
        y, mask = fused(xm, k, lead, sizes, want_mask)
        return from_end(y, axes), mask
    real_fft = transform == "fft" and np.dtype(xm.dtype).kind == "f"
    w = workers_for(workers)
    C = forward(xm, transform, d, w, real_fft)
    C, mask = select(C, k, sizes, real_fft, stream)
    return from_end(inverse(C, transform, sizes, w, real_fft, xm.dtype), axes), mask


def project_masked(xm, mask, transform, axes, sizes, workers=None):
    """F^-1 M F of xm for the fixed support ``mask`` (the coefficients' shape, checked here:
    it is known once F has run)."""
    real_fft = transform == "fft" and np.dtype(xm.dtype).kind == "f"
    w = workers_for(workers)
    C = forward(xm, transform, len(sizes), w, real_fft)
    if tuple(mask.shape) != tuple(C.shape):
        raise ValueError(f"mask must have shape {tuple(C.shape)} (the coefficients'), got {tuple(mask.shape)}")
    xp = xp_fft(C)[0]
    C = xp.where(mask, C, 0).astype(C.dtype, copy=False)
    return from_end(inverse(C, transform, sizes, w, real_fft, xm.dtype), axes)
