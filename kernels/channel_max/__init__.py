"""Channel-max saliency reduction: M[n, i, j] = max_c |g[n, c, i, j]|.

Simonyan, Vedaldi & Zisserman, "Deep Inside Convolutional Networks" (2013), Sec. 3.1: the
image-specific class saliency map of a colour image is the maximum magnitude of the input
gradient w = dS_c/dI over the colour channels, M_ij = max_c |w_h(i,j,c)|.
"""
from __future__ import annotations

import math

import numpy as np

from .._backend import CPU, backend_of
from .._validate import check_dtype, check_ndim, check_out, overlap, overlaps_any

__all__ = ["channel_max_abs", "channel_max_abs_backward", "ARGMAX_DTYPE"]

ARGMAX_DTYPE = np.dtype(np.int32)
_CPU_DTYPES = (np.float32, np.float64)
_CUDA_DTYPES = (np.float16, np.float32, np.float64)


def _check_g(g, backend):
    check_ndim("g", g, 4, "(N, C, H, W)")
    dtype = check_dtype("g", g, _CPU_DTYPES if backend == CPU else _CUDA_DTYPES)
    n, c, h, w = g.shape
    if c < 1:
        raise ValueError(f"g must have at least one channel, got shape {tuple(g.shape)}")
    return dtype, (n, h, w)


def _empty(backend, shape, dtype, like):
    if backend == CPU:
        return np.empty(shape, dtype=dtype)
    from .. import _cuda

    return _cuda.empty(shape, dtype, like=like)


def channel_max_abs(g, *, return_argmax: bool = False, out=None, argmax=None, stream=None):
    """Maximum magnitude over the channel axis of an (N, C, H, W) array.

    Parameters
    ----------
    g : array, shape (N, C, H, W)
        numpy (float32/float64; Numba CPU kernel) or a CUDA array (float16/float32/float64;
        numba.cuda kernel). Any strides: non-contiguous input is read in place, not copied.
    return_argmax : bool
        Also return the winning channel index (int32, shape (N, H, W)).
    out, argmax : arrays, optional
        Preallocated C-contiguous, writeable outputs on g's device (argmax implies
        ``return_argmax``). Outputs that share memory with g (or with each other) are
        written through temporaries.
    stream : int, optional
        CUDA stream handle to launch on (torch's current stream in the bindings).

    Returns
    -------
    M : array, shape (N, H, W), g's dtype; and ``argmax`` if requested.

    Notes
    -----
    Simonyan et al. (2013), Sec. 3.1: M_ij = max_c |w_h(i,j,c)|. NaN propagates: a NaN in any
    channel makes M NaN (like ``torch.amax``), and argmax points at the first NaN channel.
    Ties keep the lowest channel index. Empty N, H or W give empty outputs; C = 0 is an error.
    """
    backend = backend_of(g=g, out=out, argmax=argmax)
    dtype, shape = _check_g(g, backend)
    want_argmax = return_argmax or argmax is not None
    if out is None:
        out = _empty(backend, shape, dtype, g)
    else:
        check_out("out", out, shape, dtype)
    if want_argmax:
        if argmax is None:
            argmax = _empty(backend, shape, ARGMAX_DTYPE, g)
        else:
            check_out("argmax", argmax, shape, ARGMAX_DTYPE)
            if overlap(argmax, out) != "none":
                raise ValueError("out and argmax must not share memory")
    if overlaps_any(out, g) or overlaps_any(argmax, g):  # outputs in g's memory: compute, then write
        res = channel_max_abs(g, return_argmax=want_argmax, stream=stream)
        _write_out(out, res[0] if want_argmax else res, backend, stream)
        if want_argmax:
            _write_out(argmax, res[1], backend, stream)
        return (out, argmax) if want_argmax else out
    if math.prod(shape) > 0:
        if backend == CPU:
            from . import cpu

            cpu.forward(g, out, argmax if want_argmax else None)
        else:
            from . import cuda

            cuda.forward(g, out, argmax if want_argmax else None, stream=stream)
    return (out, argmax) if want_argmax else out


def _write_out(out, res, backend, stream=None) -> None:
    """out[...] = res, on the host or the device."""
    if backend == CPU:
        out[...] = res
        return
    from .. import _cuda

    _cuda.copy_into(out, res, stream)


def channel_max_abs_backward(grad_out, g, m, *, out=None, stream=None):
    """Gradient of ``channel_max_abs`` with respect to g.

    Parameters
    ----------
    grad_out : array, shape (N, H, W)
        dL/dM, g's dtype and device.
    g : array, shape (N, C, H, W)
        The forward input.
    m : array, shape (N, H, W)
        The forward output ``channel_max_abs(g)``.

    Returns
    -------
    grad_g : array, shape (N, C, H, W)
        dL/dg[n, c, i, j] = sign(g[n, c, i, j]) * dL/dM[n, i, j] for the winning channel c
        (the lowest channel with |g| == M, or the first NaN channel), 0 elsewhere.

    Notes
    -----
    The subgradient of |x| at 0 is taken as 0, and on ties only the lowest winning channel
    receives the gradient (``torch.amax`` would split it evenly). The winner is re-derived
    from the saved M rather than from a saved argmax: autograd keeps no N*H*W index tensor
    and the forward stays on its fastest path.
    """
    backend = backend_of(grad_out=grad_out, g=g, m=m, out=out)
    dtype, shape = _check_g(g, backend)
    for name, x in (("grad_out", grad_out), ("m", m)):
        if tuple(x.shape) != shape:
            raise ValueError(f"{name} must have shape {shape}, got {tuple(x.shape)}")
        if np.dtype(x.dtype) != dtype:
            raise TypeError(f"{name} must have dtype {dtype.name} (g's), got {np.dtype(x.dtype).name}")
    if out is None:
        out = _empty(backend, tuple(g.shape), dtype, g)
    else:
        check_out("out", out, tuple(g.shape), dtype)
        if overlaps_any(out, grad_out, g, m):  # compute first, then write
            res = channel_max_abs_backward(grad_out, g, m, stream=stream)
            _write_out(out, res, backend, stream)
            return out
    if math.prod(g.shape) > 0:
        if backend == CPU:
            from . import cpu

            cpu.backward(grad_out, g, m, out)
        else:
            from . import cuda

            cuda.backward(grad_out, g, m, out, stream=stream)
    return out
