"""RGB <-> YCbCr exactly as MATLAB's ``rgb2ycbcr`` / ``ycbcr2rgb`` define them (numpy, CPU).

ITU-R BT.601 with MATLAB's studio-swing constants: for RGB in [0, 1],

    Y  =  16 + ( 65.481 R + 128.553 G +  24.966 B)
    Cb = 128 + (-37.797 R -  74.203 G + 112.000 B)
    Cr = 128 + (112.000 R -  93.786 G -  18.214 B)

on the 0-255 scale, so Y spans [16, 235] and Cb, Cr span [16, 240]. The super-resolution
protocol of Kim et al. (2016, VDSR) and its predecessors evaluates PSNR on this Y channel
of 8-bit images.

MATLAB's class rules, reproduced here:

* float input (float32/float64, RGB in [0, 1]) gives float output on the [0, 1] scale, i.e.
  the values above divided by 255 (``T = (1/255) * origT``, ``offset = (1/255) * origOffset``);
* uint8 input (0-255) gives uint8 output: the linear combination ``(1/255) * origT * rgb +
  origOffset`` is evaluated in float64 and rounded half away from zero with saturation
  (MATLAB's ``imlincomb``);
* ``ycbcr2rgb`` inverts with ``inv(origT)``; float output is clipped to [0, 1] as MATLAB
  does, uint8 output is rounded and saturated.
"""
from __future__ import annotations

import numpy as np

__all__ = ["rgb2ycbcr", "ycbcr2rgb", "ORIG_T", "ORIG_OFFSET"]

ORIG_T = np.array(
    [[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]], dtype=np.float64
)
ORIG_OFFSET = np.array([16.0, 128.0, 128.0], dtype=np.float64)
_DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.uint8))


def _check_image(name: str, x) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        cls = type(x)
        raise TypeError(
            f"{name} must be a numpy array (colour conversion runs on the CPU), got {cls.__module__}.{cls.__qualname__}"
        )
    if x.ndim < 1 or x.shape[-1] != 3:
        raise ValueError(f"{name} must have 3 channels on its last axis ((H, W, 3) or (..., 3)), got shape {x.shape}")
    if x.dtype not in _DTYPES:
        raise TypeError(f"{name} must have dtype float32, float64, uint8; got {x.dtype.name}")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _lincomb(x: np.ndarray, T: np.ndarray, offset: np.ndarray) -> np.ndarray:
    # out[..., p] = ((T[p,0] x0 + T[p,1] x1) + T[p,2] x2) + offset[p], in float64
    xd = x.astype(np.float64, copy=False)
    x0, x1, x2 = xd[..., 0], xd[..., 1], xd[..., 2]
    out = np.empty(x.shape, dtype=np.float64)
    for p in range(3):
        out[..., p] = ((T[p, 0] * x0 + T[p, 1] * x1) + T[p, 2] * x2) + offset[p]
    return out


def _round_u8(v: np.ndarray) -> np.ndarray:
    # MATLAB's double -> uint8: round half away from zero, saturate
    return np.floor(np.clip(v, 0.0, 255.0) + 0.5).clip(0, 255).astype(np.uint8)


def rgb2ycbcr(rgb):
    """MATLAB's ``rgb2ycbcr``: RGB -> Y'CbCr (BT.601, Y in [16, 235] on the 0-255 scale).

    Parameters
    ----------
    rgb : numpy array, shape (..., 3)
        float32/float64 in [0, 1], or uint8 in [0, 255]; channels on the last axis.

    Returns
    -------
    numpy array, same shape and dtype: float -> [0, 1] scale (Y in [16/255, 235/255]);
    uint8 -> rounded as MATLAB does.

    Notes
    -----
    Kim et al. (2016, VDSR) and the standard SR protocol compute PSNR on the Y channel of
    ``rgb2ycbcr`` applied to the 8-bit image.
    """
    x = _check_image("rgb", rgb)
    if x.dtype == np.uint8:
        y = _lincomb(x, (1.0 / 255.0) * ORIG_T, 1.0 * ORIG_OFFSET)
        return _round_u8(y)
    y = _lincomb(x, (1.0 / 255.0) * ORIG_T, (1.0 / 255.0) * ORIG_OFFSET)
    return y.astype(x.dtype, copy=False)


def ycbcr2rgb(ycbcr):
    """MATLAB's ``ycbcr2rgb``: the inverse of :func:`rgb2ycbcr`.

    Parameters
    ----------
    ycbcr : numpy array, shape (..., 3)
        float32/float64 on the [0, 1] scale, or uint8.

    Returns
    -------
    numpy array, same shape and dtype; float output clipped to [0, 1] (as MATLAB), uint8
    output rounded half away from zero and saturated.
    """
    x = _check_image("ycbcr", ycbcr)
    t_inv = np.linalg.inv(ORIG_T)
    if x.dtype == np.uint8:
        rgb = _lincomb(x, 255.0 * t_inv, -(255.0 * t_inv @ ORIG_OFFSET))
        return _round_u8(rgb)
    rgb = _lincomb(x, 255.0 * t_inv, -(t_inv @ ORIG_OFFSET))
    return np.clip(rgb, 0.0, 1.0).astype(x.dtype, copy=False)
