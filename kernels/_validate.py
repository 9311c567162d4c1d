"""Typed argument checks shared by the kernels: errors name the argument and the value."""
from __future__ import annotations

import numpy as np


def dtype_of(x) -> np.dtype:
    return np.dtype(x.dtype)


def check_ndim(name: str, x, ndim: int, layout: str = "") -> None:
    if len(x.shape) != ndim:
        what = f" {layout}" if layout else ""
        raise ValueError(f"{name} must have {ndim} dimensions{what}, got shape {tuple(x.shape)}")


def check_dtype(name: str, x, allowed) -> np.dtype:
    dtype = dtype_of(x)
    allowed = tuple(np.dtype(a) for a in allowed)
    if dtype not in allowed:
        names = ", ".join(a.name for a in allowed)
        raise TypeError(f"{name} must have dtype {names}; got {dtype.name}")
    return dtype


def check_out(name: str, out, shape, dtype) -> None:
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(out.shape)}")
    if dtype_of(out) != np.dtype(dtype):
        raise TypeError(f"{name} must have dtype {np.dtype(dtype).name}, got {dtype_of(out).name}")
    flags = getattr(out, "flags", None)
    if flags is not None and not flags["C_CONTIGUOUS"]:
        raise ValueError(f"{name} must be C-contiguous")
