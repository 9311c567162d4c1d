"""DeconvNet / guided ReLU backward rules and the context manager that applies them."""
from __future__ import annotations

import numpy as np
import pytest
import reference as ref

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from hotops.bindings import DeconvReLU, GuidedReLU, relu_rule  # noqa: E402


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("fn,rule", [(DeconvReLU, "deconvnet"), (GuidedReLU, "guided")])
def test_functions_match_reference(fn, rule, dtype):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 7, generator=gen, dtype=dtype)
    x[0, 0, :3] = 0.0  # the subgradient at 0 is 0 for both rules
    grad = torch.randn(3, 5, 7, generator=gen, dtype=dtype)
    xg = x.clone().requires_grad_(True)
    y = fn.apply(xg)
    torch.testing.assert_close(y, torch.relu(x))
    (got,) = torch.autograd.grad(y, xg, grad)
    want = torch.from_numpy(ref.relu_rule_backward(x.numpy(), grad.numpy(), rule)).to(dtype)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def _mixed_net():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(6, 8)
            self.r = nn.ReLU()
            self.b = nn.Linear(8, 8)
            self.c = nn.Linear(8, 8)
            self.d = nn.Linear(8, 3)

        def forward(self, x):
            x = self.r(self.a(x))
            x = F.relu(self.b(x))
            x = torch.relu(self.c(x))
            return self.d(x).relu()

    torch.manual_seed(0)
    return Net().double()


def _input_grad(net, x, rule):
    xg = x.clone().requires_grad_(True)
    with relu_rule(net, rule):
        out = net(xg)
    (g,) = torch.autograd.grad(out.sum(), xg)
    return g


def test_gradient_rule_is_autograd():
    net, x = _mixed_net(), torch.randn(4, 6, dtype=torch.float64)
    xg = x.clone().requires_grad_(True)
    (plain,) = torch.autograd.grad(net(xg).sum(), xg)
    torch.testing.assert_close(_input_grad(net, x, "gradient"), plain)


def test_all_relus_follow_the_rule():
    """Every ReLU form (module, F.relu, torch.relu, Tensor.relu) uses the rule: the result
    equals a hand-unrolled network that calls the Function at each of the four places."""
    net, x = _mixed_net(), torch.randn(5, 6, dtype=torch.float64)
    for rule, fn in (("deconvnet", DeconvReLU), ("guided", GuidedReLU)):
        xg = x.clone().requires_grad_(True)
        h = fn.apply(net.a(xg))
        h = fn.apply(net.b(h))
        h = fn.apply(net.c(h))
        out = fn.apply(net.d(h))
        (want,) = torch.autograd.grad(out.sum(), xg)
        torch.testing.assert_close(_input_grad(net, x, rule), want)


def test_restored_after_exception():
    net = _mixed_net()
    originals = (F.relu, F.relu_, torch.relu, torch.relu_)
    had_tensor_relu = "relu" in torch.Tensor.__dict__
    with pytest.raises(RuntimeError, match="boom"):
        with relu_rule(net, "guided"):
            assert F.relu is not originals[0]
            assert "forward" in net.r.__dict__
            raise RuntimeError("boom")
    assert (F.relu, F.relu_, torch.relu, torch.relu_) == originals
    assert ("relu" in torch.Tensor.__dict__) == had_tensor_relu
    assert "forward" not in net.r.__dict__
    x = torch.randn(2, 6, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(net(x).sum(), x)
    (g2,) = torch.autograd.grad(net(x).sum(), x)
    torch.testing.assert_close(g, g2)


def test_nesting_restores_outer():
    net, x = _mixed_net(), torch.randn(4, 6, dtype=torch.float64)

    def grad_here():
        xg = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(net(xg).sum(), xg)
        return g

    deconv, guided = _input_grad(net, x, "deconvnet"), _input_grad(net, x, "guided")
    assert not torch.equal(deconv, guided)
    with relu_rule(net, "deconvnet"):
        torch.testing.assert_close(grad_here(), deconv, rtol=0, atol=0)
        with relu_rule(net, "guided"):
            torch.testing.assert_close(grad_here(), guided, rtol=0, atol=0)
        torch.testing.assert_close(grad_here(), deconv, rtol=0, atol=0)
    assert F.relu is torch.nn.functional.relu and "forward" not in net.r.__dict__
    torch.testing.assert_close(grad_here(), _input_grad(net, x, "gradient"), rtol=0, atol=0)


def test_rules_are_scoped_to_their_thread():
    """Threads running the same model under different rules, at the same time, each get
    their own rule (a process-wide patch would hand one thread's rule to the other)."""
    import threading

    net, x = _mixed_net(), torch.randn(4, 6, dtype=torch.float64)
    want = {rule: _input_grad(net, x, rule) for rule in ("gradient", "deconvnet", "guided")}
    assert not torch.equal(want["gradient"], want["guided"])
    barrier = threading.Barrier(3)
    wrong = []

    def worker(rule):
        barrier.wait()
        for _ in range(60):
            got = _input_grad(net, x, rule)
            if not torch.equal(got, want[rule]):
                wrong.append(rule)

    threads = [threading.Thread(target=worker, args=(r,)) for r in want]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []
    assert F.relu is torch.nn.functional.relu and "forward" not in net.r.__dict__


def test_inplace_forms():
    x = torch.randn(4, 4, dtype=torch.float64, requires_grad=True)
    with relu_rule(None, "deconvnet"):
        h = x * 1.0
        out = F.relu(h, inplace=True)
        assert out is h
        h2 = x * 2.0
        torch.relu_(h2)
    torch.testing.assert_close(out, torch.relu(x))
    torch.testing.assert_close(h2, torch.relu(2 * x))
    (g,) = torch.autograd.grad(out.sum() + h2.sum(), x)
    torch.testing.assert_close(g, torch.full_like(x, 3.0))  # deconvnet: relu(ones) * (1 + 2)


def test_inplace_relu_module():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(inplace=True), nn.Linear(4, 2)).double()
    x = torch.randn(3, 3, dtype=torch.float64)
    with relu_rule(net, "guided", functional=False):
        out = net(x)
    torch.testing.assert_close(out, net(x))


def test_bad_arguments():
    with pytest.raises(ValueError, match="rule must be one of"):
        with relu_rule(None, "lrp"):
            pass
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        with relu_rule(object(), "guided"):
            pass
