"""The NMF custom ops (``hotops::nmf``, ``hotops::nmf_csr``): opcheck, torch.compile with
fullgraph=True (one node per factorisation), torch.export, and equality with the eager
binding, on dense, batched and CSR inputs."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from _compile import GraphRecorder
from _support import needs_gpu
from hotops.bindings import nmf
from hotops.bindings.factorization import nmf_csr

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _data(seed=0, m=12, n=9, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    V = torch.rand(m, n, generator=gen, dtype=torch.float64) * (torch.rand(m, n, generator=gen) < 0.6)
    return (V * 3).to(dtype)


def _csr_buffers(V):
    S = V.to_sparse_csr()
    # fresh tensors: Dynamo cannot take the buffers that crow_indices() etc. return as
    # graph inputs in this torch version (an IndexError in its stride bookkeeping)
    return S.crow_indices().clone(), S.col_indices().clone(), S.values().clone()


def _tail(r=3, init="random", beta=2.0, tol=1e-4, max_iter=25, seed=0, alpha_W=0.0, alpha_H=None, l1_ratio=0.0,
          mask=None, W=None, H=None):
    return (r, init, beta, tol, max_iter, seed, alpha_W, alpha_H, l1_ratio, mask, W, H)


def test_schemas():
    assert str(torch.ops.hotops.nmf.default._schema) == (
        "hotops::nmf(Tensor V, SymInt n_components, str? init, float beta_loss, float tol, SymInt max_iter, "
        "SymInt? random_state, float alpha_W, float? alpha_H, float l1_ratio, Tensor? mask, Tensor? W, Tensor? H) "
        "-> (Tensor, Tensor, Tensor)")
    assert str(torch.ops.hotops.nmf_csr.default._schema).startswith(
        "hotops::nmf_csr(Tensor crow_indices, Tensor col_indices, Tensor values, SymInt n_rows, SymInt n_cols, "
        "SymInt n_components, str? init")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck_dense(dtype):
    V = _data(dtype=dtype)
    op = torch.ops.hotops.nmf.default
    torch.library.opcheck(op, (V, *_tail(beta=1.0)))
    W0 = torch.rand(12, 2, dtype=dtype) + 0.1
    H0 = torch.rand(2, 9, dtype=dtype) + 0.1
    mask = (torch.rand(12, 9) < 0.8).to(dtype)
    torch.library.opcheck(op, (V, *_tail(2, "custom", tol=0.0, max_iter=10, seed=None, mask=mask, W=W0, H=H0)))
    torch.library.opcheck(op, (V.t(), *_tail(2, "nndsvda", alpha_W=0.1, alpha_H=0.2, l1_ratio=0.5)))


def test_opcheck_batched_and_csr():
    gen = torch.Generator().manual_seed(1)
    Vb = torch.rand(3, 6, 5, generator=gen, dtype=torch.float64)
    torch.library.opcheck(torch.ops.hotops.nmf.default, (Vb, *_tail(2, "nndsvda", tol=0.0, max_iter=10)))
    V = _data()
    torch.library.opcheck(torch.ops.hotops.nmf_csr.default, (*_csr_buffers(V), 12, 9, *_tail(beta=1.0)))
    torch.library.opcheck(torch.ops.hotops.nmf_csr.default,
                          (*_csr_buffers(V.float()), 12, 9, *_tail(2, "nndsvd", max_iter=10)))


def test_op_outputs_equal_eager_binding():
    V = _data()
    W, H, n_iter = torch.ops.hotops.nmf(V, *_tail(beta=1.0, max_iter=40))
    We, He, ne = nmf(V, 3, init="random", beta_loss="kullback-leibler", max_iter=40, random_state=0,
                     return_n_iter=True)
    assert n_iter.dtype == torch.int64 and n_iter.shape == () and int(n_iter) == ne
    torch.testing.assert_close(W, We, rtol=0, atol=0)
    torch.testing.assert_close(H, He, rtol=0, atol=0)
    Wc, Hc, nc = torch.ops.hotops.nmf_csr(*_csr_buffers(V), 12, 9, *_tail(beta=1.0, max_iter=40))
    Ws, Hs, ns = nmf(V.to_sparse_csr(), 3, init="random", beta_loss="kullback-leibler", max_iter=40,
                     random_state=0, return_n_iter=True)
    assert int(nc) == ns
    torch.testing.assert_close(Wc, Ws, rtol=0, atol=0)
    torch.testing.assert_close(Hc, Hs, rtol=0, atol=0)


def _compiled(fn):
    rec = GraphRecorder()
    torch._dynamo.reset()
    return torch.compile(fn, backend=rec, fullgraph=True), rec


def test_compile_dense_fullgraph_one_node_same_result():
    V = _data()

    def f(V):
        W, H, n_iter = nmf(V * 2, 3, init="random", random_state=0, max_iter=30, beta_loss="kullback-leibler",
                           alpha_W=0.01, return_n_iter=True)
        return W @ H, W, n_iter

    c, rec = _compiled(f)
    got, ref = c(V), f(V)
    assert rec.calls("nmf") == 1 and len(rec.graphs) == 1
    torch.testing.assert_close(got[1], ref[1], rtol=0, atol=0)
    torch.testing.assert_close(got[0], ref[0], rtol=0, atol=0)
    assert isinstance(got[2], torch.Tensor) and int(got[2]) == ref[2]  # eager: an int; compiled: a 0-d tensor


def test_compile_batched_integer_and_custom_init():
    gen = torch.Generator().manual_seed(2)
    Vb = torch.randint(0, 5, (4, 7, 6), generator=gen)  # integers: factorised in float64, as eagerly
    W0 = torch.rand(4, 7, 2, generator=gen, dtype=torch.float64) + 0.1
    H0 = torch.rand(4, 2, 6, generator=gen, dtype=torch.float64) + 0.1

    def f(V, W0, H0):
        return nmf(V, 2, init="custom", W=W0, H=H0, max_iter=50, return_n_iter=True)

    c, rec = _compiled(f)
    (W, H, it), (We, He, ite) = c(Vb, W0, H0), f(Vb, W0, H0)
    assert rec.calls("nmf") == 1 and W.dtype == torch.float64 and W.shape == (4, 7, 2) and H.shape == (4, 2, 6)
    torch.testing.assert_close(W, We, rtol=0, atol=0)
    torch.testing.assert_close(H, He, rtol=0, atol=0)
    assert it.shape == (4,) and it.tolist() == list(ite)


def test_compile_csr_buffers_fullgraph():
    V = _data(3)

    def g(crow, col, values):
        W, H = nmf_csr(crow, col, values, (12, 9), 3, init="nndsvd", random_state=0, max_iter=20)
        return W, H

    c, rec = _compiled(g)
    (W, H), (We, He) = c(*_csr_buffers(V)), g(*_csr_buffers(V))
    assert rec.calls("nmf_csr") == 1
    torch.testing.assert_close(W, We, rtol=0, atol=0)
    torch.testing.assert_close(H, He, rtol=0, atol=0)
    Wd, Hd = nmf(V.to_sparse_csr(), 3, init="nndsvd", random_state=0, max_iter=20)  # nmf_csr is nmf of that CSR
    torch.testing.assert_close(W, Wd, rtol=0, atol=0)
    torch.testing.assert_close(H, Hd, rtol=0, atol=0)


def test_sparse_tensor_arguments_are_refused_by_dynamo():
    # what torch allows: a sparse tensor cannot be a compiled function's argument at all,
    # hence hotops::nmf_csr takes the three buffers
    c = torch.compile(lambda V: nmf(V, 2, max_iter=5), backend="aot_eager", fullgraph=True)
    with pytest.raises(Exception, match="sparse"):
        c(_data().to_sparse_csr())


def test_arguments_without_schema_form_run_eagerly_behind_a_graph_break():
    V = _data(4)

    def f(V, seed):
        return nmf(V, 2, init="random", random_state=np.random.RandomState(seed), max_iter=15)

    torch._dynamo.reset()
    c = torch.compile(f, backend="aot_eager")  # not fullgraph: the RandomState cannot enter the op
    W, H = c(V, 5)
    We, He = f(V, 5)
    torch.testing.assert_close(W, We, rtol=0, atol=0)
    torch.testing.assert_close(H, He, rtol=0, atol=0)
    with pytest.raises(Exception, match="graph break|disable|Skip"):
        torch._dynamo.reset()
        torch.compile(f, backend="aot_eager", fullgraph=True)(V, 5)


def test_bad_input_under_compile_is_refused():
    V = _data()
    c = torch.compile(lambda V: nmf(V, 2, max_iter=0), backend="aot_eager")
    with pytest.raises(ValueError, match="max_iter must be >= 1"):
        c(V)
    c = torch.compile(lambda V: nmf(V, 2, init="custom", W=torch.ones(3, 2), H=torch.ones(2, 9)),
                      backend="aot_eager", fullgraph=True)
    with pytest.raises(Exception, match=r"W must have shape \(12, 2\)"):  # by the fake implementation
        c(V)
    c = torch.compile(lambda V: nmf(V, 2), backend="aot_eager")
    with pytest.raises(TypeError, match="V must be real"):
        c(V.to(torch.complex128))


def test_export_keeps_one_node():
    class Factor(torch.nn.Module):
        def forward(self, V):
            W, H = nmf(V, 2, init="nndsvda", random_state=0, max_iter=20)
            return W @ H

    V = _data(5)
    ep = torch.export.export(Factor(), (V,))
    # nmf runs under no_grad: export puts that region in a sub-module (wrap_with_set_grad_enabled)
    nodes = [n for gm in ep.graph_module.modules() if isinstance(gm, torch.fx.GraphModule) for n in gm.graph.nodes
             if n.op == "call_function" and "hotops" in str(n.target)]
    assert len(nodes) == 1 and "hotops.nmf" in str(nodes[0].target)
    torch.testing.assert_close(ep.module()(V), Factor()(V), rtol=0, atol=0)


@needs_gpu
@pytest.mark.gpu
def test_opcheck_and_compile_cuda():
    V = _data().cuda()
    torch.library.opcheck(torch.ops.hotops.nmf.default, (V, *_tail(beta=1.0)))
    torch.library.opcheck(torch.ops.hotops.nmf_csr.default, (*_csr_buffers(V), 12, 9, *_tail(beta=1.0)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = lambda V: nmf(V, 3, init="random", random_state=0, max_iter=20)
        W, H = torch.compile(f, backend="aot_eager", fullgraph=True)(V)
        We, He = f(V)
    assert W.device.type == "cuda"
    torch.testing.assert_close(W, We)
    torch.testing.assert_close(H, He)
