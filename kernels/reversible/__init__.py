"""In-place reconstruction kernels of the reversible residual network.

Gomez, Ren, Urtasun & Grosse, "The Reversible Residual Network: Backpropagation Without
Storing Activations" (NeurIPS 2017). A reversible block splits its input into (x1, x2) and
computes (Eq. 3)

    y1 = x1 + F(x2),    y2 = x2 + G(y1),

so that its input can be recomputed from its output (Eq. 4):

    x2 = y2 - G(y1),    x1 = y1 - F(x2).

These kernels do the element-wise part of both directions in place, over the output
buffers, fused with the gradient accumulation of the backward pass (Algorithm 1), so that
backpropagation allocates no block-sized buffer per block:

* :func:`couple_` -- y <- y + sign * f (and acc <- acc + add in the same pass).
* :func:`quantize`, :func:`dequantize` -- float <-> fixed point (integers carrying
  ``frac_bits`` fractional bits).
* :func:`quantize_couple_` -- y_int <- y_int + sign * round(f * 2^frac_bits), fused with
  acc <- acc + add: the exact mode, where reconstruction is bit-exact at any depth because
  the coupling adds integers (the paper notes that floating-point reconstruction drifts;
  Sec. 3.2 "numerical error", Fig. 4).

Arrays are numpy (Numba CPU kernels) or CUDA arrays (numba.cuda twins); they must be
C-contiguous and have equal shapes.
"""
from __future__ import annotations

import math

import numpy as np

from .._backend import CPU, backend_of
from .._validate import NO_OVERLAP, PARTIAL_OVERLAP, check_dtype, overlap

__all__ = ["couple_", "quantize", "dequantize", "quantize_couple_", "fixed_point_limit", "CPU_DTYPES",
           "CUDA_DTYPES", "INT_DTYPES"]

CPU_DTYPES = (np.float32, np.float64)
CUDA_DTYPES = (np.float16, np.float32, np.float64)
INT_DTYPES = (np.int32, np.int64)


def fixed_point_limit(int_dtype) -> float:
    """Largest magnitude a fixed-point value may take: 2^62 for int64 (so that the sum of two
    in-range values cannot wrap before the range check), 2^31 - 1 for int32."""
    d = np.dtype(int_dtype)
    if d == np.int64:
        return float(2**62)
    if d == np.int32:
        return float(2**31 - 1)
    raise TypeError(f"fixed-point dtype must be int32 or int64, got {d.name}")


def _check_frac_bits(frac_bits, int_dtype) -> int:
    if isinstance(frac_bits, bool) or not isinstance(frac_bits, (int, np.integer)):
        raise TypeError(f"frac_bits must be an int, got {frac_bits!r}")
    top = 60 if np.dtype(int_dtype) == np.int64 else 30
    if not 0 <= frac_bits <= top:
        raise ValueError(f"frac_bits must be in [0, {top}] for {np.dtype(int_dtype).name}, got {frac_bits}")
    return int(frac_bits)


def _flat(name: str, a, backend):
    """A 1-D view of a C-contiguous array (no copy)."""
    if backend == CPU:
        if not a.flags.c_contiguous:
            raise ValueError(f"{name} must be C-contiguous (the kernels work in place on its memory)")
        return a.reshape(-1)
    from .. import _cuda

    d = _cuda.as_device(a)
    if not d.is_c_contiguous():
        raise ValueError(f"{name} must be C-contiguous (the kernels work in place on its memory)")
    return d.reshape(math.prod(d.shape))


def _writeable(name: str, a, backend) -> None:
    if backend == CPU and not a.flags.writeable:
        raise ValueError(f"{name} is read-only: it must be writeable")


def _same_shape(ref_name: str, ref, **others) -> None:
    for name, a in others.items():
        if a is not None and tuple(a.shape) != tuple(ref.shape):
            raise ValueError(f"{name} must have the shape of {ref_name} {tuple(ref.shape)}, got {tuple(a.shape)}")


def _check_overlap(written: dict, read: dict) -> None:
    """The element-wise passes read each element before they write it, so an output may be
    the very array it reads (``same``), but no output may overlap an input in part, nor
    another output at all: ``ValueError`` naming both."""
    names = list(written)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if overlap(written[a], written[b]) != NO_OVERLAP:
                raise ValueError(f"{a} and {b} must not share memory (both are written)")
        for b, x in read.items():
            if overlap(written[a], x) == PARTIAL_OVERLAP:
                raise ValueError(f"{a} and {b} overlap in part: the in-place pass would read values it has "
                                 "already written")


def _check_sign(sign) -> int:
    if sign not in (1, -1) or isinstance(sign, bool):
        raise ValueError(f"sign must be +1 or -1, got {sign!r}")
    return int(sign)


def _impl(backend):
    if backend == CPU:
        from . import cpu

        return cpu
    from . import cuda

    return cuda


def couple_(y, f, sign: int = -1, *, acc=None, add=None, check_finite: bool = True, stream=None) -> int:
    """y <- y + sign * f in place; optionally acc <- acc + add in the same pass.

    Parameters
    ----------
    y : array
        Output half of a block (overwritten): float32/float64 (CPU), float16/32/64 (CUDA).
    f : array
        F(x2) or G(y1), same shape and dtype as ``y``.
    sign : {+1, -1}
        +1 for the forward coupling (y1 = x1 + F(x2)), -1 for the reconstruction
        (x2 = y2 - G(y1), Eq. 4 of Gomez et al. 2017).
    acc, add : arrays, optional
        A gradient buffer and the vector-Jacobian product to add to it (same shape and dtype
        as each other); fused into the same pass.
    check_finite : bool
        Count the non-finite values written to ``y``.
    stream : int, optional
        CUDA stream handle.

    Returns
    -------
    int
        Number of non-finite elements in the updated ``y`` (0 when not checked).
    """
    backend = backend_of(y=y, f=f, acc=acc, add=add)
    sign = _check_sign(sign)
    allowed = CPU_DTYPES if backend == CPU else CUDA_DTYPES
    dt = check_dtype("y", y, allowed)
    if np.dtype(f.dtype) != dt:
        raise TypeError(f"f must have y's dtype {dt.name}, got {np.dtype(f.dtype).name}")
    _same_shape("y", y, f=f)
    if (acc is None) != (add is None):
        raise ValueError("acc and add must be given together")
    if acc is not None:
        adt = check_dtype("acc", acc, allowed)
        if np.dtype(add.dtype) != adt:
            raise TypeError(f"add must have acc's dtype {adt.name}, got {np.dtype(add.dtype).name}")
        _same_shape("y", y, acc=acc, add=add)
        _writeable("acc", acc, backend)
    _writeable("y", y, backend)
    _check_overlap({"y": y, "acc": acc}, {"f": f, "add": add})
    n = math.prod(y.shape)
    if n == 0:
        return 0
    yf, ff = _flat("y", y, backend), _flat("f", f, backend)
    af = None if acc is None else _flat("acc", acc, backend)
    df = None if add is None else _flat("add", add, backend)
    if backend == CPU:
        from . import cpu

        return cpu.couple(yf, ff, sign, af, df, bool(check_finite))
    return _impl(backend).couple(yf, ff, sign, af, df, bool(check_finite), stream=stream, like=y)


def quantize(x, frac_bits: int, out, *, stream=None) -> int:
    """out <- floor(x * 2^frac_bits + 1/2) as integers (fixed point); returns the number of
    elements that were non-finite or out of range (written as 0)."""
    backend = backend_of(x=x, out=out)
    check_dtype("x", x, CPU_DTYPES if backend == CPU else CUDA_DTYPES)
    idt = check_dtype("out", out, INT_DTYPES)
    frac_bits = _check_frac_bits(frac_bits, idt)
    _same_shape("x", x, out=out)
    _writeable("out", out, backend)
    _check_overlap({"out": out}, {"x": x})
    if math.prod(x.shape) == 0:
        return 0
    args = (_flat("x", x, backend), _flat("out", out, backend), float(2.0**frac_bits), fixed_point_limit(idt))
    if backend == CPU:
        return _impl(backend).quantize(*args)
    return _impl(backend).quantize(*args, stream=stream, like=x)


def dequantize(q, frac_bits: int, out, *, stream=None) -> None:
    """out <- q * 2^-frac_bits (exact in float64 while |q| < 2^53)."""
    backend = backend_of(q=q, out=out)
    idt = check_dtype("q", q, INT_DTYPES)
    check_dtype("out", out, CPU_DTYPES if backend == CPU else CUDA_DTYPES)
    frac_bits = _check_frac_bits(frac_bits, idt)
    _same_shape("q", q, out=out)
    _writeable("out", out, backend)
    _check_overlap({"out": out}, {"q": q})
    if math.prod(q.shape) == 0:
        return
    args = (_flat("q", q, backend), _flat("out", out, backend), float(2.0**-frac_bits))
    if backend == CPU:
        _impl(backend).dequantize(*args)
    else:
        _impl(backend).dequantize(*args, stream=stream, like=q)


def quantize_couple_(y, f, frac_bits: int, sign: int = -1, *, acc=None, add=None, stream=None) -> int:
    """y <- y + sign * round(f * 2^frac_bits) on integers, in place; acc <- acc + add fused.

    Parameters
    ----------
    y : int32 or int64 array
        Fixed-point activations with ``frac_bits`` fractional bits (overwritten).
    f : float array
        F or G output in floating point; rounded half up to the grid 2^-frac_bits.
    sign : {+1, -1}
        +1: forward coupling; -1: reconstruction.
    acc, add : float arrays, optional
        Gradient accumulation fused into the pass.

    Returns
    -------
    int
        Elements whose rounded f was non-finite or out of range, or whose sum left the
        range (:func:`fixed_point_limit`); those elements of ``y`` are left unchanged.

    Notes
    -----
    Integer addition is associative and exact, so applying sign=+1 then sign=-1 with the
    same f restores y bit for bit; with F and G evaluated on bit-identical inputs, the
    reversible network's reconstruction is exact at any depth.
    """
    backend = backend_of(y=y, f=f, acc=acc, add=add)
    sign = _check_sign(sign)
    idt = check_dtype("y", y, INT_DTYPES)
    check_dtype("f", f, CPU_DTYPES if backend == CPU else CUDA_DTYPES)
    frac_bits = _check_frac_bits(frac_bits, idt)
    _same_shape("y", y, f=f)
    if (acc is None) != (add is None):
        raise ValueError("acc and add must be given together")
    if acc is not None:
        adt = check_dtype("acc", acc, CPU_DTYPES if backend == CPU else CUDA_DTYPES)
        if np.dtype(add.dtype) != adt:
            raise TypeError(f"add must have acc's dtype {adt.name}, got {np.dtype(add.dtype).name}")
        _same_shape("y", y, acc=acc, add=add)
        _writeable("acc", acc, backend)
    _writeable("y", y, backend)
    _check_overlap({"y": y, "acc": acc}, {"f": f, "add": add})
    if math.prod(y.shape) == 0:
        return 0
    yf, ff = _flat("y", y, backend), _flat("f", f, backend)
    af = None if acc is None else _flat("acc", acc, backend)
    df = None if add is None else _flat("add", add, backend)
    args = (yf, ff, sign, float(2.0**frac_bits), fixed_point_limit(idt), af, df)
    if backend == CPU:
        return _impl(backend).quantize_couple(*args)
    return _impl(backend).quantize_couple(*args, stream=stream, like=y)
