"""MATLAB-exact bicubic ``imresize``, its transpose, and the SR protocol's colour and metrics.

Kim, Lee & Lee, "Accurate Image Super-Resolution Using Very Deep Convolutional Networks"
(VDSR, CVPR 2016) train and evaluate on images degraded by MATLAB's ``imresize(...,
'bicubic')``; their published PSNR holds only with that exact resampling (Pillow's and
OpenCV's bicubic differ at the borders and in the kernel). This package reproduces it:
Keys' cubic kernel with a = -0.5 (Keys 1981), stretched by 1/scale when shrinking with
antialiasing, MATLAB's sample positions, output-size rule, symmetric (mirrored) borders and
normalised weights (see ``tables``), applied one axis at a time in MATLAB's order.

Layouts (the resized axes are H and W):

* ``(H, W)``: a grey image; axes 0 and 1.
* ``(H, W, C)``: a channels-last image as MATLAB, Pillow and scikit-image hold it; axes 0
  and 1, every channel resized the same way.
* ``(N, C, H, W)``: a batch in torch's layout; axes 2 and 3.

Also here: ``rgb2ycbcr``/``ycbcr2rgb`` (``color``), ``psnr``/``ssim`` (``metrics``).
"""
from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np

from .._backend import CPU, backend_of
from .._validate import check_dtype, check_int, check_out, check_size, overlaps_any
from .color import rgb2ycbcr, ycbcr2rgb
from .metrics import psnr, ssim
from .tables import AxisTable, axis_table, cubic

__all__ = [
    "ResizePlan",
    "resize_plan",
    "imresize",
    "imresize_transpose",
    "apply_plan",
    "spatial_axes",
    "axis_table",
    "AxisTable",
    "cubic",
    "rgb2ycbcr",
    "ycbcr2rgb",
    "psnr",
    "ssim",
]

_FORWARD_DTYPES = (np.float32, np.float64, np.uint8)
_TRANSPOSE_DTYPES = (np.float32, np.float64)
_LAYOUTS = {2: "(H, W)", 3: "(H, W, C)", 4: "(N, C, H, W)"}


class ResizePlan(NamedTuple):
    """Everything that fixes a resize: sizes, the per-axis scales MATLAB uses, antialias.

    ``order`` is MATLAB's: the axis with the smaller scale first (height first on ties).
    """

    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    scales: tuple[float, float]
    antialias: bool

    @property
    def order(self) -> tuple[int, int]:
        return (0, 1) if self.scales[0] <= self.scales[1] else (1, 0)

    def table(self, axis: int) -> AxisTable:
        return axis_table(self.in_hw[axis], self.out_hw[axis], self.scales[axis], self.antialias)


def _is_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _parse_scale(scale) -> tuple[float, float]:
    values = tuple(scale) if isinstance(scale, (tuple, list)) else (scale,)
    if len(values) not in (1, 2) or not all(_is_number(v) for v in values):
        raise TypeError(f"scale must be a number or a pair of numbers, got {scale!r}")
    values = tuple(float(v) for v in values)
    if not all(math.isfinite(v) and v > 0.0 for v in values):
        raise ValueError(f"scale must be positive and finite, got {scale!r}")
    return (values[0], values[-1])


def _parse_output_shape(output_shape) -> tuple[int, int]:
    if not isinstance(output_shape, (tuple, list)) or len(output_shape) != 2:
        raise TypeError(f"output_shape must be a pair (height, width), got {output_shape!r}")
    if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in output_shape):
        raise TypeError(f"output_shape must hold integers, got {output_shape!r}")
    h, w = int(output_shape[0]), int(output_shape[1])
    if h < 1 or w < 1:
        raise ValueError(f"output_shape must be positive, got {tuple(output_shape)!r}")
    return h, w


def resize_plan(in_hw, scale=None, output_shape=None, antialias: bool = True) -> ResizePlan:
    """MATLAB's sizes and scales for ``imresize(x, scale)`` or ``imresize(x, [h w])``.

    Parameters
    ----------
    in_hw : (int, int)
        Input height and width (>= 1).
    scale : float or (float, float), optional
        Scale factor(s) > 0. The output size is ``ceil(scale * in)`` per axis (MATLAB's
        rule, evaluated in float64 as MATLAB does) and the weights use this scale.
    output_shape : (int, int), optional
        Output height and width (>= 1); the scales are then ``out / in`` per axis.
        Give exactly one of ``scale`` and ``output_shape``.
    antialias : bool
        Stretch the kernel when shrinking (MATLAB's default ``'Antialiasing', true``).
    """
    if isinstance(in_hw, (str, bytes)) or not hasattr(in_hw, "__len__") or len(in_hw) != 2:
        raise TypeError(f"in_hw must be a pair (height, width), got {in_hw!r}")
    in_h, in_w = (check_int("in_hw", v) for v in in_hw)
    if in_h < 1 or in_w < 1:
        raise ValueError(f"in_hw must be positive (a non-empty height and width), got {in_h} x {in_w}")
    if (scale is None) == (output_shape is None):
        raise ValueError("give exactly one of scale and output_shape")
    if not isinstance(antialias, (bool, np.bool_)):
        raise TypeError(f"antialias must be a bool, got {antialias!r}")
    if scale is not None:
        sh, sw = _parse_scale(scale)
        out_hw = (int(math.ceil(sh * in_h)), int(math.ceil(sw * in_w)))
    else:
        out_hw = _parse_output_shape(output_shape)
        sh, sw = out_hw[0] / in_h, out_hw[1] / in_w
    return ResizePlan((in_h, in_w), out_hw, (sh, sw), bool(antialias))


def spatial_axes(ndim: int) -> tuple[int, int]:
    """The (H, W) axes of a layout: (0, 1) for (H, W) and (H, W, C), (2, 3) for (N, C, H, W)."""
    ndim = check_int("ndim", ndim)
    if ndim not in _LAYOUTS:
        raise ValueError(f"x must have 2, 3 or 4 dimensions ((H, W), (H, W, C) or (N, C, H, W)), got ndim={ndim}")
    return (2, 3) if ndim == 4 else (0, 1)


def _check_rank(name: str, x) -> None:
    if len(x.shape) not in _LAYOUTS:
        raise ValueError(
            f"{name} must have 2, 3 or 4 dimensions ((H, W), (H, W, C) or (N, C, H, W)), got shape {tuple(x.shape)}"
        )


def _empty(backend, shape, dtype, like):
    if backend == CPU:
        return np.empty(shape, dtype=dtype)
    from .. import _cuda

    return _cuda.empty(shape, dtype, like=like)


def _is_c_contiguous(x) -> bool:
    flags = getattr(x, "flags", None)
    if flags is not None:
        try:
            return bool(flags["C_CONTIGUOUS"])
        except (KeyError, TypeError):
            return bool(getattr(flags, "c_contiguous", False))
    return bool(getattr(x, "is_c_contiguous", lambda: False)())


def _apply(x, plan: ResizePlan, transpose: bool, out, stream, check_finite: bool, name: str, size_arg: str = "plan"):
    backend = backend_of(**{name: x}, out=out)
    _check_rank(name, x)
    ndim = len(x.shape)
    dtype = check_dtype(name, x, _TRANSPOSE_DTYPES if transpose else _FORWARD_DTYPES)
    ax_h, ax_w = spatial_axes(ndim)
    src_hw, dst_hw = (plan.out_hw, plan.in_hw) if transpose else (plan.in_hw, plan.out_hw)
    got_hw = (int(x.shape[ax_h]), int(x.shape[ax_w]))
    if got_hw != tuple(src_hw):
        what = "the forward output" if transpose else "the plan's input"
        raise ValueError(f"{name} has height x width {got_hw}, expected {tuple(src_hw)} ({what})")
    out_shape = list(x.shape)
    out_shape[ax_h], out_shape[ax_w] = dst_hw
    out_shape = tuple(out_shape)
    if out is None:
        if backend == CPU:
            check_size(size_arg, out_shape, dtype, "an output")
        out = _empty(backend, out_shape, dtype, x)
    else:
        check_out("out", out, out_shape, dtype)
        if overlaps_any(out, x):  # out shares x's memory: resize into a temporary, then write
            res = _apply(x, plan, transpose, None, stream, check_finite, name, size_arg)
            if backend == CPU:
                out[...] = res
            else:
                from .. import _cuda

                _cuda.copy_into(out, res, stream)
            return out
    if math.prod(out_shape) == 0:  # N or C is zero
        return out

    if backend == CPU:
        from . import cpu as impl
    else:
        from . import cuda as impl

    # contiguous source (one copy for strided input; the passes read C-contiguous views)
    if not _is_c_contiguous(x):
        if backend == CPU:
            x = np.ascontiguousarray(x)
        else:
            tmp = _empty(backend, tuple(x.shape), dtype, x)
            impl.copy(x, tmp, stream=stream)
            x = tmp
    check_finite = check_finite and dtype.kind == "f"
    if check_finite and backend != CPU and impl.count_nonfinite(x, stream=stream):
        raise ValueError(f"{name} contains NaN or infinite values")

    pre = math.prod(x.shape[:ax_h])
    post = math.prod(x.shape[ax_w + 1 :])
    steps = []
    for axis in reversed(plan.order) if transpose else plan.order:
        table = plan.table(axis)
        if table.identity:  # scale 1 along this axis: MATLAB's weights are exactly [1]
            continue
        if transpose:
            steps.append((axis, table.t_indices, table.t_weights, (*table[:4], True)))
        else:
            steps.append((axis, table.indices, table.weights, (*table[:4], False)))
    x4 = x.reshape(pre, src_hw[0], src_hw[1], post)
    out4 = out.reshape(pre, dst_hw[0], dst_hw[1], post)
    if backend == CPU:
        # the CPU kernels fold the NaN/inf scan into their first pass (out untouched on error)
        if impl.resize4(x4, out4, steps, dtype == np.uint8, check_finite):
            raise ValueError(f"{name} contains NaN or infinite values")
    else:
        impl.resize4(x4, out4, steps, dtype == np.uint8, stream=stream)
    return out


def imresize(x, scale=None, output_shape=None, antialias: bool = True, out=None, stream=None, *, check_finite: bool = True):
    """Resize an image or a batch exactly as MATLAB's ``imresize(x, ..., 'bicubic')``.

    Parameters
    ----------
    x : array, shape (H, W), (H, W, C) or (N, C, H, W)
        numpy (Numba CPU kernels) or a CUDA array (numba.cuda kernels): float32, float64 or
        uint8. H and W are resized (axes 0, 1 for 2-D and 3-D input, axes 2, 3 for 4-D);
        strided input is copied once to a contiguous buffer.
    scale : float or (float, float), optional
        Scale factor(s) > 0; output size ``ceil(scale * size)``.
    output_shape : (int, int), optional
        Output (height, width) >= 1, scales ``out / in``. Exactly one of scale/output_shape.
    antialias : bool
        Widen the kernel when shrinking (MATLAB's default).
    out : array, optional
        Preallocated C-contiguous, writeable output on x's device (one that shares memory
        with x is written through a temporary).
    stream : int, optional
        CUDA stream handle to launch on (torch's current stream in the bindings).
    check_finite : bool
        Raise ``ValueError`` on NaN/inf pixels (on CUDA this reads back one flag, i.e. it
        synchronises the stream; pass False to skip).

    Returns
    -------
    array of x's dtype and device; H and W replaced by the output size.

    Notes
    -----
    Keys (1981) cubic convolution, a = -0.5; MATLAB ``imresize`` semantics throughout (see
    ``hotops.kernels.resize.tables``). Computation is in float64; each one-dimensional pass
    returns x's dtype, as in MATLAB: float32 rounds once per pass, uint8 is rounded half away
    from zero and saturated after each pass. The axis with the smaller scale is resized
    first (height first on ties), as MATLAB does; for floats the order changes only the
    last bits, for uint8 it is part of the result.

    Tiny images: there is no minimum size. Indices beyond the border are mirrored as often
    as needed with MATLAB's periodic symmetric extension, so a 1-pixel image resizes to a
    constant and a 2 x 2 image shrinks with its 10-tap antialiased kernel exactly as in
    MATLAB. Kim et al. (2016, VDSR) build their training and test inputs with this
    function: ``imresize(imresize(y, 1/s), s)`` of the luminance.

    Round trips: for an integer s, ``imresize(imresize(x, s), 1/s)`` puts every pixel centre
    back where it was (x -> x/s + (1 - 1/s)/2 -> x) and both kernels reproduce affine
    functions, so an affine image comes back exactly except within 3 pixels of the border
    (mirroring is not affine). Any other image comes back low-passed, not restored: the
    composition is a smoothing filter, not the identity.

    Raises
    ------
    TypeError
        Wrong array type or dtype, mixed devices, non-numeric scale.
    ValueError
        Wrong rank, empty height or width, scale <= 0 or non-finite, output_shape with
        zeros, NaN/inf pixels.
    """
    backend_of(x=x, out=out)  # TypeError naming the argument for non-arrays, mixed devices
    _check_rank("x", x)
    ax_h, ax_w = spatial_axes(len(x.shape))
    in_hw = (int(x.shape[ax_h]), int(x.shape[ax_w]))
    if min(in_hw) < 1:
        raise ValueError(f"x must have a non-empty height and width, got {in_hw[0]} x {in_hw[1]}")
    plan = resize_plan(in_hw, scale=scale, output_shape=output_shape, antialias=antialias)
    return _apply(x, plan, False, out, stream, check_finite, "x", "scale" if scale is not None else "output_shape")


def imresize_transpose(
    g, input_shape, scale=None, output_shape=None, antialias: bool = True, out=None, stream=None, *, check_finite: bool = True
):
    """The adjoint of ``imresize``: the gradient of sum(g * imresize(x)) with respect to x.

    Parameters
    ----------
    g : array
        Same layout as the forward output, float32 or float64.
    input_shape : (int, int)
        The forward input's (height, width).
    scale, output_shape, antialias
        The forward call's arguments (they fix the weights).

    Returns
    -------
    array with the forward input's height and width: ``A^T g`` for the linear map A that
    ``imresize`` applies, evaluated with the transposed per-axis tables (reverse order).
    """
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 2:
        raise TypeError(f"input_shape must be a pair (height, width), got {input_shape!r}")
    input_shape = tuple(check_int("input_shape", v, min=1) for v in input_shape)
    backend_of(g=g, out=out)
    _check_rank("g", g)
    plan = resize_plan(input_shape, scale=scale, output_shape=output_shape, antialias=antialias)
    return _apply(g, plan, True, out, stream, check_finite, "g", "input_shape")


def apply_plan(x, plan: ResizePlan, *, transpose: bool = False, out=None, stream=None, check_finite: bool = True):
    """Apply a ``ResizePlan`` (or its transpose): the entry the torch bindings use."""
    if not isinstance(plan, ResizePlan):
        raise TypeError(f"plan must be a ResizePlan, got {type(plan).__qualname__}")
    return _apply(x, plan, transpose, out, stream, check_finite, "g" if transpose else "x")

