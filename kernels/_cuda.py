"""Device-side plumbing shared by the numba.cuda kernels (imported only on the GPU path).

* ``as_device(x)``: a zero-copy numba view of any CUDA array (CuPy, torch via
  ``__cuda_array_interface__``, numba); under the simulator, its ``FakeCUDAArray`` as is.
* ``empty(shape, dtype, like)``: allocation in the caller's family (CuPy in, CuPy out), so
  that memory comes from CuPy's pool rather than numba's allocator.
* ``stream_for(stream, like)``: the stream to launch on. Bindings pass torch's current
  stream handle; CuPy inputs default to CuPy's current stream; otherwise numba's default.
"""
from __future__ import annotations

import functools

import numpy as np

from ._backend import is_simulated_device_array, require_cuda, simulator_enabled


@functools.lru_cache(maxsize=None)
def numba_cuda():
    require_cuda("a numba.cuda kernel")
    from numba import cuda

    return cuda


def _cupy_or_none():
    if simulator_enabled():
        return None
    try:
        import cupy
    except Exception:
        return None
    return cupy


def is_cupy(x) -> bool:
    return type(x).__module__.startswith("cupy")


def as_device(x):
    """Zero-copy numba device view of a CUDA array."""
    cuda = numba_cuda()
    if is_simulated_device_array(x):
        return x
    if simulator_enabled():
        raise TypeError(
            f"under NUMBA_ENABLE_CUDASIM only numba simulator device arrays are CUDA arrays, "
            f"got {type(x).__module__}.{type(x).__qualname__}"
        )
    return cuda.as_cuda_array(x)


def empty(shape, dtype, like=None):
    """Uninitialised device array of the same family as ``like`` (CuPy when possible)."""
    cupy = _cupy_or_none()
    if cupy is not None and (like is None or is_cupy(like) or not hasattr(like, "copy_to_host")):
        return cupy.empty(shape, dtype=dtype)
    return numba_cuda().device_array(shape, dtype=dtype)


def stream_for(stream=None, like=None):
    """The numba stream to launch on (``0`` under the simulator, which ignores streams)."""
    cuda = numba_cuda()
    if simulator_enabled():
        return 0
    if stream is None:
        cupy = _cupy_or_none()
        if cupy is not None and like is not None and is_cupy(like):
            stream = cupy.cuda.get_current_stream().ptr
    if stream is None or stream == 0:
        return cuda.default_stream()
    if isinstance(stream, int):
        return cuda.external_stream(stream)
    return stream  # already a numba stream


def copy_into(dst, src, stream=None) -> None:
    """dst[...] = src for CUDA arrays of one shape and dtype, src C-contiguous (the last
    step of an op that computed through a temporary because ``out`` overlapped its input).
    A strided dst needs CuPy (or the simulator); numba's own device arrays copy only
    between contiguous buffers."""
    if is_simulated_device_array(dst):
        dst._ary[...] = src._ary if is_simulated_device_array(src) else src
        return
    if is_cupy(dst):
        import cupy

        if stream:
            with cupy.cuda.ExternalStream(stream):
                dst[...] = src
        else:
            dst[...] = src
        return
    d = as_device(dst)
    if not d.is_c_contiguous():
        raise ValueError("out must be C-contiguous when it shares memory with an input")
    d.copy_to_device(as_device(src), stream=stream_for(stream, like=dst))


def blocks_for(n: int, threads: int) -> int:
    return max(1, (n + threads - 1) // threads)


def device_id() -> int:
    """The current CUDA device's ordinal (0 under the simulator): a key for device caches."""
    cuda = numba_cuda()
    try:
        return int(cuda.get_current_device().id)
    except Exception:  # the simulator's fake device
        return 0


_DEVICE_CACHE: dict = {}
_DEVICE_CACHE_MAX = 256


def cached_device_arrays(key, *arrays):
    """Device copies of small host tables (index/weight tables), uploaded once per (key, device).

    The cache keeps the most recent ``_DEVICE_CACHE_MAX`` entries. Returns a tuple matching
    ``arrays``.
    """
    full_key = (key, device_id())
    hit = _DEVICE_CACHE.get(full_key)
    if hit is None:
        cuda = numba_cuda()
        hit = tuple(cuda.to_device(np.ascontiguousarray(a)) for a in arrays)
        if len(_DEVICE_CACHE) >= _DEVICE_CACHE_MAX:
            _DEVICE_CACHE.pop(next(iter(_DEVICE_CACHE)))
        _DEVICE_CACHE[full_key] = hit
    return hit
