"""Training semantics of the reversible sequence: autocast + GradScaler, DDP (2 gloo processes),
torch.compile of F and G, and the CUDA path on a real GPU."""
from __future__ import annotations

import copy
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from _support import needs_gpu
from hotops.bindings import ReversibleBlock, ReversibleSequence


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def fn(c, dropout=0.1):
    return nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1), nn.Dropout(dropout))


def make_seq(depth=3, c=4, seed=0, **kw):
    torch.manual_seed(seed)
    return ReversibleSequence(*[ReversibleBlock(fn(c), fn(c)) for _ in range(depth)], **kw)


def grads_of(model, x, forward, seed=11, dtype=None, scaler=None, mult=1.0):
    """Parameter and input gradients of one step (optionally under CPU autocast / a scaler)."""
    model.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    torch.manual_seed(seed)
    with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        y = forward(model, x)
        loss = mult * (y.float() * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum()
    if scaler is not None:
        scaler.scale(loss).backward()
    else:
        loss.backward()
    return y, [p.grad.clone() for p in model.parameters()] + [x.grad.clone()]


def rev(m, x):
    return m(x)


def stored(m, x):
    return m.forward_stored(x)


def rel_err(a, b):
    return float((a.float() - b.float()).abs().max()) / (float(b.float().abs().max()) or 1.0)


def test_autocast_bf16_cpu_matches_stored_network_under_autocast():
    seq = make_seq()
    ref = copy.deepcopy(seq)
    x = torch.randn(2, 8, 6, 6)
    ya, ga = grads_of(seq, x, rev, dtype=torch.bfloat16)
    yb, gb = grads_of(ref, x, stored, dtype=torch.bfloat16)
    assert ya.dtype == torch.float32  # the residual stream stays in the input's precision
    # the recompute runs the same bf16 convolutions on the same inputs as the stored network
    _, g32 = grads_of(copy.deepcopy(seq), x, stored)
    for a, b, c in zip(ga, gb, g32):
        # flash-attention style bound: at most twice the error plain bf16 autograd makes vs fp32
        assert rel_err(a, b) <= max(2 * rel_err(b, c), 1e-6)


def test_gradscaler_cpu_unscaled_gradients_match():
    seq = make_seq()
    ref = copy.deepcopy(seq)
    x = torch.randn(2, 8, 6, 6)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    opt = torch.optim.SGD(seq.parameters(), lr=0.1)
    _, ga = grads_of(seq, x, rev, dtype=torch.bfloat16, scaler=scaler)
    scaler.unscale_(opt)
    got = [p.grad for p in seq.parameters()]
    _, gb = grads_of(ref, x, stored, dtype=torch.bfloat16)
    for a, b in zip(got, gb[:-1]):
        assert rel_err(a, b) <= 1e-2
    assert rel_err(ga[-1] / 2.0**10, gb[-1]) <= 1e-2  # the input's gradient is scaled too
    before = [p.detach().clone() for p in seq.parameters()]
    scaler.step(opt)
    scaler.update()
    assert any(not torch.equal(b, p) for b, p in zip(before, seq.parameters()))


def test_gradscaler_skips_step_on_overflowing_gradients():
    # inf gradients are the scaler's business, not a reconstruction error
    seq = make_seq()
    x = torch.randn(2, 8, 6, 6)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**120)  # with mult=1e8: overflows float32
    opt = torch.optim.SGD(seq.parameters(), lr=0.1)
    before = [p.detach().clone() for p in seq.parameters()]
    _, g = grads_of(seq, x, rev, dtype=torch.bfloat16, scaler=scaler, mult=1e8)
    assert not all(torch.isfinite(t).all() for t in g)
    scaler.step(opt)
    scaler.update()
    assert all(torch.equal(b, p) for b, p in zip(before, seq.parameters()))
    assert scaler.get_scale() < 2.0**120


# inductor compiles C++ for ~20 s on this machine; aot_eager runs the same Dynamo + AOTAutograd
# path (graph capture, functionalisation, the compiled backward) without the code generation.
@pytest.mark.parametrize("backend", ["aot_eager"])
def test_torch_compile_of_f_and_g(backend):
    torch._dynamo.reset()
    torch.manual_seed(0)
    plain = [(nn.Sequential(nn.BatchNorm2d(2), nn.Tanh(), nn.Conv2d(2, 2, 3, padding=1)),
              nn.Sequential(nn.BatchNorm2d(2), nn.Tanh(), nn.Conv2d(2, 2, 3, padding=1))) for _ in range(2)]
    ref = ReversibleSequence(*[ReversibleBlock(copy.deepcopy(f), copy.deepcopy(g)) for f, g in plain])
    seq = ReversibleSequence(*[ReversibleBlock(torch.compile(f, backend=backend), torch.compile(g, backend=backend))
                               for f, g in plain])
    x = torch.randn(2, 4, 5, 5)
    _, ga = grads_of(seq, x, rev)
    _, gb = grads_of(ref, x, stored)
    for a, b in zip(ga, gb):
        assert rel_err(a, b) <= 1e-5
    for ba, bb in zip(seq.buffers(), ref.buffers()):
        torch.testing.assert_close(ba, bb, rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------- DDP

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, x, state, out_path):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        seq = make_seq(3)
        seq.load_state_dict(state)
        model = DDP(seq)
        calls = {"n": 0}
        for p in model.parameters():
            p.register_post_accumulate_grad_hook(lambda _p: calls.__setitem__("n", calls["n"] + 1))
        shard = x.chunk(world)[rank]
        torch.manual_seed(100 + rank)
        y = model(shard)
        (y * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum().backward()
        grads = [p.grad.clone() for p in model.parameters()]
        n_params = len(grads)
        torch.save({"grads": grads, "hook_calls": calls["n"], "n_params": n_params}, f"{out_path}.{rank}")
    finally:
        dist.destroy_process_group()


def test_ddp_two_gloo_processes_match_single_process(tmp_path):
    seq = make_seq(3)
    x = torch.randn(4, 8, 4, 4)
    state = copy.deepcopy(seq.state_dict())
    out = str(tmp_path / "grads")
    # fork: the children reuse the parent's imports (spawn re-imports torch: ~10 s per process here)
    mp.start_processes(_ddp_worker, args=(2, _free_port(), x, state, out), nprocs=2, join=True,
                       start_method="fork")
    # single process: the mean over the two shards' gradients of the stored-activation network
    # (each shard's BatchNorm statistics are its own, as in DDP without SyncBatchNorm)
    expected = None
    for rank, shard in enumerate(x.chunk(2)):
        ref = make_seq(3)
        ref.load_state_dict(state)
        torch.manual_seed(100 + rank)
        y = ref.forward_stored(shard)
        (y * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum().backward()
        g = [p.grad / 2 for p in ref.parameters()]
        expected = g if expected is None else [a + b for a, b in zip(expected, g)]
    for rank in range(2):
        got = torch.load(f"{out}.{rank}")
        assert got["hook_calls"] == got["n_params"]  # each parameter's gradient accumulated exactly once
        for a, b in zip(got["grads"], expected):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- CUDA (real GPU)

@needs_gpu
@pytest.mark.gpu
@pytest.mark.parametrize("amp_dtype", [None, torch.float16, torch.bfloat16])
def test_cuda_gradients_match_stored(amp_dtype):
    dev = torch.device("cuda")
    seq = make_seq(6).to(dev)
    ref = copy.deepcopy(seq)
    x = torch.randn(4, 8, 8, 8, device=dev)

    def step(model, forward, scaler):
        model.zero_grad(set_to_none=True)
        xr = x.clone().requires_grad_(True)
        torch.manual_seed(5)
        torch.cuda.manual_seed(5)
        with torch.autocast("cuda", dtype=amp_dtype or torch.float16, enabled=amp_dtype is not None):
            y = forward(model, xr)
            loss = (y.float() ** 2).mean()
        scaler.scale(loss).backward()
        return [p.grad.float() / scaler.get_scale() for p in model.parameters()] + [xr.grad / scaler.get_scale()]

    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    ga = step(seq, rev, scaler)
    gb = step(ref, stored, torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16))
    tol = 1e-4 if amp_dtype is None else 3e-2
    for a, b in zip(ga, gb):
        assert rel_err(a, b) <= tol
    for ba, bb in zip(seq.buffers(), ref.buffers()):
        torch.testing.assert_close(ba.float(), bb.float(), rtol=1e-3, atol=1e-4)


@needs_gpu
@pytest.mark.gpu
def test_cuda_exact_mode_and_memory():
    dev = torch.device("cuda")
    seq = make_seq(16, exact=True).to(dev).double()
    x = torch.randn(2, 8, 8, 8, device=dev, dtype=torch.float64, requires_grad=True)
    y = seq(x)
    torch.testing.assert_close(seq.inverse(y.detach()), torch.floor(x.detach() * 2.0**32 + 0.5) / 2.0**32,
                               rtol=0, atol=0)
    y.sum().backward()
    assert torch.isfinite(x.grad).all()
