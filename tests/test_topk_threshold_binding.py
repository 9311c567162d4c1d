"""hotops.bindings: SparseProjection (autograd, custom op, torch.compile) and IHTDefense."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import hotops.bindings as hb
from _support import needs_gpu
from hotops.bindings.topk_threshold import SparseProjection, sparse_project, sparse_project_with_mask
from hotops.bindings.topk_threshold import iht as torch_iht
from hotops.bindings.topk_threshold import patchwise_iht as torch_patchwise_iht
from hotops.sparse_fourier import iht
from hotops.sparse_fourier import sparse_project as np_sparse_project


@pytest.mark.parametrize("transform", ["dct", "fft"])
@pytest.mark.parametrize("axes", [(-2, -1), (1, 3)])
def test_gradcheck_float64(transform, axes):
    torch.manual_seed(0)
    x = torch.randn(2, 4, 2, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: SparseProjection.apply(a, 7, transform, axes), (x,))
    assert torch.autograd.gradcheck(lambda a: sparse_project_with_mask(a, 7, transform, axes)[0], (x,))


@pytest.mark.parametrize("transform", ["dct", "fft"])
def test_forward_matches_numpy_and_backward_is_the_projection(transform):
    torch.manual_seed(1)
    x = torch.randn(3, 7, 8, requires_grad=True)
    y = hb.sparse_project(x, 10, transform)
    np.testing.assert_array_equal(y.detach().numpy(), np_sparse_project(x.detach().numpy(), 10, transform))
    g = torch.randn_like(y)
    (grad,) = torch.autograd.grad(y, x, g)
    _, mask = np_sparse_project(x.detach().numpy(), 10, transform, return_mask=True)
    from hotops.sparse_fourier import project_with_mask

    np.testing.assert_allclose(grad.numpy(), project_with_mask(g.numpy(), mask, transform), atol=1e-6)


@pytest.mark.parametrize("transform", ["dct", "fft"])
def test_opcheck(transform):
    x = torch.randn(2, 4, 6, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(torch.ops.hotops.sparse_project.default, (x, 5, transform, [-2, -1]))
    _, mask = sparse_project_with_mask(x.detach(), 5, transform)
    torch.library.opcheck(torch.ops.hotops.sparse_project_masked.default, (x.detach(), mask, transform, [-2, -1]))


def test_torch_compile_fullgraph_no_graph_break():
    x = torch.randn(2, 6, 6, requires_grad=True)

    def f(a):
        return (hb.sparse_project(a * 2.0, 5, "dct") ** 2).sum()

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    out = compiled(x)
    torch.testing.assert_close(out, f(x))
    (g1,) = torch.autograd.grad(out, x)
    (g2,) = torch.autograd.grad(f(x), x)
    torch.testing.assert_close(g1, g2)


def test_iht_defense_module():
    torch.manual_seed(0)
    clf = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3)).double()
    defense = hb.IHTDefense(clf, k=6, t=3, n_iter=4)
    y = torch.randn(5, 8, 8, dtype=torch.float64)
    x_hat, _ = iht(y.numpy(), 6, 3, n_iter=4)
    torch.testing.assert_close(defense(y), clf(torch.from_numpy(x_hat)))
    assert "k=6, t=3" in repr(defense)
    # straight-through (BPDA) gradient reaches the input; the default gives none
    ys = y.clone().requires_grad_(True)
    st = hb.IHTDefense(clf, k=6, t=3, n_iter=4, straight_through=True)
    st(ys).sum().backward()
    assert ys.grad is not None and ys.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="k must be >= 1"):
        hb.IHTDefense(clf, k=0, t=3)
    with pytest.raises(TypeError, match="classifier must be an nn.Module"):
        hb.IHTDefense(lambda z: z, k=1, t=1)


def test_iht_on_tensors_matches_numpy():
    """The binding's iht / patchwise_iht: the kernel on zero-copy views, results as tensors."""
    from hotops.sparse_fourier import patchwise_iht

    torch.manual_seed(3)
    y = torch.randn(3, 8, 8, dtype=torch.float64)
    got = torch_iht(y, 6, 3, n_iter=4, return_iterations=True)
    want = iht(y.numpy(), 6, 3, n_iter=4, return_iterations=True)
    assert all(isinstance(g, torch.Tensor) for g in got) and got[2].dtype == torch.int64
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.numpy(), w)
    got = torch_patchwise_iht(y.float(), 3, 2, patch=(4, 4), n_iter=3, transform="fft")
    want = patchwise_iht(y.float().numpy(), 3, 2, patch=(4, 4), n_iter=3, transform="fft")
    for g, w in zip(got, want):
        assert g.dtype == torch.float32
        np.testing.assert_array_equal(g.numpy(), w)
    with pytest.raises(TypeError, match="y must be a torch.Tensor"):
        torch_iht(y.numpy(), 6, 3)
    with pytest.raises(ValueError, match=r"t must be in \[1, 64\]"):  # checked once, by the kernel
        torch_iht(y, 6, 65)


def test_bad_input():
    x = torch.randn(2, 4, 4)
    with pytest.raises(TypeError, match="x must have dtype"):
        sparse_project(x.to(torch.int32), 3)
    with pytest.raises(ValueError, match=r"k must be in \[1, 16\]"):
        sparse_project(x, 17)
    with pytest.raises(ValueError, match="transform must be one of"):
        sparse_project(x, 3, "haar")
    with pytest.raises(ValueError, match="out of range"):
        sparse_project(x, 3, axes=(0, 5))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        sparse_project(x.numpy(), 3)


@needs_gpu
@pytest.mark.gpu
@pytest.mark.parametrize("transform", ["dct", "fft"])
def test_cuda_matches_cpu(transform):
    x = torch.randn(16, 28, 28)
    y_cpu = hb.sparse_project(x, 40, transform)
    y_gpu = hb.sparse_project(x.cuda(), 40, transform)
    torch.testing.assert_close(y_gpu.cpu(), y_cpu, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_runs_in_float32(dtype):
    torch.manual_seed(2)
    x = torch.randn(3, 8, 8).to(dtype).requires_grad_(True)
    y = hb.sparse_project(x, 9, "dct")
    assert y.dtype == dtype
    ref = hb.sparse_project(x.detach().float(), 9, "dct")
    torch.testing.assert_close(y.float(), ref.to(dtype).float())  # fp32 result, rounded once
    (g,) = torch.autograd.grad(y.float().sum(), x)
    assert g.dtype == dtype and torch.isfinite(g.float()).all()
