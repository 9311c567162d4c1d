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
