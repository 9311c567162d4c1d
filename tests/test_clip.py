"""Adjustable gradient clipping (VDSR Sec. 3.1): the fused kernel (CPU and CUDA twins) and the
torch binding, against a loop of per-array clamps."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import reference
from _support import needs_gpu
from hotops.bindings.clip import clip_grad_adjustable_ as clip_params_
from hotops.kernels import clip as kc
from hotops.kernels import simulator_enabled
from hotops.kernels.clip import config

# VDSR's parameter shapes (20 conv layers, weights and biases), shrunk for the simulator
VDSR_SHAPES = [(64, 1, 3, 3), (64,)] + [(64, 64, 3, 3), (64,)] * 18 + [(1, 64, 3, 3), (1,)]
SMALL_SHAPES = [(4, 1, 3, 3), (4,), (4, 4, 3, 3), (4,), (1, 4, 3, 3), (1,), (0,), (7, 5)]


@pytest.fixture
def small_chunks(monkeypatch):
    # several chunks per tensor, several blocks per launch, tensor lists split across launches
    monkeypatch.setattr(config, "CPU_CHUNK", 7)
    monkeypatch.setattr(config, "CUDA_CHUNK", 50)
    monkeypatch.setattr(config, "CUDA_THREADS", 16)
    monkeypatch.setattr(config, "MAX_TENSORS_PER_LAUNCH", 3)


def shapes_for(backend):
    return SMALL_SHAPES if backend.name == "cuda" and simulator_enabled() else VDSR_SHAPES + SMALL_SHAPES


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("theta, lr", [(0.4, 0.1), (0.4, 1.0), (0.01, 0.1), (100.0, 0.1)])
def test_matches_loop_of_clamps(backend, dtype, theta, lr, rng, small_chunks):
    grads = [(rng.standard_normal(s) * 5).astype(dtype) for s in shapes_for(backend)]
    expected, fraction = reference.clip_adjustable(grads, theta, lr)
    dev = [backend.put(g) for g in grads]
    got = kc.clip_grad_adjustable_(dev, theta, lr)
    assert got == pytest.approx(fraction, abs=0)
    for d, e in zip(dev, expected):
        np.testing.assert_array_equal(backend.get(d), e)


def test_default_chunking_matches_too(backend, rng):
    grads = [rng.standard_normal(s).astype(np.float32) for s in shapes_for(backend)]
    expected, fraction = reference.clip_adjustable(grads, 0.4, 0.5)
    dev = [backend.put(g) for g in grads]
    assert kc.clip_grad_adjustable_(dev, 0.4, 0.5) == fraction
    for d, e in zip(dev, expected):
        np.testing.assert_array_equal(backend.get(d), e)


def test_mixed_dtypes_nan_and_bound_values(backend):
    b = np.float32(0.4 / 0.1)
    g32 = np.array([np.nan, b, -b, np.nextafter(b, np.float32(10)), -10.0, 0.0, np.inf, -np.inf], np.float32)
    g64 = np.array([[3.0, 5.0], [-4.0000001, np.nan]])
    dev = [backend.put(g32), backend.put(g64)]
    clipped, total = kc.clip_grad_adjustable_(dev, 0.4, 0.1, return_count=True)
    assert total == 12 and clipped == 6  # nextafter, -10, inf, -inf, 5, -4.0000001
    out32, out64 = backend.get(dev[0]), backend.get(dev[1])
    assert np.isnan(out32[0]) and np.isnan(out64[1, 1])
    np.testing.assert_array_equal(out32[1:], np.array([b, -b, b, -b, 0.0, b, -b], np.float32))
    np.testing.assert_array_equal(out64[0], [3.0, 0.4 / 0.1])


def test_fortran_order_is_clipped_in_place(backend, rng):
    g = np.asfortranarray(rng.standard_normal((5, 6)) * 3)
    expected, _ = reference.clip_adjustable([g], 1.0, 1.0)
    d = backend.put(g)
    kc.clip_grad_adjustable_([d], 1.0, 1.0)
    np.testing.assert_array_equal(backend.get(d), expected[0])


def test_return_fraction_false_and_empty_lists(backend):
    g = backend.put(np.full(5, 9.0))
    assert kc.clip_grad_adjustable_([g], 1.0, 1.0, return_fraction=False) is None
    np.testing.assert_array_equal(backend.get(g), np.ones(5))
    assert kc.clip_grad_adjustable_([], 1.0, 1.0) == 0.0
    assert kc.clip_grad_adjustable_([backend.put(np.zeros((0, 3)))], 1.0, 1.0) == 0.0


@pytest.mark.parametrize(
    "theta, lr, exc, match",
    [
        (0.0, 0.1, ValueError, r"theta must be positive"),
        (-1.0, 0.1, ValueError, r"theta must be positive"),
        (0.4, 0.0, ValueError, r"lr must be positive"),
        (0.4, -0.1, ValueError, r"lr must be positive"),
        (float("nan"), 0.1, ValueError, r"theta must be positive and finite"),
        (0.4, float("inf"), ValueError, r"lr must be positive and finite"),
        (1e300, 1e-300, ValueError, r"theta / lr overflows"),
        ("0.4", 0.1, TypeError, r"theta must be a real number"),
        (0.4, None, TypeError, r"lr must be a real number"),
    ],
)
def test_bad_theta_or_lr(theta, lr, exc, match):
    g = np.full(3, 5.0)
    with pytest.raises(exc, match=match):
        kc.clip_grad_adjustable_([g], theta, lr)
    np.testing.assert_array_equal(g, 5.0)  # untouched


def test_bad_arrays():
    with pytest.raises(TypeError, match=r"grads\[1\] must have dtype float32, float64; got int64"):
        kc.clip_grad_adjustable_([np.ones(3), np.ones(3, np.int64)], 1.0, 1.0)
    with pytest.raises(ValueError, match=r"grads\[0\] must be contiguous"):
        kc.clip_grad_adjustable_([np.ones((4, 4))[:, ::2]], 1.0, 1.0)
    ro = np.ones(3)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match=r"grads\[0\] is read-only"):
        kc.clip_grad_adjustable_([ro], 1.0, 1.0)
    with pytest.raises(TypeError, match=r"grads\[0\] must be a numpy array or a CUDA array"):
        kc.clip_grad_adjustable_([[1.0, 2.0]], 1.0, 1.0)
    with pytest.raises(TypeError, match=r"grads must be a sequence of arrays"):
        kc.clip_grad_adjustable_(np.float64(3.0), 1.0, 1.0)


@pytest.mark.cudasim
def test_mixed_devices_raise():
    from hotops.kernels import cuda_available

    if not cuda_available():
        pytest.skip("needs CUDA arrays (a GPU or NUMBA_ENABLE_CUDASIM=1)")
    from numba import cuda

    with pytest.raises(TypeError, match=r"different devices: grads\[0\] on cpu, grads\[1\] on cuda"):
        kc.clip_grad_adjustable_([np.ones(3), cuda.to_device(np.ones(3))], 1.0, 1.0)


@settings(max_examples=50, deadline=None)
@given(
    grads=st.lists(
        hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=9), elements=st.floats(-1e3, 1e3)),
        min_size=0,
        max_size=9,
    ),
    theta=st.floats(1e-3, 10),
    lr=st.floats(1e-3, 10),
)
def test_property_bounded_idempotent_and_counted(grads, theta, lr):
    expected, fraction = reference.clip_adjustable(grads, theta, lr)
    work = [g.copy() for g in grads]
    assert kc.clip_grad_adjustable_(work, theta, lr) == fraction
    for w, e in zip(work, expected):
        np.testing.assert_array_equal(w, e)
        assert np.all(np.abs(w) <= theta / lr)
    assert kc.clip_grad_adjustable_(work, theta, lr) == 0.0  # a second pass clips nothing


# --- torch binding ----------------------------------------------------------------------------


def _vdsr_like(dtype=torch.float32, device="cpu"):
    layers = [torch.nn.Conv2d(1, 64, 3, padding=1)] + [torch.nn.Conv2d(64, 64, 3, padding=1) for _ in range(18)]
    layers.append(torch.nn.Conv2d(64, 1, 3, padding=1))
    return torch.nn.Sequential(*layers).to(dtype=dtype, device=device)


def _fill_grads(model, gen):
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device) * 3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_binding_matches_per_parameter_clamp_loop(dtype):
    gen = torch.Generator().manual_seed(0)
    model = _vdsr_like(dtype)
    _fill_grads(model, gen)
    list(model.parameters())[3].grad = None  # parameters without a gradient are skipped
    expected = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    theta, lr = 0.4, 0.1
    clipped = total = 0
    for e in expected:
        if e is not None:
            clipped += int((e.abs() > theta / lr).sum())
            total += e.numel()
            e.clamp_(-theta / lr, theta / lr)
    fraction = clip_params_(model.parameters(), theta, lr)
    assert fraction == clipped / total and 0 < fraction < 1
    for p, e in zip(model.parameters(), expected):
        if e is None:
            assert p.grad is None
        else:
            torch.testing.assert_close(p.grad, e, rtol=0, atol=0)


def test_binding_fallbacks_and_single_tensor():
    a = torch.nn.Parameter(torch.zeros(4, 6))
    a.grad = torch.linspace(-3, 3, 24).reshape(6, 4).t()  # strided: clamp_ fallback
    b = torch.nn.Parameter(torch.zeros(5, dtype=torch.bfloat16))
    b.grad = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0], dtype=torch.bfloat16)
    c = torch.nn.Parameter(torch.zeros(3))
    c.grad = torch.tensor([1.5, -1.5, 0.1])
    expected = [t.grad.clone().clamp_(-1.0, 1.0) for t in (a, b, c)]
    n_clip = int((a.grad.abs() > 1).sum()) + 2 + 2
    assert clip_params_([a, b, c], 0.1, 0.1) == n_clip / 32
    for t, e in zip((a, b, c), expected):
        torch.testing.assert_close(t.grad, e, rtol=0, atol=0)
    c.grad = torch.tensor([5.0, 0.0, -0.5])
    assert clip_params_(c, 1.0, 1.0) == 1 / 3
    assert clip_params_([torch.nn.Parameter(torch.ones(2))], 1.0, 1.0) == 0.0  # no grads at all
    assert clip_params_([c], 1.0, 1.0, return_fraction=False) is None


def test_binding_bad_input():
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3)
    with pytest.raises(ValueError, match=r"theta must be positive"):
        clip_params_([p], 0.0, 0.1)
    with pytest.raises(ValueError, match=r"lr must be positive"):
        clip_params_([p], 0.4, -1)
    with pytest.raises(TypeError, match=r"parameters\[0\] must be a torch.Tensor"):
        clip_params_([np.ones(3)], 0.4, 0.1)
    s = torch.nn.Parameter(torch.ones(3))
    s.grad = torch.ones(3).to_sparse()
    with pytest.raises(TypeError, match=r"sparse gradient"):
        clip_params_([s], 0.4, 0.1)


@needs_gpu
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_binding_cuda_matches_clamp_loop(dtype):
    gen = torch.Generator().manual_seed(1)
    model = _vdsr_like(torch.float32)
    _fill_grads(model, gen)
    model = model.to(device="cuda", dtype=dtype)
    for p in model.parameters():
        p.grad = p.grad.to(device="cuda", dtype=dtype)
    expected = [p.grad.clone().clamp_(-4.0, 4.0) for p in model.parameters()]
    n = sum(int((p.grad.abs() > 4.0).sum()) for p in model.parameters())
    total = sum(p.numel() for p in model.parameters())
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fraction = clip_params_(model.parameters(), 0.4, 0.1)
    assert fraction == n / total
    for p, e in zip(model.parameters(), expected):
        torch.testing.assert_close(p.grad, e, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_addresses_entry_matches_loop_of_clamps(dtype, rng, small_chunks):
    """The raw-address entry the CPU binding uses: same result and counts as the clamps."""
    grads = [(rng.standard_normal(s) * 5).astype(dtype) for s in VDSR_SHAPES[:6] + SMALL_SHAPES]
    expect = [np.clip(g, -4.0, 4.0) for g in grads]
    n_expect = sum(int((np.abs(g) > 4.0).sum()) for g in grads)
    got = kc.clip_grad_adjustable_addresses_([g.ctypes.data for g in grads], [g.size for g in grads],
                                             dtype, 0.4, 0.1)
    assert got == (n_expect, sum(g.size for g in grads))
    for g, e in zip(grads, expect):
        np.testing.assert_array_equal(g, e)


def test_addresses_entry_bad_input():
    with pytest.raises(TypeError, match="float32 or float64"):
        kc.clip_grad_adjustable_addresses_([0], [0], np.int32, 0.4, 0.1)
    with pytest.raises(ValueError, match="one length"):
        kc.clip_grad_adjustable_addresses_([0, 0], [1], np.float32, 0.4, 0.1)
    with pytest.raises(ValueError, match=">= 0"):
        kc.clip_grad_adjustable_addresses_([0], [-1], np.float32, 0.4, 0.1)
    with pytest.raises(ValueError, match="lr"):
        kc.clip_grad_adjustable_addresses_([0], [0], np.float32, 0.4, 0.0)
    assert kc.clip_grad_adjustable_addresses_([], [], np.float32, 0.4, 0.1) == (0, 0)


# --- gradient tensors (not parameters) are clipped themselves ----------------------------------


def test_plain_tensors_are_clipped_themselves():
    gen = torch.Generator().manual_seed(2)
    grads = [torch.randn(s, generator=gen) * 3 for s in [(4, 3), (5,), (2, 2, 2)]]
    expected = [g.clone().clamp_(-2.0, 2.0) for g in grads]
    n_clip = sum(int((g.abs() > 2.0).sum()) for g in grads)
    assert clip_params_(grads, 0.2, 0.1) == n_clip / sum(g.numel() for g in grads) > 0
    for g, e in zip(grads, expected):
        torch.testing.assert_close(g, e, rtol=0, atol=0)
    one = torch.tensor([5.0, -0.5, -7.0])  # a tensor on its own, and through the surface
    assert clip_params_(one, 1.0, 1.0) == 2 / 3
    torch.testing.assert_close(one, torch.tensor([1.0, -0.5, -1.0]), rtol=0, atol=0)
    import hotops

    two = torch.tensor([[3.0, 0.25]], dtype=torch.float64)
    assert hotops.clip_grad_adjustable_(two, 1.0, 2.0) == 0.5
    assert hotops.clip_grad_adjustable_([torch.tensor([2.0, 0.5]), torch.tensor([-0.25])], 1.0, 2.0) == 1 / 3


def test_gradients_from_autograd_grad_and_mixed_lists():
    model = torch.nn.Linear(3, 2)
    loss = (model(torch.randn(8, 3) * 10) ** 2).sum()
    grads = torch.autograd.grad(loss, list(model.parameters()))
    expected = [g.clone().clamp_(-0.5, 0.5) for g in grads]
    clip_params_(grads, 0.05, 0.1)
    for g, e in zip(grads, expected):
        torch.testing.assert_close(g, e, rtol=0, atol=0)
    # a parameter (its .grad), a leaf tensor that requires grad (its .grad), a gradient (itself)
    p = torch.nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([3.0, -3.0])
    w = torch.zeros(2, requires_grad=True)
    w.grad = torch.tensor([0.5, -9.0])
    g = torch.tensor([2.0, 0.0])
    w_before = w.detach().clone()
    assert clip_params_([p, w, g], 1.0, 1.0) == 4 / 6
    for t, e in ((p.grad, [1.0, -1.0]), (w.grad, [0.5, -1.0]), (g, [1.0, 0.0])):
        torch.testing.assert_close(t, torch.tensor(e), rtol=0, atol=0)
    torch.testing.assert_close(w.detach(), w_before, rtol=0, atol=0)  # the leaf itself is not clipped
    # strided and bfloat16 gradient tensors: torch's clamp_ fallback, in place
    s = torch.linspace(-3, 3, 12).reshape(3, 4).t()
    b = torch.tensor([-2.0, 0.5, 2.0], dtype=torch.bfloat16)
    n_clip = int((s.abs() > 1).sum()) + 2
    assert clip_params_([s, b], 1.0, 1.0) == n_clip / 15
    assert float(s.abs().max()) == 1.0 and b.tolist() == [-1.0, 0.5, 1.0]


def test_plain_tensor_bad_input_leaves_everything_untouched():
    g = torch.full((3,), 9.0)
    with pytest.raises(TypeError, match=r"parameters\[1\] is sparse"):
        clip_params_([g, torch.ones(3).to_sparse()], 1.0, 1.0)
    with pytest.raises(TypeError, match=r"floating point, got torch.int64 \(parameters\[1\]\)"):
        clip_params_([g, torch.ones(3, dtype=torch.int64)], 1.0, 1.0)
    torch.testing.assert_close(g, torch.full((3,), 9.0), rtol=0, atol=0)


def test_lr_may_be_a_one_element_tensor():
    g = torch.tensor([5.0, -0.1])
    assert clip_params_([g], 0.4, torch.tensor(0.4)) == 0.5
    torch.testing.assert_close(g, torch.tensor([1.0, -0.1]), rtol=0, atol=0)
    with pytest.raises(TypeError, match="one-element floating-point tensor"):
        clip_params_([g], 0.4, torch.tensor([0.1, 0.2]))


# --- the custom op: opcheck, torch.compile, torch.export ----------------------------------------


def _op_grads(device="cpu"):
    gen = torch.Generator().manual_seed(3)
    grads = [torch.randn(s, generator=gen) * 10 for s in [(5, 3), (7,), (1,), (0, 2)]]
    grads.append((torch.randn(4, 4, generator=gen) * 10).t())  # strided: the clamp_ fallback
    grads.append(torch.randn(3, generator=gen, dtype=torch.float64) * 10)
    return [g.to(device) for g in grads]


@pytest.mark.parametrize("return_fraction", [True, False])
def test_opcheck(return_fraction):
    op = torch.ops.hotops.clip_grad_adjustable_.default
    assert str(op._schema) == ("hotops::clip_grad_adjustable_(Tensor(a0!)[] grads, float theta, Tensor lr, "
                               "bool return_fraction) -> Tensor")
    torch.library.opcheck(op, (_op_grads(), 0.4, torch.tensor(0.1, dtype=torch.float64), return_fraction))
    torch.library.opcheck(op, ([], 0.4, torch.tensor(0.1), return_fraction))


def test_op_matches_the_eager_binding():
    a, b = _op_grads(), _op_grads()
    got = torch.ops.hotops.clip_grad_adjustable_(a, 0.4, torch.tensor(0.1, dtype=torch.float64), True)
    assert got.dtype == torch.float64 and got.shape == () and float(got) == clip_params_(b, 0.4, 0.1)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    with pytest.raises(ValueError, match="lr must be positive"):
        torch.ops.hotops.clip_grad_adjustable_(a, 0.4, torch.tensor(0.0), True)


@needs_gpu
@pytest.mark.gpu
def test_opcheck_cuda():
    op = torch.ops.hotops.clip_grad_adjustable_.default
    grads = _op_grads("cuda") + [torch.randn(6, device="cuda", dtype=torch.float16) * 10]
    torch.library.opcheck(op, (grads, 0.4, torch.tensor(0.1), True))
    assert bool(torch.isnan(op(_op_grads("cuda"), 0.4, torch.tensor(0.1), False)))  # nothing read back


def _train_step(model, theta, lr):
    """The clipping and a plain SGD update (torch.optim's step breaks the graph on purpose;
    lr multiplies a tensor so that the update, too, keeps it symbolic)."""
    params = list(model.parameters())
    fraction = clip_params_(params, theta, lr)
    lr_t = torch.ones((), dtype=torch.float64) * lr
    with torch.no_grad():
        for p in params:
            p.sub_(p.grad * lr_t)
    return fraction


def test_compiled_training_step_is_one_graph_with_one_clip_node():
    from _compile import GraphRecorder

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()
    ref = copy.deepcopy(model)
    rec = GraphRecorder()
    step = torch.compile(_train_step, backend=rec, fullgraph=True)
    x = torch.randn(16, 4, dtype=torch.float64)
    for k, lr in enumerate([0.1, 0.05, 0.02, 0.01, 0.005]):  # a schedule: one recompilation, not one per value
        for m in (model, ref):
            m.zero_grad()
            (m(x) ** 2).sum().mul(100).backward()
        got = step(model, 0.4, lr)
        want = _train_step(ref, 0.4, lr)
        assert isinstance(got, torch.Tensor) and got.dtype == torch.float64 and float(got) == want
        if k == 0:
            assert want > 0.1
        for p, q in zip(model.parameters(), ref.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=0)
            torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert len(rec.graphs) <= 2
    assert rec.calls("clip_grad_adjustable_") == len(rec.graphs)  # one node per graph
    assert not any("clamp" in t for t in rec.targets())


def test_compiled_clip_of_gradient_tensors_and_errors():
    from _compile import GraphRecorder

    rec = GraphRecorder()

    def f(g1, g2, lr):
        return clip_params_([g1, g2], 1.0, lr, return_fraction=False)

    c = torch.compile(f, backend=rec, fullgraph=True)
    g1, g2 = torch.tensor([3.0, -0.5]), torch.tensor([[-4.0], [0.5]], dtype=torch.float64)
    assert c(g1, g2, 0.5) is None
    torch.testing.assert_close(g1, torch.tensor([2.0, -0.5]), rtol=0, atol=0)
    torch.testing.assert_close(g2, torch.tensor([[-2.0], [0.5]], dtype=torch.float64), rtol=0, atol=0)
    assert rec.calls("clip_grad_adjustable_") == 1
    with pytest.raises(ValueError, match="lr must be positive"):  # checked by the op when it runs
        c(g1, g2, 0.0)
    torch._dynamo.reset()
    bad_theta = torch.compile(lambda g: clip_params_([g], -1.0, 0.1), backend="aot_eager", fullgraph=True)
    with pytest.raises(RuntimeError, match="theta must be positive"):  # by the fake implementation
        bad_theta(torch.ones(2))


def test_export_keeps_the_op_and_mutates_its_inputs():
    class Clip(torch.nn.Module):
        def forward(self, g1, g2):
            return clip_params_([g1, g2], 0.4, 0.1)

    g1, g2 = torch.randn(3) * 10, torch.randn(2, 2) * 10
    ep = torch.export.export(Clip(), (g1.clone(), g2.clone()))
    nodes = [n for n in ep.graph.nodes if n.op == "call_function" and "hotops" in str(n.target)]
    assert len(nodes) == 1 and "clip_grad_adjustable_" in str(nodes[0].target)
    a, b = g1.clone(), g2.clone()
    fraction = ep.module()(a, b)
    ea, eb = g1.clone(), g2.clone()
    assert float(fraction) == clip_params_([ea, eb], 0.4, 0.1)
    torch.testing.assert_close(a, ea, rtol=0, atol=0)
    torch.testing.assert_close(b, eb, rtol=0, atol=0)
