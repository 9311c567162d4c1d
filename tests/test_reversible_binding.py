"""ReversibleBlock / ReversibleSequence (Gomez et al. 2017, Algorithm 1) against the same
network computed by plain autograd with every activation stored."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from hotops.bindings import ReversibleBlock, ReversibleSequence, saved_tensor_bytes


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def residual_fn(c: int, dropout: float = 0.2, bn: bool = True) -> nn.Module:
    layers = [nn.BatchNorm2d(c)] if bn else []
    layers += [nn.ReLU(), nn.Conv2d(c, c, 3, padding=1)]
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def make_seq(depth: int, c: int = 2, dtype=torch.float64, seed: int = 0, **kw) -> ReversibleSequence:
    torch.manual_seed(seed)
    blocks = [ReversibleBlock(residual_fn(c), residual_fn(c)) for _ in range(depth)]
    return ReversibleSequence(*blocks, **kw).to(dtype)


def loss_of(y: torch.Tensor) -> torch.Tensor:
    w = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape)  # not symmetric in the halves
    return (y * w).sum() + 0.5 * (y**2).mean()


def run_both(seq, x, seed=7, backward=True):
    """(reversible run, stored-activation run) of the same parameters on the same RNG stream."""
    ref = copy.deepcopy(seq)
    xa = x.detach().clone().requires_grad_(x.requires_grad)
    xb = x.detach().clone().requires_grad_(x.requires_grad)
    torch.manual_seed(seed)
    ya = seq(xa)
    torch.manual_seed(seed)
    yb = ref.forward_stored(xb)
    if backward:
        loss_of(ya).backward()
        loss_of(yb).backward()
    return (ya, xa, seq), (yb, xb, ref)


def assert_grads_close(a, b, rtol, check_input=True):
    (ya, xa, ma), (yb, xb, mb) = a, b
    torch.testing.assert_close(ya, yb, rtol=rtol, atol=rtol * float(yb.detach().abs().max()))
    pairs = list(zip(ma.parameters(), mb.parameters()))
    assert pairs
    if check_input:
        pairs.append((xa, xb))
    for pa, pb in pairs:
        assert pb.grad is not None and pa.grad is not None
        scale = float(pb.grad.abs().max()) or 1.0
        err = float((pa.grad - pb.grad).abs().max()) / scale
        assert err <= rtol, f"relative gradient error {err:.3g} > {rtol}"


@pytest.mark.parametrize("depth", [1, 2, 7, 64])
def test_gradients_equal_stored_float64(depth):
    seq = make_seq(depth)
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    a, b = run_both(seq, x)
    assert_grads_close(a, b, 1e-10)


@pytest.mark.parametrize("depth", [1, 16])
def test_gradients_equal_stored_float32(depth):
    seq = make_seq(depth, c=3, dtype=torch.float32)
    x = torch.randn(2, 6, 4, 6, requires_grad=True)
    a, b = run_both(seq, x)
    assert_grads_close(a, b, 1e-5)


def test_dropout_masks_are_replayed():
    # without the RNG replay the recomputed dropout masks differ and so do the gradients
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    a, b = run_both(make_seq(3, preserve_rng_state=False), x)
    diff = max(float((pa.grad - pb.grad).abs().max()) for pa, pb in zip(a[2].parameters(), b[2].parameters()))
    assert diff > 1e-3
    # and the caller's RNG stream after backward is where the forward left it
    seq = make_seq(3)
    torch.manual_seed(3)
    loss_of(seq(x)).backward()
    after_backward = torch.rand(4)
    torch.manual_seed(3)
    seq(x)
    assert torch.equal(after_backward, torch.rand(4))


def test_batchnorm_running_stats_updated_once():
    seq = make_seq(4)
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    (_, _, ma), (_, _, mb) = run_both(seq, x)
    bufs_a, bufs_b = dict(ma.named_buffers()), dict(mb.named_buffers())
    assert any(k.endswith("num_batches_tracked") for k in bufs_a)
    for k in bufs_b:
        if k.endswith("num_batches_tracked"):
            assert int(bufs_a[k]) == int(bufs_b[k]) == 1, k
        else:
            torch.testing.assert_close(bufs_a[k], bufs_b[k], rtol=1e-12, atol=1e-14)


def test_autograd_grad_and_inputs_without_grad():
    seq = make_seq(3)
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64)  # does not require grad
    params = list(seq.parameters())
    torch.manual_seed(1)
    g = torch.autograd.grad(loss_of(seq(x)), params)
    torch.manual_seed(1)
    g_ref = torch.autograd.grad(loss_of(seq.forward_stored(x)), params)
    assert all(p.grad is None for p in params)  # autograd.grad leaves .grad alone
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # input only, parameters frozen
    for p in params:
        p.requires_grad_(False)
    xg = x.clone().requires_grad_(True)
    torch.manual_seed(1)
    (gx,) = torch.autograd.grad(loss_of(seq(xg)), xg)
    torch.manual_seed(1)
    (gx_ref,) = torch.autograd.grad(loss_of(seq.forward_stored(xg)), xg)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-10, atol=1e-12)
    # nothing requires grad: a plain forward, no graph
    assert not seq(x).requires_grad


def test_shared_parameters_sum_over_uses():
    torch.manual_seed(0)
    F, G = residual_fn(2, dropout=0.0), residual_fn(2, dropout=0.1)
    blocks = [ReversibleBlock(F, G), ReversibleBlock(residual_fn(2), G), ReversibleBlock(F, F)]
    seq = ReversibleSequence(*blocks).double()
    x = torch.randn(2, 4, 4, 4, dtype=torch.float64, requires_grad=True)
    a, b = run_both(seq, x)
    assert_grads_close(a, b, 1e-10)
    assert len(list(seq.parameters())) == 3 * 4  # F, G and one more module, each counted once


def test_backward_twice_with_retain_graph():
    seq = make_seq(3)
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    y = seq(x)
    y_before = y.detach().clone()
    loss = loss_of(y)
    loss.backward(retain_graph=True)
    first = [p.grad.clone() for p in seq.parameters()] + [x.grad.clone()]
    loss.backward()
    second = list(seq.parameters()) + [x]
    for g1, t in zip(first, second):
        torch.testing.assert_close(t.grad, 2 * g1, rtol=1e-12, atol=1e-14)
    assert torch.equal(y, y_before)  # backward reconstructs in its own buffers, never in y


def test_gradcheck_input():
    torch.manual_seed(0)
    seq = ReversibleSequence(*[ReversibleBlock(nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Tanh()),
                                               nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Softplus()))
                               for _ in range(3)]).double()
    x = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(seq, (x,))


@pytest.mark.parametrize("depth", [8, 64])
def test_saved_bytes_do_not_grow_with_depth(depth):
    x = torch.randn(2, 4, 6, 6, requires_grad=True)
    with saved_tensor_bytes() as rev:
        y = make_seq(depth, dtype=torch.float32)(x)
    # exactly one tensor is saved: the output, whatever the depth
    assert rev["tensors"] == 1
    assert rev["bytes"] == y.numel() * y.element_size()
    with saved_tensor_bytes() as plain:
        make_seq(depth, dtype=torch.float32).forward_stored(x)
    assert plain["bytes"] > depth * y.numel() * y.element_size() // 2


def test_saved_bytes_8_vs_64_equal():
    x = torch.randn(2, 4, 6, 6, requires_grad=True)
    got = []
    for depth in (8, 64):
        with saved_tensor_bytes() as s:
            make_seq(depth, dtype=torch.float32)(x)
        got.append(s["bytes"])
    assert got[0] == got[1]


def test_context_attributes_do_not_grow_without_dropout_and_grow_by_rng_states_with_it():
    # everything the Function holds (saved tensors + context attributes such as RNG states)
    x = torch.randn(2, 4, 6, 6, requires_grad=True)
    got = {}
    for dropout in (0.0, 0.2):
        for depth in (8, 64):
            torch.manual_seed(0)
            seq = ReversibleSequence(*[ReversibleBlock(residual_fn(2, dropout), residual_fn(2, dropout))
                                       for _ in range(depth)])
            with saved_tensor_bytes() as s:
                y = seq(x)
            got[dropout, depth] = s["count_graph"](y)
    act = y.numel() * y.element_size()
    state = torch.get_rng_state().numel()
    assert got[0.0, 8] == got[0.0, 64] == act + state  # one shared RNG state
    assert got[0.2, 64] - got[0.2, 8] == 2 * 56 * state  # a state before every F and G that draws


def test_exact_mode_reconstruction_bit_identical_at_depth_1000():
    torch.manual_seed(0)
    depth = 1000
    blocks = [ReversibleBlock(nn.Sequential(nn.Linear(3, 3), nn.Tanh()), nn.Sequential(nn.Linear(3, 3), nn.Softsign()),
                              split_dim=-1) for _ in range(depth)]
    seq = ReversibleSequence(*blocks, exact=True).double()
    seen: dict = {"fwd": [], "bwd": []}
    phase = ["fwd"]

    def record(module, args):
        seen[phase[0]].append(args[0].detach().clone())

    for b in blocks:
        b.F.register_forward_pre_hook(record)
        b.G.register_forward_pre_hook(record)
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    y = seq(x)
    phase[0] = "bwd"
    y.sum().backward()
    assert len(seen["fwd"]) == len(seen["bwd"]) == 2 * depth
    # backward visits G_k, F_k for k = depth-1 .. 0; forward visited F_k, G_k for k = 0 .. depth-1
    fwd = seen["fwd"]
    bwd = list(reversed(seen["bwd"]))
    assert all(torch.equal(a, b) for a, b in zip(fwd, bwd))
    # and the reconstructed input of block 0 is the input on the grid
    x_grid = torch.floor(x.detach() * 2.0**32 + 0.5) / 2.0**32
    assert torch.equal(seq.inverse(y.detach()), x_grid)


def test_float_mode_drifts_where_exact_mode_does_not():
    # the reason for exact mode: float reconstruction is not bit-exact over many blocks
    torch.manual_seed(0)
    blocks = [ReversibleBlock(nn.Sequential(nn.Linear(3, 3), nn.Tanh()), nn.Sequential(nn.Linear(3, 3), nn.Tanh()),
                              split_dim=-1) for _ in range(200)]
    x = torch.randn(4, 6)
    with torch.no_grad():
        flt = ReversibleSequence(*blocks)
        # float32 output: exact while frac_bits + log2|y| fits float32's 24-bit significand
        ex = ReversibleSequence(*blocks, exact=True, exact_dtype=torch.int64, frac_bits=16)
        assert not torch.equal(flt.inverse(flt(x)), x)
        x_grid = torch.floor(x.double() * 2.0**16 + 0.5).float() / 2.0**16
        assert torch.equal(ex.inverse(ex(x_grid)), x_grid)


@pytest.mark.parametrize("exact_dtype, frac_bits", [(torch.int64, 32), (torch.int32, 12)])
def test_exact_mode_gradients_equal_rounded_network(exact_dtype, frac_bits):
    seq = make_seq(5, exact=True, exact_dtype=exact_dtype, frac_bits=frac_bits)
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    a, b = run_both(seq, x)
    assert torch.equal(a[0], b[0])  # same rounding, same values
    assert_grads_close(a, b, 1e-10)


def test_single_block_module_and_inverse():
    torch.manual_seed(0)
    blk = ReversibleBlock(residual_fn(3, dropout=0.0), residual_fn(3, dropout=0.0)).double().eval()
    x = torch.randn(2, 6, 4, 4, dtype=torch.float64, requires_grad=True)
    y = blk(x)
    torch.testing.assert_close(blk.inverse(y.detach()), x.detach(), rtol=0, atol=1e-13)
    torch.testing.assert_close(y, blk.forward_stored(x), rtol=0, atol=1e-14)
    assert torch.autograd.gradcheck(blk, (x,))


def test_split_dim_last_and_caller_input_unchanged():
    torch.manual_seed(0)
    seq = ReversibleSequence(ReversibleBlock(nn.Linear(4, 4), nn.Linear(4, 4), split_dim=-1),
                             ReversibleBlock(nn.Linear(4, 4), nn.Linear(4, 4), split_dim=-1)).double()
    x = torch.randn(5, 8, dtype=torch.float64, requires_grad=True)
    x_copy = x.detach().clone()
    a, b = run_both(seq, x)
    assert torch.equal(x.detach(), x_copy)
    assert_grads_close(a, b, 1e-10)


# --------------------------------------------------------------------------- bad input

def test_odd_split_names_the_block():
    seq = make_seq(2, name="stage1")
    with pytest.raises(ValueError, match=r"stage1 block 0: the input has 5 entries along split_dim=1"):
        seq(torch.randn(2, 5, 3, 3, dtype=torch.float64))


def test_shape_change_names_the_block():
    torch.manual_seed(0)
    blocks = [ReversibleBlock(nn.Identity(), nn.Identity()),
              ReversibleBlock(nn.Conv2d(2, 2, 3, stride=2, padding=1), nn.Identity())]
    with pytest.raises(ValueError, match=r"ReversibleSequence block 1: F changed the shape: F\(x2\) has shape "
                                         r"\(1, 2, 2, 2\), but it is added to a half of shape \(1, 2, 4, 4\)"):
        ReversibleSequence(*blocks)(torch.randn(1, 4, 4, 4, requires_grad=True))


def test_inplace_f_names_the_block():
    blocks = [ReversibleBlock(nn.Identity(), nn.Identity()), ReversibleBlock(nn.Identity(), nn.ReLU(inplace=True))]
    with pytest.raises(RuntimeError, match="block 1: G modified its input y1 in place"):
        ReversibleSequence(*blocks)(torch.randn(1, 4, 2, 2))


def test_output_modified_in_place_before_backward():
    seq = make_seq(2, name="trunk")
    x = torch.randn(1, 4, 2, 2, dtype=torch.float64, requires_grad=True)
    y = seq(x)
    y.mul_(2)
    with pytest.raises(RuntimeError, match="trunk: its output was modified in place after the forward"):
        y.sum().backward()


class _Huge(nn.Module):
    def forward(self, t):
        return t * 0 + 3e38


class _Times(nn.Module):
    def __init__(self, k):
        super().__init__()
        self.k = nn.Parameter(torch.tensor(float(k)))

    def forward(self, t):
        return t * self.k


def test_nonfinite_reconstruction_names_the_block():
    blocks = [ReversibleBlock(_Times(0.5), _Times(0.5)), ReversibleBlock(_Huge(), _Times(10.0))]
    x = torch.randn(2, 4, requires_grad=True)
    out = ReversibleSequence(*blocks, name="net")(x)
    with pytest.raises(FloatingPointError, match=r"net block 1: \d+ non-finite value\(s\) appeared while reconstructing x2"):
        out.sum().backward()


def test_constructor_errors():
    with pytest.raises(TypeError, match="F must be a torch.nn.Module"):
        ReversibleBlock(lambda t: t, nn.Identity())
    with pytest.raises(TypeError, match=r"blocks\[1\] must be a ReversibleBlock"):
        ReversibleSequence(ReversibleBlock(nn.Identity(), nn.Identity()), nn.Identity())
    with pytest.raises(ValueError, match="same split_dim"):
        ReversibleSequence(ReversibleBlock(nn.Identity(), nn.Identity(), 1),
                           ReversibleBlock(nn.Identity(), nn.Identity(), 2))
    with pytest.raises(ValueError, match="at least one block"):
        ReversibleSequence()
    with pytest.raises(TypeError, match="exact_dtype"):
        ReversibleSequence(ReversibleBlock(nn.Identity(), nn.Identity()), exact=True, exact_dtype=torch.int16)
    with pytest.raises(ValueError, match="frac_bits must be in"):
        ReversibleSequence(ReversibleBlock(nn.Identity(), nn.Identity()), exact=True, exact_dtype=torch.int32,
                           frac_bits=40)
    with pytest.raises(TypeError, match="input must be floating point"):
        ReversibleSequence(ReversibleBlock(nn.Identity(), nn.Identity()))(torch.zeros(2, 4, dtype=torch.int64))


def test_exact_mode_rejects_out_of_range_input():
    seq = ReversibleSequence(ReversibleBlock(nn.Identity(), nn.Identity()), exact=True, exact_dtype=torch.int32,
                             frac_bits=16, name="ex")
    with pytest.raises(ValueError, match="ex: 1 input value"):
        seq(torch.tensor([[1.0, 1e6]]))
