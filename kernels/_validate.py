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


def check_axes(axes, ndim: int, what: str = "an array") -> tuple[int, ...]:
    """``axes`` (an integer or a sequence of them) as non-negative, distinct axis numbers of
    a ``ndim``-dimensional ``what``; TypeError/ValueError naming the value otherwise."""
    import numbers

    if isinstance(axes, numbers.Integral) and not isinstance(axes, bool):
        axes = (axes,)
    try:
        axes = tuple(axes)
    except TypeError:
        raise TypeError(f"axes must be an integer or a tuple of integers, got {axes!r}") from None
    if not axes:
        raise ValueError("axes must name at least one axis, got ()")
    out = []
    for a in axes:
        if isinstance(a, bool) or not isinstance(a, numbers.Integral):
            raise TypeError(f"axes must hold integers, got {axes!r}")
        if not -ndim <= a < ndim:
            raise ValueError(f"axes {axes} out of range for {what} with {ndim} dimensions")
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"axes must not repeat an axis, got {axes!r}")
    return tuple(out)


def check_int(name: str, value, *, min=None, max=None) -> int:
    """``value`` as an int within [min, max] (either bound optional).

    ``TypeError`` for anything that is not an integer (bool included, and floats even when
    integral), ``ValueError`` outside the bounds; both messages name the argument and value.
    """
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if min is not None and value < min:
        raise ValueError(f"{name} must be >= {min}, got {value}")
    if max is not None and value > max:
        raise ValueError(f"{name} must be <= {max}, got {value}")
    return value
