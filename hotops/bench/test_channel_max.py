"""Channel-max saliency reduction M = max_c |g| (Simonyan et al. 2013, Sec. 3.1).

One group per question "how fast is M = max_c |g| for this input on this device?", with,
side by side on the same tensor:

* ``hotops``: ``hotops.bindings.channel_max_abs(g)`` (torch custom op over the Numba / numba.cuda kernel);
* ``torch``:  ``g.abs().amax(1)``, what people write today (baseline);
* ``clone``:  ``g.clone()``, the memory-bandwidth yardstick (baseline): it reads g once
  and writes it once, where the reduction reads g once and writes C times less.

The shapes: an ImageNet-sized batch of RGB input gradients (the paper's use), and an
activation-sized gradient (many channels) where the reduction's memory traffic dominates.
No speed assertions here: hotops/bench/report.py reports the ratios.
"""
from __future__ import annotations

import pytest
import torch

import hotops.bindings as hb

OP = "channel_max_abs"
SHAPES = [(64, 3, 224, 224), (256, 64, 56, 56)]
DTYPE = torch.float32
BASELINES = ("torch", "clone")


def _torch(g):
    return g.abs().amax(1)


def _clone(g):
    return g.clone()


IMPLS = {"hotops": hb.channel_max_abs, "torch": _torch, "clone": _clone}


def _shape_id(shape):
    return "x".join(map(str, shape))


def _min_bytes(impl: str, shape, itemsize: int) -> int:
    """Bytes the job must move at least: read g and write M (clone: read and write g)."""
    n, c, h, w = shape
    if impl == "clone":
        return 2 * n * c * h * w * itemsize
    return (n * c * h * w + n * h * w) * itemsize


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("shape", SHAPES, ids=_shape_id)
def test_channel_max_abs(bench, tensors, device, shape, impl):
    g = tensors(shape, DTYPE, device)
    bench(
        IMPLS[impl], g,
        op=OP,
        impl=impl,
        baseline=impl in BASELINES,
        group=f"{OP} {_shape_id(shape)} {str(DTYPE).removeprefix('torch.')} {device}",
        device=device,
        bytes=_min_bytes(impl, shape, g.element_size()),
        shape=list(shape),
        dtype=str(DTYPE).removeprefix("torch."),
    )


# --- forward + backward through autograd (the op inside a training or attribution graph) --

GRAD_SHAPE = (64, 3, 224, 224)


def _fwd_bwd(fn):
    def run(g, grad_out):
        (grad,) = torch.autograd.grad(fn(g), g, grad_out)
        return grad

    return run


FWD_BWD = {"hotops": _fwd_bwd(hb.channel_max_abs), "torch": _fwd_bwd(_torch)}


@pytest.mark.parametrize("impl", list(FWD_BWD))
def test_channel_max_abs_forward_backward(bench, tensors, device, impl):
    g = tensors(GRAD_SHAPE, DTYPE, device).detach().requires_grad_(True)
    n, _c, h, w = GRAD_SHAPE
    grad_out = tensors((n, h, w), DTYPE, device)
    bench(
        FWD_BWD[impl], g, grad_out,
        op=OP,
        impl=impl,
        baseline=impl == "torch",
        group=f"{OP} forward+backward {_shape_id(GRAD_SHAPE)} {str(DTYPE).removeprefix('torch.')} {device}",
        device=device,
        shape=list(GRAD_SHAPE),
        dtype=str(DTYPE).removeprefix("torch."),
    )


# --- channels-last input (read in place with strides, no copy) -------------------------------


@pytest.mark.parametrize("impl", ["hotops", "torch"])
def test_channel_max_abs_channels_last(bench, tensors, device, impl):
    shape = (256, 64, 56, 56)
    g = tensors(shape, DTYPE, device).to(memory_format=torch.channels_last)
    bench(
        IMPLS[impl], g,
        op=OP,
        impl=impl,
        baseline=impl == "torch",
        group=f"{OP} channels_last {_shape_id(shape)} {str(DTYPE).removeprefix('torch.')} {device}",
        device=device,
        bytes=_min_bytes(impl, shape, g.element_size()),
        shape=list(shape),
        dtype=str(DTYPE).removeprefix("torch."),
    )
