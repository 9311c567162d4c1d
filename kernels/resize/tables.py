"""Per-axis weight/index tables of MATLAB's bicubic ``imresize`` (pure numpy, cached).

A separable resize applies, along one axis at a time, out[i] = sum_k w[i, k] * in[idx[i, k]].
The tables (idx, w) depend only on (input length, output length, scale, antialias), so they
are built once per key with ``functools.lru_cache`` and returned read-only; the Numba and
numba.cuda kernels only apply them.

The construction follows MATLAB's ``imresize`` (its ``contributions`` step) exactly:

* kernel: Keys' cubic convolution kernel with a = -0.5 (Keys 1981, eq. 15), support [-2, 2];
* when shrinking (scale < 1) with antialiasing, the kernel is stretched by 1/scale and
  multiplied by scale, h(x) = scale * cubic(scale * x), so it low-passes before sampling;
* output pixel x (1-based) samples the input at u = x / scale + 0.5 * (1 - 1 / scale);
* taps: left = floor(u - width / 2), then P = ceil(width) + 2 consecutive indices;
* weights h(u - index) normalised to sum to one per output pixel;
* indices outside [1, n] are mirrored with the periodic symmetric extension
  aux = [1, 2, ..., n, n, n - 1, ..., 1], index -> aux[(index - 1) mod 2n]: this works for
  any n >= 1, so images smaller than the kernel support (even one pixel) are handled the way
  MATLAB handles them, by reflecting as many times as needed;
* tap columns whose weight is zero for every output pixel are dropped (MATLAB's "kill").

The transposed table (the adjoint of the axis resampling, used by the autograd backward)
lists, for each input index m, the output pixels i that read it and the summed weight
sum_{k : idx[i, k] = m} w[i, k]; it is again a padded (n_in, Q) gather table, so the same
kernels apply it.
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np

__all__ = ["AxisTable", "axis_table", "cubic"]

KERNEL_WIDTH = 4.0  # support of Keys' cubic, [-2, 2]


class AxisTable(NamedTuple):
    """Gather tables for one axis: ``out[i] = sum_k weights[i, k] * in[indices[i, k]]``.

    ``indices``/``weights`` map n_in -> n_out (forward); ``t_indices``/``t_weights`` map
    n_out -> n_in (the transpose). All arrays are read-only; indices are 0-based int32 and
    weights float64. ``identity`` is True when the forward table is the identity (scale 1).
    """

    n_in: int
    n_out: int
    scale: float
    antialias: bool
    indices: np.ndarray
    weights: np.ndarray
    t_indices: np.ndarray
    t_weights: np.ndarray
    identity: bool


def cubic(x) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (Keys 1981, eq. 15), as MATLAB writes it.

    x: real numbers (array-like); the kernel is 0 outside [-2, 2] (also at +-inf) and NaN
    stays NaN. ``TypeError`` for complex, object and other non-real input."""
    a = np.asarray(x)
    if a.dtype.kind not in "fiu":
        raise TypeError(f"x must hold real numbers, got dtype {a.dtype}")
    inf = np.isinf(a)
    if not inf.any():
        return _cubic(a)
    with np.errstate(invalid="ignore"):  # inf - inf inside the polynomial; replaced by 0 below
        return np.where(inf, 0.0, _cubic(a))


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2 = ax * ax
    ax3 = ax2 * ax
    inner = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1.0)
    outer = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1.0) & (ax <= 2.0))
    return inner + outer


def _forward(n_in: int, n_out: int, scale: float, antialias: bool):
    if antialias and scale < 1.0:
        width = KERNEL_WIDTH / scale

        def h(d):
            return scale * _cubic(scale * d)
    else:
        width = KERNEL_WIDTH
        h = _cubic
    x = np.arange(1, n_out + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    taps = int(math.ceil(width)) + 2
    index = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    weights = h(u[:, None] - index)
    weights = weights / weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(n_in), np.arange(n_in - 1, -1, -1)])  # 0-based aux
    index = mirror[np.mod(index.astype(np.int64) - 1, 2 * n_in)]
    keep = np.any(weights != 0.0, axis=0)
    return np.ascontiguousarray(index[:, keep], dtype=np.int32), np.ascontiguousarray(weights[:, keep])


def _transpose(indices: np.ndarray, weights: np.ndarray, n_in: int):
    n_out, taps = indices.shape
    rows = indices.ravel().astype(np.int64)
    cols = np.repeat(np.arange(n_out, dtype=np.int64), taps)
    vals = weights.ravel()
    nz = vals != 0.0
    rows, cols, vals = rows[nz], cols[nz], vals[nz]
    order = np.lexsort((cols, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    # merge duplicate (input, output) pairs: mirroring can send one tap twice to an input
    if rows.size:
        first = np.ones(rows.size, dtype=bool)
        first[1:] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])
        starts = np.flatnonzero(first)
        vals = np.add.reduceat(vals, starts)
        rows, cols = rows[starts], cols[starts]
    counts = np.bincount(rows, minlength=n_in)
    q = max(1, int(counts.max()) if counts.size else 1)
    t_idx = np.zeros((n_in, q), dtype=np.int32)
    t_w = np.zeros((n_in, q), dtype=np.float64)
    slot = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
    t_idx[rows, slot] = cols
    t_w[rows, slot] = vals
    return t_idx, t_w


def axis_table(n_in: int, n_out: int, scale: float, antialias: bool) -> AxisTable:
    """The cached forward and transposed tables of one axis (see the module docstring).

    Parameters
    ----------
    n_in, n_out : int
        Input and output lengths along the axis (>= 1).
    scale : float
        The scale factor MATLAB uses for the weights: the one the caller gave, or
        n_out / n_in when an output size was given.
    antialias : bool
        Stretch the kernel by 1/scale when shrinking.

    Notes
    -----
    Keys, "Cubic convolution interpolation for digital image processing", IEEE Trans.
    ASSP 29(6), 1981; MATLAB ``imresize(..., 'bicubic')`` (function ``contributions``).
    """
    from .._validate import check_int, check_real, check_size

    n_in, n_out = check_int("n_in", n_in, min=1), check_int("n_out", n_out, min=1)
    scale = check_real("scale", scale)
    if not scale > 0.0:
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    if not isinstance(antialias, (bool, np.bool_)):
        raise TypeError(f"antialias must be a bool, got {antialias!r}")
    antialias = bool(antialias)
    width = KERNEL_WIDTH / scale if antialias and scale < 1.0 else KERNEL_WIDTH
    check_size("scale", (n_out, math.ceil(width) + 2), np.float64, "a weight table")
    return _axis_table(n_in, n_out, scale, antialias)


@functools.lru_cache(maxsize=512)
def _axis_table(n_in: int, n_out: int, scale: float, antialias: bool) -> AxisTable:
    indices, weights = _forward(n_in, n_out, scale, antialias)
    identity = (
        n_in == n_out
        and indices.shape[1] == 1
        and bool(np.all(weights == 1.0))
        and bool(np.all(indices[:, 0] == np.arange(n_out)))
    )
    t_indices, t_weights = _transpose(indices, weights, n_in)
    for a in (indices, weights, t_indices, t_weights):
        a.setflags(write=False)
    return AxisTable(n_in, n_out, scale, antialias, indices, weights, t_indices, t_weights, identity)
