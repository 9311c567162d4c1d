"""PSNR and SSIM as the super-resolution protocol computes them (numpy, scikit-image; CPU).

The SR protocol (Kim et al. 2016, VDSR, and the papers they compare with) compares the Y
channel of the restored and the ground-truth image after shaving ``scale`` pixels off every
border, in float64, with peak 1 for images on the [0, 1] scale.

``ssim`` is the structural similarity of Wang, Bovik, Sheikh & Simoncelli, "Image Quality
Assessment: From Error Visibility to Structural Similarity", IEEE TIP 13(4), 2004, as
scikit-image computes it (``skimage.metrics.structural_similarity`` with the paper's
settings: an 11 x 11 Gaussian window with sigma = 1.5, K1 = 0.01, K2 = 0.03, population
covariances), on the float64 images after the protocol's shave; this module adds the
protocol's checks and defaults (shave, data_range from the dtype).
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .._validate import check_int

__all__ = ["psnr", "ssim"]

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.uint8))
SIGMA = 1.5
WINDOW = 11  # the Gaussian window's side: radius int(3.5 * 1.5 + 0.5) = 5, as scikit-image
K1, K2 = 0.01, 0.03


def _check_pair(a, b, shave, data_range):
    for name, x in (("a", a), ("b", b)):
        if not isinstance(x, np.ndarray):
            cls = type(x)
            raise TypeError(f"{name} must be a numpy array, got {cls.__module__}.{cls.__qualname__}")
        if x.dtype not in _DTYPES:
            raise TypeError(f"{name} must have dtype float32, float64, uint8; got {x.dtype.name}")
        if x.ndim not in (2, 3):
            raise ValueError(f"{name} must have 2 or 3 dimensions ((H, W) or (H, W, C)), got shape {x.shape}")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}")
    shave = check_int("shave", shave, min=0)
    h, w = a.shape[:2]
    if h - 2 * shave < 1 or w - 2 * shave < 1:
        raise ValueError(f"shave={shave} leaves nothing of a {h} x {w} image")
    if data_range is None:
        kinds = {a.dtype.kind, b.dtype.kind}
        if kinds == {"u"}:
            data_range = 255.0
        elif kinds == {"f"}:
            data_range = 1.0
        else:
            raise ValueError(
                f"a ({a.dtype.name}) and b ({b.dtype.name}) mix integer and float images: pass data_range"
            )
    elif not isinstance(data_range, numbers.Real) or isinstance(data_range, bool):
        raise TypeError(f"data_range must be a number, got {data_range!r}")
    data_range = float(data_range)
    if not (math.isfinite(data_range) and data_range > 0):
        raise ValueError(f"data_range must be positive and finite, got {data_range!r}")
    out = []
    for name, x in (("a", a), ("b", b)):
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        x = x[shave : h - shave, shave : w - shave] if shave else x
        out.append(x.astype(np.float64))
    return out[0], out[1], data_range


def psnr(a, b, shave: int = 0, data_range=None) -> float:
    """Peak signal-to-noise ratio 10 log10(data_range^2 / MSE), in dB.

    Parameters
    ----------
    a, b : numpy arrays, same shape (H, W) or (H, W, C)
        float32/float64 or uint8; compared in float64.
    shave : int
        Pixels removed from each border of H and W first (the SR protocol shaves ``scale``).
    data_range : float, optional
        Peak value; default 1.0 for float images, 255 for uint8 (required when mixing).

    Returns
    -------
    float; ``inf`` for identical images.
    """
    x, y, peak = _check_pair(a, b, shave, data_range)
    mse = float(np.mean((x - y) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(peak * peak / mse)


def ssim(a, b, shave: int = 0, data_range=None) -> float:
    """Mean structural similarity (Wang et al. 2004), Gaussian window sigma 1.5.

    Parameters
    ----------
    a, b : numpy arrays, same shape (H, W) or (H, W, C)
        float32/float64 or uint8; for (H, W, C) the result is the mean over channels.
    shave : int
        Border pixels removed first (SR protocol: the scale factor).
    data_range : float, optional
        Dynamic range L in C1 = (K1 L)^2, C2 = (K2 L)^2; 1.0 for floats, 255 for uint8.

    Returns
    -------
    float in [-1, 1].

    Notes
    -----
    ``skimage.metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=L)`` on the shaved float64 images: population
    (not sample) covariances, K1 = 0.01, K2 = 0.03, an 11 x 11 window; the map is averaged
    over positions at least 5 pixels from the (shaved) border. Images smaller than 11 x 11
    after shaving raise ``ValueError``.
    """
    from skimage.metrics import structural_similarity

    x, y, peak = _check_pair(a, b, shave, data_range)
    if x.shape[0] < WINDOW or x.shape[1] < WINDOW:
        raise ValueError(f"ssim needs images of at least {WINDOW} x {WINDOW} after shaving (shave={shave}), "
                         f"got {x.shape[:2]}")
    return float(structural_similarity(x, y, gaussian_weights=True, sigma=SIGMA, use_sample_covariance=False,
                                       data_range=peak, K1=K1, K2=K2, channel_axis=None if x.ndim == 2 else 2))
