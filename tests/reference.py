"""Slow, obviously-correct references for every kernel. Never import hotops here."""
from __future__ import annotations

import numpy as np
import torch


def channel_max_abs(g) -> np.ndarray:
    """Simonyan et al. (2013) Sec. 3.1: M = max_c |g|, computed by torch in float64."""
    t = torch.as_tensor(np.asarray(g, dtype=np.float64))
    return t.abs().amax(1).numpy()


def channel_max_abs_argmax(g) -> np.ndarray:
    """First channel reaching the maximum magnitude, or the first NaN channel."""
    a = np.abs(np.asarray(g, dtype=np.float64))
    nan = np.isnan(a)
    first_nan = nan.argmax(1)
    return np.where(nan.any(1), first_nan, np.nan_to_num(a, nan=-1.0).argmax(1)).astype(np.int32)


def channel_max_abs_backward(grad_out, g) -> np.ndarray:
    """Loop over every pixel: sign(g) * grad_out on the winning channel, 0 elsewhere."""
    g = np.asarray(g, dtype=np.float64)
    grad_out = np.asarray(grad_out, dtype=np.float64)
    win = channel_max_abs_argmax(g)
    grad = np.zeros_like(g)
    n_img, _, height, width = g.shape
    for n in range(n_img):
        for i in range(height):
            for j in range(width):
                c = win[n, i, j]
                v = g[n, c, i, j]
                grad[n, c, i, j] = v if np.isnan(v) else np.sign(v) * grad_out[n, i, j]
    return grad


# --- VDSR: MATLAB bicubic imresize, colour, metrics, adjustable clipping --------------------


def _keys_cubic(d: float) -> float:
    """Keys (1981) cubic convolution kernel, a = -0.5, as MATLAB's imresize writes it."""
    a = abs(d)
    if a <= 1.0:
        return 1.5 * a**3 - 2.5 * a**2 + 1.0
    if a <= 2.0:
        return -0.5 * a**3 + 2.5 * a**2 - 4.0 * a + 2.0
    return 0.0


def matlab_contributions(n_in: int, n_out: int, scale: float, antialias: bool):
    """MATLAB imresize's taps for one axis, one output pixel at a time (0-based indices).

    Returns a list with, for every output pixel, a list of (input index, weight) in tap order.
    """
    stretch = antialias and scale < 1.0
    width = 4.0 / scale if stretch else 4.0
    taps = int(np.ceil(width)) + 2
    mirror = list(range(n_in)) + list(range(n_in - 1, -1, -1))
    rows = []
    for x in range(1, n_out + 1):
        u = x / scale + 0.5 * (1.0 - 1.0 / scale)
        left = int(np.floor(u - width / 2.0))
        pairs = []
        for p in range(taps):
            j = left + p
            w = scale * _keys_cubic(scale * (u - j)) if stretch else _keys_cubic(u - j)
            pairs.append((mirror[(j - 1) % (2 * n_in)], w))
        total = np.sum(np.array([w for _, w in pairs]))
        rows.append([(j, w / total) for j, w in pairs])
    return rows


def _matlab_plan(h, w, scale, output_shape):
    if output_shape is not None:
        oh, ow = output_shape
        return (oh, ow), (oh / h, ow / w)
    sh, sw = (scale, scale) if np.ndim(scale) == 0 else scale
    return (int(np.ceil(sh * h)), int(np.ceil(sw * w))), (float(sh), float(sw))


def _resize_axis(x: np.ndarray, axis: int, rows, quantize: bool) -> np.ndarray:
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, 0)
    out = np.zeros((len(rows),) + x.shape[1:])
    for i, pairs in enumerate(rows):
        acc = np.zeros(x.shape[1:])
        for j, w in pairs:
            acc = acc + w * x[j]
        out[i] = acc
    if quantize:
        out = np.floor(np.clip(out, 0.0, 255.0) + 0.5)
    return np.moveaxis(out, 0, axis)


def imresize_matlab(x, scale=None, output_shape=None, antialias=True) -> np.ndarray:
    """MATLAB ``imresize(x, ..., 'bicubic')``, one output pixel and one tap at a time.

    Layouts: (H, W) and (H, W, C) resize axes 0, 1; (N, C, H, W) resizes axes 2, 3. The axis
    with the smaller scale goes first (height on ties). uint8 is rounded half away from zero
    and saturated after each axis, as MATLAB does per one-dimensional pass. Returns float64
    (uint8 values as float64 for uint8 input).
    """
    x = np.asarray(x)
    ah, aw = (2, 3) if x.ndim == 4 else (0, 1)
    (oh, ow), (sh, sw) = _matlab_plan(x.shape[ah], x.shape[aw], scale, output_shape)
    quantize = x.dtype == np.uint8
    order = [(ah, oh, sh), (aw, ow, sw)] if sh <= sw else [(aw, ow, sw), (ah, oh, sh)]
    y = x.astype(np.float64)
    for axis, n_out, s in order:
        y = _resize_axis(y, axis, matlab_contributions(y.shape[axis], n_out, s, antialias), quantize)
    return y


def imresize_matrix(n_in: int, n_out: int, scale: float, antialias: bool) -> np.ndarray:
    """Dense (n_out, n_in) matrix of one axis of the MATLAB resize (duplicate taps added)."""
    m = np.zeros((n_out, n_in))
    for i, pairs in enumerate(matlab_contributions(n_in, n_out, scale, antialias)):
        for j, w in pairs:
            m[i, j] += w
    return m


def imresize_transpose_dense(g, input_shape, scale=None, output_shape=None, antialias=True) -> np.ndarray:
    """A_H^T g A_W for the dense per-axis matrices: the adjoint of ``imresize_matlab``."""
    g = np.asarray(g, dtype=np.float64)
    h, w = input_shape
    (oh, ow), (sh, sw) = _matlab_plan(h, w, scale, output_shape)
    mh, mw = imresize_matrix(h, oh, sh, antialias), imresize_matrix(w, ow, sw, antialias)
    if g.ndim == 4:
        return np.einsum("ia,ncij,jb->ncab", mh, g, mw)
    if g.ndim == 3:
        return np.einsum("ia,ijc,jb->abc", mh, g, mw)
    return mh.T @ g @ mw


def rgb2ycbcr_matlab(rgb) -> np.ndarray:
    """MATLAB ``rgb2ycbcr`` pixel by pixel: floats on the [0, 1] scale, uint8 rounded."""
    rgb = np.asarray(rgb)
    t = np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]])
    off = np.array([16.0, 128.0, 128.0])
    flat = rgb.reshape(-1, 3).astype(np.float64)
    out = np.empty_like(flat)
    for p in range(flat.shape[0]):
        for c in range(3):
            if rgb.dtype == np.uint8:
                k = (1.0 / 255.0) * t[c]  # MATLAB: T = scaleFactor.uint8.T * origT
                v = (k[0] * flat[p, 0] + k[1] * flat[p, 1] + k[2] * flat[p, 2]) + off[c]
                out[p, c] = np.floor(min(max(v, 0.0), 255.0) + 0.5)
            else:
                out[p, c] = (t[c, 0] * flat[p, 0] + t[c, 1] * flat[p, 1] + t[c, 2] * flat[p, 2] + off[c]) / 255.0
    return out.reshape(rgb.shape)


def psnr(a, b, shave=0, peak=1.0) -> float:
    """10 log10(peak^2 / MSE) over the image with ``shave`` pixels cut from each border."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if shave:
        a, b = a[shave:-shave, shave:-shave], b[shave:-shave, shave:-shave]
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(peak**2 / mse))


def clip_adjustable(grads, theta, lr):
    """Kim et al. (2016) Sec. 3.1: a loop of clamps to [-theta/lr, theta/lr]; returns copies
    and the fraction of elements whose magnitude exceeded the bound (in each array's dtype)."""
    out, clipped, total = [], 0, 0
    for g in grads:
        g = np.array(g, copy=True)
        bound = g.dtype.type(theta / lr)
        clipped += int(np.count_nonzero(np.abs(g) > bound))
        total += g.size
        out.append(np.clip(g, -bound, bound))
    return out, (clipped / total if total else 0.0)
