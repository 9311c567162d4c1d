"""hotops.bindings.resize: custom op, autograd (transposed resampling), torch.compile, devices."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import reference
from _support import needs_gpu, tol
from hotops.bindings.resize import Imresize, ImresizeFunction, imresize, imresize_transpose
from hotops.kernels import resize as rz


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "shape, kw",
    [((9, 7), dict(scale=0.5)), ((3, 10, 11), dict(scale=1 / 3)), ((2, 3, 9, 7), dict(scale=2.0)), ((1, 1, 8, 8), dict(output_shape=(5, 7)))],
)
def test_forward_matches_reference(shape, kw, dtype):
    x = torch.rand(shape, dtype=torch.float64) * 255
    y = imresize(x.to(dtype), **kw)
    assert y.dtype == dtype
    xn = x.numpy()
    if x.dim() == 3:  # torch layout (C, H, W): the reference's 4-D layout resizes the same axes
        expected = reference.imresize_matlab(xn[None], **kw)[0]
    else:
        expected = reference.imresize_matlab(xn, **kw)
    np.testing.assert_allclose(y.double().numpy(), expected, **tol(dtype, magnitude=255))  # pixels in [0, 255]


def test_uint8_and_layout_agree_with_the_array_kernel():
    x = torch.randint(0, 256, (2, 3, 12, 10), dtype=torch.uint8)
    y = imresize(x, 0.5)
    assert y.dtype == torch.uint8
    np.testing.assert_array_equal(y.numpy(), rz.imresize(x.numpy(), 0.5))
    # (C, H, W) tensor == the kernel's (H, W, C) array, transposed
    chw = x[0].double()
    np.testing.assert_array_equal(imresize(chw, 0.5).numpy(), rz.imresize(chw.permute(1, 2, 0).numpy(), 0.5).transpose(2, 0, 1))


def test_strided_input():
    base = torch.rand(2, 12, 10, 3, dtype=torch.float64)
    x = base.permute(0, 3, 1, 2)  # channels-last memory
    assert not x.is_contiguous()
    torch.testing.assert_close(imresize(x, 0.5), imresize(x.contiguous(), 0.5), rtol=0, atol=0)


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: imresize(x, 0.5),
        lambda x: imresize(x, 2.0, antialias=False),
        lambda x: imresize(x, output_shape=(3, 11)),
        lambda x: ImresizeFunction.apply(x, 1 / 3),
        Imresize(scale=0.6),
    ],
    ids=["down2", "up2-noaa", "shape", "function", "module"],
)
def test_gradcheck_float64(fn):
    x = torch.randn(2, 1, 6, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (x,))


def test_gradgradcheck_float64():
    x = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda t: imresize(t, 0.5) ** 2, (x,))


def test_backward_is_the_transposed_resampling():
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64, requires_grad=True)
    y = imresize(x, output_shape=(4, 13))
    g = torch.randn_like(y)
    (gx,) = torch.autograd.grad(y, x, g)
    expected = reference.imresize_transpose_dense(g.numpy(), (9, 8), output_shape=(4, 13))
    np.testing.assert_allclose(gx.numpy(), expected, atol=1e-12)
    torch.testing.assert_close(imresize_transpose(g, (9, 8), output_shape=(4, 13)), gx, rtol=0, atol=0)
    assert y.grad_fn is not None


def test_opcheck():
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(torch.ops.hotops.imresize.default, (x, 5, 4, 0.5, 0.5, True, True))
    g = torch.randn(2, 3, 5, 4, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(torch.ops.hotops.imresize_backward.default, (g, 9, 8, 0.5, 0.5, True))
    torch.library.opcheck(torch.ops.hotops.imresize.default, (torch.randn(7, 7), 14, 3, 2.0, 3 / 7, False, True))


def test_torch_compile_fullgraph_no_graph_break():
    def f(x):
        return imresize(torch.sigmoid(x), 0.5).square().sum()

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 1, 10, 12, requires_grad=True)
    y = compiled(x)
    torch.testing.assert_close(y, f(x))
    (gx,) = torch.autograd.grad(y, x)
    (gx_ref,) = torch.autograd.grad(f(x), x)
    torch.testing.assert_close(gx, gx_ref)


def test_sits_inside_a_training_loss():
    # a bicubic-consistency loss: the gradient reaches a parameter through imresize
    w = torch.nn.Parameter(torch.ones(1, 1, 1, 1))
    hr = torch.rand(4, 1, 16, 16)
    lr_img = imresize(hr, 0.5)
    loss = (imresize(w * hr, 0.5) - 1.1 * lr_img).square().mean()
    loss.backward()
    assert w.grad is not None and w.grad.item() < 0


@pytest.mark.parametrize(
    "x, kw, exc, match",
    [
        (torch.ones(4), dict(scale=2), ValueError, r"x must have 2, 3 or 4 dimensions"),
        (torch.ones(1, 1, 1, 4, 4), dict(scale=2), ValueError, r"x must have 2, 3 or 4 dimensions"),
        (torch.ones(4, 4, dtype=torch.int64), dict(scale=2), TypeError, r"x must have dtype float32, float64, uint8; got int64"),
        (torch.ones(4, 4, dtype=torch.bfloat16), dict(scale=2), TypeError, r"got bfloat16"),
        (torch.ones(3, 0, 4), dict(scale=2), ValueError, r"non-empty height and width"),
        (torch.ones(4, 4), dict(scale=0), ValueError, r"scale must be positive"),
        (torch.ones(4, 4), dict(output_shape=(0, 2)), ValueError, r"output_shape must be positive"),
        (torch.tensor([[1.0, float("nan")], [0.0, 0.0]]), dict(scale=2), ValueError, r"x contains NaN or infinite"),
        (np.ones((4, 4)), dict(scale=2), TypeError, r"x must be a torch.Tensor"),
    ],
)
def test_bad_input(x, kw, exc, match):
    with pytest.raises(exc, match=match):
        imresize(x, **kw)


def test_input_untouched_and_output_fresh():
    x = torch.rand(2, 3, 8, 8)
    before = x.clone()
    y = imresize(x, 1.0)
    torch.testing.assert_close(x, before, rtol=0, atol=0)
    torch.testing.assert_close(y, x, rtol=0, atol=0)
    assert y.untyped_storage().data_ptr() != x.untyped_storage().data_ptr()


def test_empty_batch():
    y = imresize(torch.ones(0, 3, 8, 8), 0.5)
    assert y.shape == (0, 3, 4, 4)


# --- real GPU ------------------------------------------------------------------------------


@needs_gpu
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.uint8])
def test_cuda_matches_cpu(dtype):
    x = (torch.rand(4, 3, 37, 45, dtype=torch.float64) * 255).to(dtype)
    for kw in (dict(scale=0.5), dict(scale=1 / 3), dict(scale=2.0), dict(output_shape=(20, 71))):
        y_cpu = imresize(x, **kw)
        y_gpu = imresize(x.cuda(), **kw)
        assert y_gpu.device.type == "cuda" and y_gpu.dtype == dtype
        if dtype == torch.uint8:
            assert (y_gpu.cpu().int() - y_cpu.int()).abs().max() <= 1  # FMA contraction may move a .5 tie
        else:
            torch.testing.assert_close(y_gpu.cpu(), y_cpu, **tol(dtype, magnitude=100))  # pixels in [0, 255]


@needs_gpu
@pytest.mark.gpu
def test_cuda_gradcheck_and_current_stream():
    x = torch.randn(2, 1, 6, 7, dtype=torch.float64, device="cuda", requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: imresize(t, 0.5), (x,))
    s = torch.cuda.Stream()
    big = torch.rand(8, 3, 128, 128, device="cuda")
    with torch.cuda.stream(s):
        y = imresize(big, 0.25, check_finite=False)
    s.synchronize()
    torch.testing.assert_close(y, imresize(big, 0.25), rtol=0, atol=0)
