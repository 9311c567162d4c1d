"""torch binding of the MATLAB-exact bicubic ``imresize`` (Keys 1981; MATLAB semantics).

ops -> functional -> module, as in Liger-Kernel:

* ``torch.ops.hotops.imresize`` / ``torch.ops.hotops.imresize_backward``: ``torch.library``
  custom ops with fake (meta) kernels, so ``torch.compile`` keeps each as one opaque node.
  The forward's gradient is the backward op (the transposed resampling), and the backward
  op's gradient is the forward op again (the map is linear), so double backward works too.
* ``ImresizeFunction``: the same as a ``torch.autograd.Function``.
* ``imresize(x, scale=..., output_shape=..., antialias=True)``: functional;
  ``Imresize``: ``nn.Module``.

Layouts (torch convention: the last two axes are H and W): (H, W), (C, H, W) and
(N, C, H, W). Note that the array-level kernel reads a 3-D numpy array as (H, W, C), the
MATLAB/Pillow layout; the binding follows torch's (C, H, W).

Memory: the resize is linear, so autograd saves no tensor at all, only the sizes and scales;
the backward applies the cached transposed per-axis tables. Kim et al. (2016, VDSR) degrade
their training inputs with this resize; on the GPU it runs on torch's current stream.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from hotops.kernels import resize as _kernel
from hotops.kernels._validate import check_int, check_size

from ._interop import check_tensor, stream_of, to_kernel

__all__ = ["ImresizeFunction", "Imresize", "imresize", "imresize_transpose"]

_DTYPES = (torch.float32, torch.float64, torch.uint8)
_GRAD_DTYPES = (torch.float32, torch.float64)


def _validate(name: str, x, dtypes=_DTYPES) -> None:
    check_tensor(name, x)
    if x.device.type not in ("cpu", "cuda"):
        raise TypeError(f"{name} must be on a CPU or CUDA device, got {x.device}")
    check_tensor(name, x, dtypes=dtypes)
    if x.dim() not in (2, 3, 4):
        raise ValueError(f"{name} must have 2, 3 or 4 dimensions ((H, W), (C, H, W) or (N, C, H, W)), got shape {tuple(x.shape)}")
    if x.shape[-2] < 1 or x.shape[-1] < 1:
        raise ValueError(f"{name} must have a non-empty height and width, got shape {tuple(x.shape)}")


def _as_kernel_layout(t: Tensor) -> Tensor:
    # (C, H, W) -> (1, C, H, W): the kernel's 4-D layout resizes axes 2 and 3
    return t.unsqueeze(0) if t.dim() == 3 else t


def _run(x: Tensor, plan, transpose: bool, check_finite: bool) -> Tensor:
    x = x.contiguous()  # torch makes strided input contiguous on its own device
    shape = list(x.shape)
    shape[-2], shape[-1] = plan.in_hw if transpose else plan.out_hw
    if x.device.type == "cpu":
        check_size("input_shape" if transpose else "scale or output_shape", shape,
                   str(x.dtype).removeprefix("torch."), "an output")
    out = torch.empty(shape, dtype=x.dtype, device=x.device)
    if out.numel():
        _kernel.apply_plan(
            to_kernel(_as_kernel_layout(x)),
            plan,
            transpose=transpose,
            out=to_kernel(_as_kernel_layout(out)),
            stream=stream_of(x),
            check_finite=check_finite,
        )
    return out


@torch.library.custom_op("hotops::imresize", mutates_args=())
def _imresize_op(
    x: Tensor, out_h: int, out_w: int, scale_h: float, scale_w: float, antialias: bool, check_finite: bool
) -> Tensor:
    _validate("x", x)
    plan = _kernel.ResizePlan((x.shape[-2], x.shape[-1]), (out_h, out_w), (scale_h, scale_w), antialias)
    return _run(x, plan, False, check_finite)


@_imresize_op.register_fake
def _(x, out_h, out_w, scale_h, scale_w, antialias, check_finite):
    _validate("x", x)
    return x.new_empty((*x.shape[:-2], out_h, out_w))


@torch.library.custom_op("hotops::imresize_backward", mutates_args=())
def _imresize_backward_op(grad: Tensor, in_h: int, in_w: int, scale_h: float, scale_w: float, antialias: bool) -> Tensor:
    _validate("grad", grad, _GRAD_DTYPES)
    plan = _kernel.ResizePlan((in_h, in_w), (grad.shape[-2], grad.shape[-1]), (scale_h, scale_w), antialias)
    return _run(grad, plan, True, False)  # gradients are not checked for NaN (as torch)


@_imresize_backward_op.register_fake
def _(grad, in_h, in_w, scale_h, scale_w, antialias):
    _validate("grad", grad, _GRAD_DTYPES)
    return grad.new_empty((*grad.shape[:-2], in_h, in_w))


def _setup_forward(ctx, inputs, output) -> None:
    x, _out_h, _out_w, scale_h, scale_w, antialias, _check = inputs
    ctx.resize_args = (x.shape[-2], x.shape[-1], scale_h, scale_w, antialias)


def _backward_forward(ctx, grad_out: Tensor):
    if not ctx.needs_input_grad[0]:
        return (None,) * 7
    grad_x = torch.ops.hotops.imresize_backward(grad_out, *ctx.resize_args)
    return grad_x, None, None, None, None, None, None


def _setup_backward(ctx, inputs, output) -> None:
    grad, _in_h, _in_w, scale_h, scale_w, antialias = inputs
    ctx.resize_args = (grad.shape[-2], grad.shape[-1], scale_h, scale_w, antialias)


def _backward_backward(ctx, gg: Tensor):
    if not ctx.needs_input_grad[0]:
        return (None,) * 6
    out_h, out_w, scale_h, scale_w, antialias = ctx.resize_args
    return torch.ops.hotops.imresize(gg, out_h, out_w, scale_h, scale_w, antialias, False), None, None, None, None, None


_imresize_op.register_autograd(_backward_forward, setup_context=_setup_forward)
_imresize_backward_op.register_autograd(_backward_backward, setup_context=_setup_backward)


def _plan_for(x: Tensor, scale, output_shape, antialias):
    return _kernel.resize_plan((x.shape[-2], x.shape[-1]), scale=scale, output_shape=output_shape, antialias=antialias)


def imresize(x: Tensor, scale=None, output_shape=None, antialias: bool = True, *, check_finite: bool = True) -> Tensor:
    """MATLAB-exact bicubic resize of the last two axes, differentiable.

    Parameters
    ----------
    x : Tensor, shape (H, W), (C, H, W) or (N, C, H, W)
        float32/float64 (differentiable) or uint8; CPU or CUDA.
    scale : float or (float, float), optional
        Scale factor(s) > 0; output size ``ceil(scale * size)`` as in MATLAB.
    output_shape : (int, int), optional
        Output (height, width); exactly one of ``scale`` and ``output_shape``.
    antialias : bool
        Widen the kernel when shrinking (MATLAB's default).
    check_finite : bool
        Raise ``ValueError`` on NaN/inf pixels (on CUDA this synchronises the stream).

    Returns
    -------
    Tensor of x's dtype and device with H and W resized.

    Notes
    -----
    Keys (1981) cubic convolution with a = -0.5 and MATLAB's ``imresize`` rules (sample
    positions, ceil output size, mirrored borders, antialiasing by kernel stretching, the
    smaller-scale axis first); see ``hotops.kernels.resize``. The gradient is the exact
    transpose of the resampling. Kim et al. (2016, VDSR) make their low-resolution inputs
    with ``imresize(imresize(y, 1/s), s)``.
    """
    _validate("x", x)
    plan = _plan_for(x, scale, output_shape, antialias)
    return torch.ops.hotops.imresize(x, *plan.out_hw, *plan.scales, plan.antialias, bool(check_finite))


def imresize_transpose(g: Tensor, input_shape, scale=None, output_shape=None, antialias: bool = True) -> Tensor:
    """The adjoint of :func:`imresize` for the forward call with the same arguments."""
    _validate("g", g, _GRAD_DTYPES)
    if not isinstance(input_shape, (tuple, list, torch.Size)) or len(input_shape) != 2:
        raise TypeError(f"input_shape must be a pair (height, width), got {input_shape!r}")
    input_shape = tuple(check_int("input_shape", v, min=1) for v in input_shape)
    plan = _kernel.resize_plan(input_shape, scale=scale, output_shape=output_shape, antialias=antialias)
    if (g.shape[-2], g.shape[-1]) != plan.out_hw:
        raise ValueError(f"g has height x width {tuple(g.shape[-2:])}, expected {plan.out_hw} (the forward output)")
    return torch.ops.hotops.imresize_backward(g, *plan.in_hw, *plan.scales, plan.antialias)


class ImresizeFunction(torch.autograd.Function):
    """``ImresizeFunction.apply(x, scale, output_shape, antialias)``: :func:`imresize` as an
    ``autograd.Function`` (backward: the transposed resampling, Keys 1981 / MATLAB)."""

    @staticmethod
    def forward(ctx, x: Tensor, scale=None, output_shape=None, antialias: bool = True) -> Tensor:
        _validate("x", x)
        plan = _plan_for(x, scale, output_shape, antialias)
        ctx.plan = plan
        return torch.ops.hotops.imresize(x, *plan.out_hw, *plan.scales, plan.antialias, True)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        plan = ctx.plan
        grad = None
        if ctx.needs_input_grad[0]:
            grad = torch.ops.hotops.imresize_backward(grad_out, *plan.in_hw, *plan.scales, plan.antialias)
        return grad, None, None, None


class Imresize(nn.Module):
    """``nn.Module`` form of :func:`imresize` with fixed ``scale`` or ``output_shape``."""

    def __init__(self, scale=None, output_shape=None, antialias: bool = True):
        super().__init__()
        if (scale is None) == (output_shape is None):
            raise ValueError("give exactly one of scale and output_shape")
        self.scale, self.output_shape, self.antialias = scale, output_shape, antialias

    def forward(self, x: Tensor) -> Tensor:
        return imresize(x, self.scale, self.output_shape, self.antialias)

    def extra_repr(self) -> str:
        what = f"scale={self.scale}" if self.scale is not None else f"output_shape={self.output_shape}"
        return f"{what}, antialias={self.antialias}"
