"""The reversible chain under torch.compile / torch.export, and its coupling kernel as the
custom op ``hotops::reversible_couple_`` (opcheck, equality with the kernel)."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from _compile import GraphRecorder
from _support import needs_gpu
from hotops.bindings import ReversibleBlock, ReversibleSequence
from hotops.kernels import reversible as kr

pytestmark = pytest.mark.usefixtures("torch_one_thread")

couple_op = torch.ops.hotops.reversible_couple_


def fn(c, dropout=0.1):
    return nn.Sequential(nn.BatchNorm2d(c), nn.Tanh(), nn.Conv2d(c, c, 3, padding=1), nn.Dropout(dropout))


class Net(nn.Module):
    """A stem, a reversible chain (BatchNorm and dropout in F and G) and a head."""

    def __init__(self, depth=3, dtype=torch.float32, **kw):
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.rev = ReversibleSequence(*[ReversibleBlock(fn(2), fn(2)) for _ in range(depth)], **kw)
        self.head = nn.Linear(4 * 25, 5)
        self.to(dtype)

    def forward(self, x):
        return self.head(self.rev(torch.relu(self.stem(x))).flatten(1))


def _step(model, x, seed=1):
    model.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    torch.manual_seed(seed)
    y = model(x)
    (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape)).sum().backward()
    return y.detach(), [p.grad for p in model.parameters()] + [x.grad]


# --------------------------------------------------------------------------- the kernel op

def test_schema_and_opcheck():
    assert str(couple_op.default._schema) == (
        "hotops::reversible_couple_(Tensor(a0!) y, Tensor f, SymInt sign, Tensor(a3!)? acc, Tensor? add, "
        "bool check_finite) -> Tensor")
    gen = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        y, f, acc, add = (torch.randn(3, 4, 5, generator=gen, dtype=torch.float64).to(dtype) for _ in range(4))
        torch.library.opcheck(couple_op.default, (y, f, -1, None, None, True))
        torch.library.opcheck(couple_op.default, (y, f, 1, acc, add, False))
    # an autocast F output (bfloat16) is added in the activations' precision; strided y: torch's add_
    y = torch.randn(4, 6, generator=gen)
    torch.library.opcheck(couple_op.default, (y, torch.randn(4, 6, generator=gen).bfloat16(), -1, None, None, True))
    torch.library.opcheck(couple_op.default, (y.t(), torch.randn(6, 4, generator=gen), 1, None, None, True))


def test_op_equals_the_kernel_and_counts_nonfinite():
    gen = torch.Generator().manual_seed(1)
    y, f, acc, add = (torch.randn(2, 3, 7, generator=gen, dtype=torch.float64) for _ in range(4))
    y[0, 0, 0] = float("inf")
    ya, acca = y.numpy().copy(), acc.numpy().copy()
    bad = kr.couple_(ya, f.numpy(), -1, acc=acca, add=add.numpy(), check_finite=True)
    n = couple_op(y, f, -1, acc, add, True)
    assert n.dtype == torch.int64 and n.shape == () and int(n) == bad == 1
    np.testing.assert_array_equal(y.numpy(), ya)
    np.testing.assert_array_equal(acc.numpy(), acca)
    assert int(couple_op(y, f, 1, None, None, False)) == 0  # not counted


@pytest.mark.parametrize("args, exc, match", [
    ((torch.ones(3), torch.ones(4), 1, None, None, False), ValueError, "f must have the shape of y"),
    ((torch.ones(3), torch.ones(3), 2, None, None, False), ValueError, "sign must be"),
    ((torch.ones(3), torch.ones(3), 1, torch.ones(3), None, False), ValueError, "given together"),
    ((torch.ones(3, dtype=torch.int64), torch.ones(3), 1, None, None, False), TypeError, "floating point"),
])
def test_op_bad_input_leaves_y_untouched(args, exc, match):
    y = args[0].clone()
    with pytest.raises(exc, match=match):
        couple_op(*args)
    torch.testing.assert_close(args[0], y, rtol=0, atol=0)


@needs_gpu
@pytest.mark.gpu
def test_opcheck_cuda():
    y, f, acc, add = (torch.randn(5, 7, device="cuda", dtype=torch.float16) for _ in range(4))
    torch.library.opcheck(couple_op.default, (y, f, -1, acc, add, True))
    torch.library.opcheck(couple_op.default, (y.float(), f, 1, None, None, False))


# --------------------------------------------------------------------------- training under torch.compile

def test_compiled_training_equals_eager_with_one_break_around_the_chain():
    net, ref = Net(), Net()
    x = torch.randn(2, 3, 5, 5)
    rec = GraphRecorder()
    compiled = torch.compile(net, backend=rec)
    for seed in (1, 2):  # twice: the second step reuses the compiled graphs
        ya, ga = _step(compiled, x, seed)
        yb, gb = _step(ref, x, seed)
        torch.testing.assert_close(ya, yb, rtol=0, atol=0)
        for a, b in zip(ga, gb):  # the same kernels in the same order: bit for bit
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        for a, b in zip(net.buffers(), ref.buffers()):  # BatchNorm statistics updated once per step
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert len(rec.graphs) == 2  # the stem and the head; the chain in between runs eagerly
    assert rec.calls("reversible_couple_") == 0


def test_compiled_training_gradients_equal_stored_network_float64():
    net = Net(depth=4, dtype=torch.float64)
    stored = copy.deepcopy(net)
    stored.rev.forward = stored.rev.forward_stored  # plain autograd, every activation kept
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    _, ga = _step(torch.compile(net, backend="aot_eager"), x)
    _, gb = _step(stored, x)
    for a, b in zip(ga, gb):
        assert float((a - b).abs().max()) <= 1e-10 * (float(b.abs().max()) or 1.0)


def test_fullgraph_training_is_refused_with_the_reason_not_wrong():
    net = Net()
    with pytest.raises(torch._dynamo.exc.Unsupported, match="reversible backward"):
        _step(torch.compile(net, backend="aot_eager", fullgraph=True), torch.randn(2, 3, 5, 5))


def test_single_block_and_compiled_f_g_inside_compiled_model():
    torch.manual_seed(3)
    f, g = fn(2, 0.0), fn(2, 0.0)
    blk = ReversibleBlock(torch.compile(copy.deepcopy(f), backend="aot_eager"),
                          torch.compile(copy.deepcopy(g), backend="aot_eager"))
    ref = ReversibleBlock(f, g)
    model = torch.compile(nn.Sequential(nn.Conv2d(4, 4, 1), blk), backend="aot_eager")
    plain = nn.Sequential(copy.deepcopy(model._orig_mod[0]), ref)
    x = torch.randn(2, 4, 5, 5)
    _, ga = _step(model, x)
    _, gb = _step(plain, x)
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------- inference: one graph

@pytest.mark.parametrize("train_mode", [False, True])
def test_inference_compiles_fullgraph_with_one_node_per_coupling(train_mode):
    net, ref = Net(depth=3), Net(depth=3)
    net.train(train_mode)
    ref.train(train_mode)
    x = torch.randn(2, 3, 5, 5)
    rec = GraphRecorder()
    compiled = torch.compile(net, backend=rec, fullgraph=True)
    with torch.no_grad():
        torch.manual_seed(4)
        ya = compiled(x)
        torch.manual_seed(4)
        yb = ref(x)
    assert len(rec.graphs) == 1 and rec.calls("reversible_couple_") == 6  # F and G of 3 blocks
    if not train_mode:  # (train mode draws dropout masks in the graph: torch's own RNG there)
        torch.testing.assert_close(ya, yb, rtol=0, atol=0)
    for a, b in zip(net.buffers(), ref.buffers()):  # BatchNorm in train mode: statistics updated once
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_inference_with_inplace_module_runs_eagerly_and_is_refused():
    torch.manual_seed(5)
    bad = ReversibleSequence(ReversibleBlock(nn.Sequential(nn.ReLU(inplace=True), nn.Conv2d(1, 1, 1)),
                                             nn.Conv2d(1, 1, 1)))
    c = torch.compile(bad, backend="aot_eager")
    with torch.no_grad(), pytest.raises(RuntimeError, match="modified its input x2 in place"):
        c(torch.randn(1, 2, 3, 3))


def test_exact_mode_and_inverse_under_compile_equal_eager():
    net = Net(depth=2, exact=True).eval()
    ref = copy.deepcopy(net)
    x = torch.randn(2, 3, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(net, backend="aot_eager")(x), ref(x), rtol=0, atol=0)
        seq = Net(depth=2).rev.eval()
        h = torch.randn(2, 4, 5, 5)
        y = seq(h)
        inv = torch.compile(lambda y: seq.inverse(y), backend="aot_eager")(y)
        torch.testing.assert_close(inv, seq.inverse(y), rtol=0, atol=0)
        torch.testing.assert_close(inv, h, rtol=1e-5, atol=1e-5)


def test_export_for_inference_keeps_the_coupling_nodes():
    net = Net(depth=2).eval()
    x = torch.randn(2, 3, 5, 5)
    with torch.no_grad():
        ep = torch.export.export(net, (x,))
        nodes = [n for n in ep.graph.nodes if n.op == "call_function" and "reversible_couple_" in str(n.target)]
        assert len(nodes) == 4
        torch.testing.assert_close(ep.module()(x), net(x), rtol=0, atol=0)


def test_gradcheck_float64_traced_forward_against_reversible_backward():
    # the value from the traced graph (no grad: coupling nodes), the gradient from the eager
    # reversible backward that compiled training runs: gradcheck compares the two
    torch.manual_seed(6)
    f = lambda: nn.Sequential(nn.Tanh(), nn.Conv2d(1, 1, 3, padding=1))
    seq = ReversibleSequence(ReversibleBlock(f(), f()), ReversibleBlock(f(), f())).double()
    rec = GraphRecorder()
    compiled = torch.compile(seq, backend=rec)

    def fn(x):
        y = compiled(x)
        with torch.no_grad():
            traced = compiled(x)
        return y + (traced - y).detach()

    x = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (x,))
    assert rec.calls("reversible_couple_") == 4
