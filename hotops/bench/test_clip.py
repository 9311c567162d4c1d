"""VDSR's adjustable gradient clipping (Kim, Lee & Lee 2016, Sec. 3.1) over the 20-layer model.

One group per question "how fast is one clipping step of VDSR's gradients on this device?":
each gradient element clipped to [-theta/lr, theta/lr] over the parameters of VDSR's 20
3x3 convolutions (weights (64, 1, 3, 3), 18 x (64, 64, 3, 3), (1, 64, 3, 3), and their
biases: 40 tensors, 665,921 float32 elements), held as ``torch.nn.Parameter`` with
``.grad`` set, theta = 0.4 (pytorch-vdsr's) and lr = 0.1 (the paper's first learning rate),
so the bound is 4. Side by side on the same gradients:

* ``hotops``: ``hotops.bindings.clip_grad_adjustable_(params, theta, lr)``: one fused
  multi-tensor pass, returns the fraction clipped (read back: on CUDA it synchronises);
* ``torch_loop`` (baseline): ``for p in params: p.grad.clamp_(-b, b)``, the loop the paper's
  re-implementations write (no count);
* ``torch_loop_count`` (baseline): the same loop that also counts the clipped elements
  (``(g.abs() > b).sum()`` per tensor, summed on the device, one read-back), which is what
  hotops returns;
* ``torch_clip_grad_value`` (baseline): ``torch.nn.utils.clip_grad_value_(params, b)``,
  torch's own (foreach kernels where available; no count).

The gradients are standard normal, so about 8e-5 of the elements (54) exceed the bound on
the first call; every call after that finds them all inside (a step where few gradients
exceed the bound: every element is read, almost none needs a write). Each test gets its
own copy of the same gradients. ``extra_info["fraction_clipped"]`` is what hotops returned
on that first call. ``bytes`` is the job's minimum memory traffic: read every gradient
once (only clipped elements need a write).

No speed assertions here: hotops/bench/report.py reports the ratios.
"""
from __future__ import annotations

import pytest
import torch

import hotops.bindings as hb

OP = "clip_grad_adjustable"
THETA, LR = 0.4, 0.1
BOUND = THETA / LR
DTYPE = torch.float32


def vdsr_shapes() -> list[tuple]:
    """VDSR's parameter shapes: 20 conv layers, 3x3 kernels, 64 channels, with biases."""
    convs = [(64, 1, 3, 3)] + [(64, 64, 3, 3)] * 18 + [(1, 64, 3, 3)]
    shapes = []
    for w in convs:
        shapes += [w, (w[0],)]
    return shapes


SHAPES = vdsr_shapes()
NUMEL = sum(torch.Size(s).numel() for s in SHAPES)


def _params(tensors, device) -> list[torch.nn.Parameter]:
    """Fresh parameters with ``.grad`` copied from the module's cached gradients."""
    params = []
    for i, shape in enumerate(SHAPES):
        p = torch.nn.Parameter(torch.zeros(shape, dtype=DTYPE, device=device))
        p.grad = tensors(shape, DTYPE, device, seed=i).clone()
        params.append(p)
    return params


def _hotops(params):
    return hb.clip_grad_adjustable_(params, THETA, LR)


@torch.no_grad()
def _torch_loop(params):
    for p in params:
        p.grad.clamp_(-BOUND, BOUND)


@torch.no_grad()
def _torch_loop_count(params):
    clipped = None
    for p in params:
        n = (p.grad.abs() > BOUND).sum()
        clipped = n if clipped is None else clipped + n
        p.grad.clamp_(-BOUND, BOUND)
    return clipped.item() / NUMEL


def _torch_clip_grad_value(params):
    torch.nn.utils.clip_grad_value_(params, BOUND)


IMPLS = {
    "hotops": _hotops,
    "torch_loop": _torch_loop,
    "torch_loop_count": _torch_loop_count,
    "torch_clip_grad_value": _torch_clip_grad_value,
}


@pytest.mark.parametrize("impl", list(IMPLS))
def test_clip_grad_adjustable(bench, benchmark, tensors, device, impl):
    params = _params(tensors, device)
    # the first call's fraction, on a copy of the same gradients
    fraction = hb.clip_grad_adjustable_(_params(tensors, device), THETA, LR)
    bench(
        IMPLS[impl], params,
        op=OP,
        impl=impl,
        baseline=impl != "hotops",
        group=f"{OP} VDSR 20 layers ({len(SHAPES)} tensors, {NUMEL} elements) "
              f"{str(DTYPE).removeprefix('torch.')} {device}",
        device=device,
        bytes=NUMEL * torch.tensor([], dtype=DTYPE).element_size(),
        n_tensors=len(SHAPES),
        numel=NUMEL,
        theta=THETA,
        lr=LR,
        dtype=str(DTYPE).removeprefix("torch."),
    )
    benchmark.extra_info["fraction_clipped"] = fraction
    # every implementation leaves the same clipped gradients
    for p in params:
        assert float(p.grad.abs().max()) <= BOUND
