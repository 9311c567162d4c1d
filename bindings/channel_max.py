"""torch binding of the channel-max saliency reduction (Simonyan et al. 2013, Sec. 3.1).

ops -> functional -> module, as in Liger-Kernel:

* ``torch.ops.hotops.channel_max_abs`` / ``torch.ops.hotops.channel_max_abs_backward``:
  ``torch.library`` custom ops with fake (meta) kernels, so ``torch.compile`` keeps each as
  one opaque node (no graph break), and an autograd formula registered on the forward op.
* ``ChannelMaxAbs``: the same as a ``torch.autograd.Function``.
* ``channel_max_abs(g)``: functional; ``ChannelMaxAbsReduce``: ``nn.Module``.

Memory: the forward saves g (which the caller holds anyway) and its own output M; the
backward re-derives the winning channel from them (no int index tensor is kept).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from hotops.kernels import channel_max as _kernel

from ._interop import check_tensor, stream_of, to_kernel

__all__ = ["ChannelMaxAbs", "ChannelMaxAbsReduce", "channel_max_abs", "channel_max_abs_argmax"]

_CPU_DTYPES = (torch.float32, torch.float64)
_CUDA_DTYPES = (torch.float16, torch.float32, torch.float64)


def _validate(g) -> None:
    check_tensor("g", g)
    if g.device.type not in ("cpu", "cuda"):
        raise TypeError(f"g must be on a CPU or CUDA device, got {g.device}")
    allowed = _CPU_DTYPES if g.device.type == "cpu" else _CUDA_DTYPES
    check_tensor("g", g, dtypes=allowed)
    if g.dim() != 4:
        raise ValueError(f"g must have 4 dimensions (N, C, H, W), got shape {tuple(g.shape)}")
    if g.shape[1] < 1:
        raise ValueError(f"g must have at least one channel, got shape {tuple(g.shape)}")


def _forward_impl(g: Tensor) -> Tensor:
    n, _c, h, w = g.shape
    out = torch.empty((n, h, w), dtype=g.dtype, device=g.device)
    _kernel.channel_max_abs(to_kernel(g), out=to_kernel(out), stream=stream_of(g))
    return out


def _backward_impl(grad_out: Tensor, g: Tensor, m: Tensor) -> Tensor:
    grad_g = torch.empty(g.shape, dtype=g.dtype, device=g.device)
    _kernel.channel_max_abs_backward(
        to_kernel(grad_out.contiguous()), to_kernel(g), to_kernel(m), out=to_kernel(grad_g), stream=stream_of(g)
    )
    return grad_g


@torch.library.custom_op("hotops::channel_max_abs", mutates_args=())
def _channel_max_abs_op(g: Tensor) -> Tensor:
    _validate(g)
    return _forward_impl(g)


@_channel_max_abs_op.register_fake
def _(g: Tensor) -> Tensor:
    _validate(g)
    n, _c, h, w = g.shape
    return g.new_empty((n, h, w))


@torch.library.custom_op("hotops::channel_max_abs_backward", mutates_args=())
def _channel_max_abs_backward_op(grad_out: Tensor, g: Tensor, m: Tensor) -> Tensor:
    return _backward_impl(grad_out, g, m)


@_channel_max_abs_backward_op.register_fake
def _(grad_out: Tensor, g: Tensor, m: Tensor) -> Tensor:
    return torch.empty_like(g, memory_format=torch.contiguous_format)


def _setup_context(ctx, inputs, output) -> None:
    (g,) = inputs
    ctx.save_for_backward(g, output)


def _backward(ctx, grad_out: Tensor):
    # The custom op's autograd formula: stays a custom op so that AOT autograd traces it.
    g, m = ctx.saved_tensors
    if not ctx.needs_input_grad[0]:
        return None
    return torch.ops.hotops.channel_max_abs_backward(grad_out, g, m)


_channel_max_abs_op.register_autograd(_backward, setup_context=_setup_context)


class ChannelMaxAbs(torch.autograd.Function):
    """M[n, i, j] = max_c |g[n, c, i, j]| with the gradient routed to the winning channel.

    Notes
    -----
    Simonyan, Vedaldi & Zisserman (2013), Sec. 3.1: the saliency map of a colour image is
    M_ij = max_c |w_h(i,j,c)|, w = dS_c/dI. The backward gives sign(g) * dL/dM on the
    winning channel (lowest index on ties; subgradient 0 at g = 0) and 0 elsewhere; NaN
    propagates to M and to the winning channel's gradient.
    """

    @staticmethod
    def forward(ctx, g: Tensor) -> Tensor:
        _validate(g)
        m = _forward_impl(g)
        ctx.save_for_backward(g, m)
        return m

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        g, m = ctx.saved_tensors
        return _backward_impl(grad_out, g, m)


def channel_max_abs(g: Tensor) -> Tensor:
    """Channel-max saliency reduction of an (N, C, H, W) tensor -> (N, H, W), differentiable.

    CPU tensors: float32/float64; CUDA tensors: float16/float32/float64. Zero-copy: the
    kernel reads g's memory in place (any strides) and writes a tensor allocated by torch.
    See ``ChannelMaxAbs`` for the gradient and NaN rules.
    """
    _validate(g)  # typed errors before the dispatcher's own schema check
    if torch.compiler.is_compiling():
        return torch.ops.hotops.channel_max_abs(g)  # one opaque node in the graph
    # Eager: the same kernels through the autograd.Function, which skips the custom-op
    # dispatcher (a fixed per-call cost larger than the kernel itself on small inputs).
    return ChannelMaxAbs.apply(g)


def channel_max_abs_argmax(g: Tensor) -> tuple[Tensor, Tensor]:
    """(M, argmax) without autograd: the maximum and the winning channel (int32)."""
    _validate(g)
    n, _c, h, w = g.shape
    out = torch.empty((n, h, w), dtype=g.dtype, device=g.device)
    argmax = torch.empty((n, h, w), dtype=torch.int32, device=g.device)
    _kernel.channel_max_abs(to_kernel(g), out=to_kernel(out), argmax=to_kernel(argmax), stream=stream_of(g))
    return out, argmax


class ChannelMaxAbsReduce(nn.Module):
    """``nn.Module`` form of :func:`channel_max_abs` (e.g. the last step of a saliency head)."""

    def forward(self, g: Tensor) -> Tensor:
        return channel_max_abs(g)
