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


def check_out(name: str, out, shape, dtype, *, contiguous: bool = True) -> None:
    """An output array: ``shape``, ``dtype``, writeable and (unless ``contiguous=False``)
    C-contiguous; ``ValueError``/``TypeError`` naming ``name`` otherwise."""
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(out.shape)}")
    if dtype_of(out) != np.dtype(dtype):
        raise TypeError(f"{name} must have dtype {np.dtype(dtype).name}, got {dtype_of(out).name}")
    check_writeable(name, out)
    flags = getattr(out, "flags", None)
    if contiguous and flags is not None and not flags["C_CONTIGUOUS"]:
        raise ValueError(f"{name} must be C-contiguous")


def check_writeable(name: str, x) -> None:
    """``ValueError("<name> must be writeable")`` for a read-only numpy array (or a CUDA array
    whose ``__cuda_array_interface__`` says read-only)."""
    readonly = False
    if isinstance(x, np.ndarray):
        readonly = not x.flags.writeable
    else:
        try:
            readonly = not x.flags["WRITEABLE"]  # numba's simulator arrays wrap numpy ones
        except Exception:
            try:
                readonly = bool(x.__cuda_array_interface__["data"][1])
            except Exception:
                readonly = False
    if readonly:
        raise ValueError(f"{name} must be writeable (it is read-only)")


# --------------------------------------------------------------------------- memory overlap

NO_OVERLAP, SAME_MEMORY, PARTIAL_OVERLAP = "none", "same", "partial"


def _host_array(x):
    """The numpy array behind x (numpy itself, or a numba simulator device array), or None."""
    if isinstance(x, np.ndarray):
        return x
    inner = getattr(type(x), "__name__", "") == "FakeCUDAArray" and getattr(x, "_ary", None)
    return inner if isinstance(inner, np.ndarray) else None


def _device_layout(x):
    """(pointer, shape, strides in bytes, itemsize) of a CUDA array, from its
    ``__cuda_array_interface__``; None when x has none."""
    try:
        cai = x.__cuda_array_interface__
    except Exception:
        return None
    shape = tuple(int(s) for s in cai["shape"])
    itemsize = np.dtype(cai["typestr"]).itemsize
    strides = cai.get("strides")
    if strides is None:  # C-contiguous
        strides, step = [], itemsize
        for s in reversed(shape):
            strides.append(step)
            step *= max(s, 1)
        strides = tuple(reversed(strides))
    return int(cai["data"][0]), shape, tuple(int(s) for s in strides), itemsize


def _byte_range(ptr, shape, strides, itemsize):
    lo = hi = ptr
    for s, st in zip(shape, strides):
        if st >= 0:
            hi += (s - 1) * st
        else:
            lo += (s - 1) * st
    return lo, hi + itemsize


def overlap(a, b) -> str:
    """How the memory of arrays a and b relates: ``'none'`` (disjoint), ``'same'`` (the same
    elements in the same places: same start, shape, strides and item size, as ``out=x``) or
    ``'partial'`` (anything else that may share memory).

    numpy arrays (and numba simulator arrays) are compared exactly with
    ``np.shares_memory`` (a conservative 'partial' when that problem is too hard); CUDA
    arrays by the byte ranges their ``__cuda_array_interface__`` spans."""
    if a is None or b is None:
        return NO_OVERLAP
    ha, hb = _host_array(a), _host_array(b)
    if ha is not None and hb is not None:
        if ha.size == 0 or hb.size == 0 or not np.may_share_memory(ha, hb):
            return NO_OVERLAP
        same = (ha.__array_interface__["data"][0] == hb.__array_interface__["data"][0]
                and ha.shape == hb.shape and ha.strides == hb.strides and ha.itemsize == hb.itemsize)
        if same:
            return SAME_MEMORY
        try:
            shared = np.shares_memory(ha, hb, max_work=1 << 20)
        except Exception:  # numpy's TooHardError: assume the worst
            shared = True
        return PARTIAL_OVERLAP if shared else NO_OVERLAP
    if ha is not None or hb is not None:
        return NO_OVERLAP  # host and device memory never overlap
    la, lb = _device_layout(a), _device_layout(b)
    if la is None or lb is None:
        return SAME_MEMORY if a is b else NO_OVERLAP
    if 0 in la[1] or 0 in lb[1]:
        return NO_OVERLAP
    ra, rb = _byte_range(*la), _byte_range(*lb)
    if ra[1] <= rb[0] or rb[1] <= ra[0]:
        return NO_OVERLAP
    return SAME_MEMORY if la == lb else PARTIAL_OVERLAP


def overlaps_any(out, *inputs, allow_same: bool = False) -> bool:
    """Whether ``out`` shares memory with any of ``inputs`` (None entries ignored) in a way
    the kernel cannot write through: any overlap, or only a partial one when
    ``allow_same`` (an op that works in place on ``out=x``)."""
    if out is None:
        return False
    for x in inputs:
        how = overlap(out, x)
        if how == PARTIAL_OVERLAP or (how == SAME_MEMORY and not allow_same):
            return True
    return False


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


def check_real(name: str, value, *, min=None, max=None, finite: bool = True) -> float:
    """``value`` as a float within [min, max] (either bound optional), finite unless
    ``finite=False``.

    ``TypeError`` for anything that is not a real number (bool included), ``ValueError``
    for NaN, for inf when ``finite``, and outside the bounds; messages name the argument."""
    import math
    import numbers

    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if math.isnan(value) or (finite and math.isinf(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if min is not None and value < min:
        raise ValueError(f"{name} must be >= {min}, got {value!r}")
    if max is not None and value > max:
        raise ValueError(f"{name} must be <= {max}, got {value!r}")
    return value


def _memory_bytes() -> int | None:
    """This machine's physical memory in bytes (None where the OS does not say)."""
    import os

    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def check_size(name: str, shape, dtype, what: str = "the result") -> None:
    """``ValueError`` naming ``name`` when an array of ``shape`` and ``dtype`` (``what``, as
    ``name`` asks for it) would not fit in this machine's memory: refused before anything is
    allocated, where numpy would fail with a ``MemoryError`` or the OS would kill the
    process part-way through."""
    import math

    n = math.prod(int(s) for s in shape)
    nbytes = n * np.dtype(dtype).itemsize
    limit = _memory_bytes()
    if limit is not None and nbytes > limit:
        raise ValueError(f"{name} asks for {what} of shape {tuple(int(s) for s in shape)} "
                         f"({nbytes / 2**30:.3g} GiB), more than this machine's memory ({limit / 2**30:.3g} GiB)")
