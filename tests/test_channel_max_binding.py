"""hotops.bindings.channel_max: autograd, torch.library custom op, torch.compile, devices."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import hotops
import reference
from _support import needs_gpu
from hotops.bindings import ChannelMaxAbs, ChannelMaxAbsReduce, channel_max_abs, channel_max_abs_argmax


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 5, 7), (3, 16, 9, 10)])
def test_forward_matches_reference(shape, dtype):
    g = torch.randn(shape, dtype=dtype)
    m = channel_max_abs(g)
    assert m.dtype == dtype and m.shape == (shape[0], shape[2], shape[3])
    np.testing.assert_array_equal(m.double().numpy(), reference.channel_max_abs(g.numpy()))


def test_channels_last_and_sliced_inputs():
    g = torch.randn(2, 3, 8, 9).to(memory_format=torch.channels_last)
    assert not g.is_contiguous()
    torch.testing.assert_close(channel_max_abs(g), g.abs().amax(1), rtol=0, atol=0)
    s = torch.randn(2, 6, 8, 9)[:, 1::2, :, ::3]
    torch.testing.assert_close(channel_max_abs(s), s.abs().amax(1), rtol=0, atol=0)


@pytest.mark.parametrize("fn", [channel_max_abs, ChannelMaxAbs.apply, ChannelMaxAbsReduce()], ids=["op", "function", "module"])
def test_gradcheck_float64(fn):
    g = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (g,))


def test_gradient_matches_reference_rule():
    g = torch.randn(2, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    go = torch.randn(2, 3, 3, dtype=torch.float64)
    (grad,) = torch.autograd.grad(channel_max_abs(g), g, go)
    np.testing.assert_array_equal(grad.numpy(), reference.channel_max_abs_backward(go.numpy(), g.detach().numpy()))
    # without ties, it equals torch's own autograd through abs().amax()
    (grad_torch,) = torch.autograd.grad(g.abs().amax(1), g, go)
    torch.testing.assert_close(grad, grad_torch, rtol=0, atol=0)


def test_opcheck():
    g = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(torch.ops.hotops.channel_max_abs.default, (g,))
    m = torch.ops.hotops.channel_max_abs(g.detach())
    torch.library.opcheck(torch.ops.hotops.channel_max_abs_backward.default, (torch.randn_like(m), g.detach(), m))


def test_torch_compile_fullgraph_no_graph_break():
    def f(x):
        return channel_max_abs(x * 2.0).square().sum()

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 3, 6, 7, requires_grad=True)
    y = compiled(x)
    torch.testing.assert_close(y, f(x))
    (gx,) = torch.autograd.grad(y, x)
    (gx_ref,) = torch.autograd.grad(f(x), x)
    torch.testing.assert_close(gx, gx_ref)


@pytest.mark.slow
def test_torch_compile_inductor():
    compiled = torch.compile(lambda x: channel_max_abs(torch.sin(x)) + 1.0, fullgraph=True)
    x = torch.randn(2, 3, 6, 7)
    torch.testing.assert_close(compiled(x), channel_max_abs(torch.sin(x)) + 1.0)


def test_argmax_variant():
    g = torch.randn(2, 5, 4, 4)
    m, arg = channel_max_abs_argmax(g)
    assert arg.dtype == torch.int32
    torch.testing.assert_close(arg.long(), g.abs().argmax(1), rtol=0, atol=0)
    torch.testing.assert_close(m, g.abs().amax(1), rtol=0, atol=0)


def test_public_function_takes_numpy_and_torch():
    g = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    m_np = hotops.channel_max_abs(g)
    assert isinstance(m_np, np.ndarray)
    m_t = hotops.channel_max_abs(torch.from_numpy(g))
    assert isinstance(m_t, torch.Tensor)
    np.testing.assert_array_equal(m_np, m_t.numpy())
    m2, arg = hotops.channel_max_abs(g, return_argmax=True)
    np.testing.assert_array_equal(arg, np.abs(g).argmax(1))


@pytest.mark.parametrize(
    "g, exc, match",
    [
        (torch.randn(3, 4, 4), ValueError, r"g must have 4 dimensions"),
        (torch.ones(1, 3, 4, 4, dtype=torch.int64), TypeError, r"g must have dtype float32, float64; got int64"),
        (torch.ones(1, 3, 4, 4, dtype=torch.bfloat16), TypeError, r"got bfloat16"),
        (torch.ones(1, 0, 4, 4), ValueError, r"at least one channel"),
        (np.ones((1, 3, 4, 4), np.float32), TypeError, r"g must be a torch.Tensor"),
    ],
)
def test_bad_input(g, exc, match):
    with pytest.raises(exc, match=match):
        channel_max_abs(g)


def test_input_untouched_and_output_fresh():
    g = torch.randn(2, 3, 4, 4)
    before = g.clone()
    m = channel_max_abs(g)
    torch.testing.assert_close(g, before, rtol=0, atol=0)
    assert m.untyped_storage().data_ptr() != g.untyped_storage().data_ptr()


# --- real GPU ------------------------------------------------------------------------------


@needs_gpu
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_cuda_forward_backward(dtype):
    g = torch.randn(4, 3, 33, 65, device="cuda", dtype=dtype, requires_grad=True)
    m = channel_max_abs(g)
    assert m.device == g.device and m.dtype == dtype
    torch.testing.assert_close(m, g.detach().abs().amax(1), rtol=0, atol=0)
    go = torch.randn_like(m)
    (grad,) = torch.autograd.grad(m, g, go)
    (grad_torch,) = torch.autograd.grad(g.abs().amax(1), g, go)
    torch.testing.assert_close(grad, grad_torch, rtol=0, atol=0)


@needs_gpu
@pytest.mark.gpu
def test_cuda_runs_on_current_stream_without_host_copies():
    g = torch.randn(8, 3, 64, 64, device="cuda")
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        m = channel_max_abs(g)
        m_channels_last = channel_max_abs(g.to(memory_format=torch.channels_last))
    s.synchronize()
    torch.testing.assert_close(m, g.abs().amax(1), rtol=0, atol=0)
    torch.testing.assert_close(m_channels_last, m, rtol=0, atol=0)


@needs_gpu
@pytest.mark.gpu
def test_cuda_mixed_devices_raise():
    from hotops.kernels import channel_max as cm
    from hotops.bindings._interop import to_kernel

    g = torch.randn(1, 2, 3, 3, device="cuda")
    with pytest.raises(TypeError, match="different devices"):
        cm.channel_max_abs(to_kernel(g), out=np.empty((1, 3, 3), np.float32))


@needs_gpu
@pytest.mark.gpu
def test_cuda_gradcheck_float64():
    g = torch.randn(2, 3, 4, 5, dtype=torch.float64, device="cuda", requires_grad=True)
    assert torch.autograd.gradcheck(channel_max_abs, (g,))


def test_binding_hands_the_kernel_the_tensors_own_memory(monkeypatch):
    """No hidden copies at the boundary: the kernel sees g's and the output's data pointers."""
    from hotops.bindings import channel_max as binding

    seen = {}
    real = binding._kernel.channel_max_abs

    def spy(g, *, out=None, **kwargs):
        seen["g"] = g.__array_interface__["data"][0]
        seen["out"] = out.__array_interface__["data"][0]
        return real(g, out=out, **kwargs)

    monkeypatch.setattr(binding._kernel, "channel_max_abs", spy)
    g = torch.randn(2, 3, 8, 8).to(memory_format=torch.channels_last)
    m = channel_max_abs(g)
    assert seen["g"] == g.data_ptr() and seen["out"] == m.data_ptr()
