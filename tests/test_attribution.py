"""hotops.saliency / hotops.class_model (Simonyan et al. 2013), cross-checked with Captum."""
from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import hotops  # noqa: E402


def _module_net(classes=6):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 5, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(5, 6, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(6 * 5 * 4, 12), nn.ReLU(), nn.Linear(12, classes),
    ).double().eval()


class _FunctionalNet(nn.Module):
    """The same layers, but the ReLUs are F.relu / torch.relu calls (no nn.ReLU modules)."""

    def __init__(self, seq):
        super().__init__()
        self.c1, self.c2, self.l1, self.l2 = seq[0], seq[3], seq[6], seq[8]

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = torch.relu(self.c2(x)).flatten(1)
        return self.l2(F.relu(self.l1(x)))


@pytest.fixture
def data():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, 10, 8, generator=gen, dtype=torch.float64)
    return x, torch.tensor([0, 3, 5, 1])


def _captum(cls, net, x, target, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls(net).attribute(x.clone(), target=target, **kw)


def test_gradient_matches_captum(data):
    from captum.attr import Saliency

    net, (x, t) = _module_net(), data
    x0 = x.clone()
    got = hotops.saliency(net, x, t)
    want = _captum(Saliency, net, x, t, abs=True).amax(1)
    assert got.shape == (4, 10, 8) and got.dtype == x.dtype
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(x, x0, rtol=0, atol=0)
    assert all(p.grad is None for p in net.parameters())


@pytest.mark.parametrize("method,cls_name", [("guided", "GuidedBackprop"), ("deconvnet", "Deconvolution")])
def test_rules_match_captum_on_module_relus(data, method, cls_name):
    import captum.attr

    net, (x, t) = _module_net(), data
    want = _captum(getattr(captum.attr, cls_name), net, x, t).abs().amax(1)
    got = hotops.saliency(net, x, t, method)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    assert got.abs().max() > 0


@pytest.mark.parametrize("method", ["guided", "deconvnet"])
def test_functional_relu_difference_from_captum(data, method):
    """On a model whose ReLUs are F.relu/torch.relu calls, Captum's hooks see no nn.ReLU and
    return the plain gradient; hotops applies the rule (and equals the nn.ReLU model's)."""
    import captum.attr

    seq, (x, t) = _module_net(), data
    fnet = _FunctionalNet(seq).eval()
    cls = {"guided": captum.attr.GuidedBackprop, "deconvnet": captum.attr.Deconvolution}[method]
    captum_f = _captum(cls, fnet, x, t).abs().amax(1)
    plain = hotops.saliency(fnet, x, t, "gradient")
    torch.testing.assert_close(captum_f, plain)  # Captum: the rule was not applied
    ours = hotops.saliency(fnet, x, t, method)
    torch.testing.assert_close(ours, hotops.saliency(seq, x, t, method))
    assert (ours - plain).abs().max() > 1e-6  # and it changes the map


@pytest.mark.parametrize("batching", ["replicate", "vmap", "loop"])
@pytest.mark.parametrize("method", ["gradient", "guided", "deconvnet"])
def test_multi_target_equals_per_target(data, method, batching):
    net, (x, _) = _module_net(), data
    targets = torch.tensor([[0, 1, 2], [5, 5, 0], [3, 4, 1], [2, 0, 5]])
    got = hotops.saliency(net, x, targets, method, batching=batching)
    assert got.shape == (4, 3, 10, 8)
    for k in range(3):
        torch.testing.assert_close(got[:, k], hotops.saliency(net, x, targets[:, k], method), rtol=1e-12, atol=1e-14)


def test_multi_target_runs_one_forward(data):
    net, (x, _) = _module_net(), data
    calls = []
    net.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    hotops.saliency(net, x, torch.zeros(4, 7, dtype=torch.long), batching="vmap")
    hotops.saliency(net, x, torch.zeros(4, 7, dtype=torch.long), batching="replicate")
    hotops.saliency(net, x, torch.zeros(4, 7, dtype=torch.long), batching="loop")
    assert calls == [4, 28, 4]


def test_target_forms(data):
    net, (x, _) = _module_net(), data
    a = hotops.saliency(net, x, 2)
    torch.testing.assert_close(a, hotops.saliency(net, x, [2, 2, 2, 2]))
    torch.testing.assert_close(a, hotops.saliency(net, x, np.full(4, 2)))
    torch.testing.assert_close(a, hotops.saliency(net, x, torch.tensor(2)))


def test_float32(data):
    net, (x, t) = _module_net(), data
    got = hotops.saliency(net.float(), x.float(), t)
    want = hotops.saliency(net.double(), x, t)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("target,exc,match", [
    (6, ValueError, "out of range"),
    (-1, ValueError, "out of range"),
    ([0, 1], ValueError, "one entry per image"),
    (torch.zeros(4, 2, 2, dtype=torch.long), ValueError, r"\(N, T\)"),
    (torch.zeros(4), TypeError, "integers"),
    (True, TypeError, "bool"),
])
def test_bad_target(data, target, exc, match):
    net, (x, _) = _module_net(), data
    with pytest.raises(exc, match=match):
        hotops.saliency(net, x, target)


def test_bad_model_output_and_inputs(data):
    x, t = data
    bad = nn.Sequential(nn.Conv2d(3, 2, 1)).double()  # (N, 2, H, W), not (N, classes)
    with pytest.raises(ValueError, match=r"model output must have shape \(N, classes\)"):
        hotops.saliency(bad, x, t)
    net = _module_net()
    with pytest.raises(ValueError, match="method must be one of"):
        hotops.saliency(net, x, t, "lrp")
    with pytest.raises(ValueError, match="4 dimensions"):
        hotops.saliency(net, x[0], t)
    with pytest.raises(TypeError, match="torch.Tensor"):
        hotops.saliency(net, x.numpy(), t)
    with pytest.raises(ValueError, match="batching"):
        hotops.saliency(net, x, t, batching="chunks")


# ---------------------------------------------------------------------- class model

def test_class_model_ascends_and_batches():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 5))
    net.train()
    imgs = hotops.class_model(net, [1, 3], steps=15, lr=0.5, l2=1e-2, input_shape=(3, 8, 8), progress=False)
    assert imgs.shape == (2, 3, 8, 8) and net.training  # mode restored
    assert all(p.grad is None for p in net.parameters())
    net.eval()
    with torch.no_grad():
        scores = net(imgs)
        zero = net(torch.zeros(1, 3, 8, 8))
    assert scores[0, 1] > zero[0, 1] and scores[1, 3] > zero[0, 3]
    single = hotops.class_model(net, 3, steps=15, lr=0.5, l2=1e-2, input_shape=(3, 8, 8), progress=False)
    assert single.shape == (3, 8, 8)
    torch.testing.assert_close(single, imgs[1], rtol=1e-5, atol=1e-6)
    mean = torch.arange(3.0)
    with_mean = hotops.class_model(net, 3, steps=15, lr=0.5, l2=1e-2, input_shape=(3, 8, 8),
                                   mean_image=mean, progress=False)
    torch.testing.assert_close(with_mean, single + mean.view(3, 1, 1))


def test_class_model_bad_input():
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
    with pytest.raises(ValueError, match="input_shape"):
        hotops.class_model(net, 1, steps=1, progress=False)
    with pytest.raises(ValueError, match="out of range"):
        hotops.class_model(net, 4, steps=1, input_shape=(3, 2, 2), progress=False)
    with pytest.raises(ValueError, match="steps"):
        hotops.class_model(net, 1, steps=0, input_shape=(3, 2, 2), progress=False)
    with pytest.raises(ValueError, match="mean_image"):
        hotops.class_model(net, 1, steps=1, input_shape=(3, 2, 2), mean_image=torch.zeros(5), progress=False)


# ---------------------------------------------------------------------- SimonyanNet

def test_simonyan_net_paper_default():
    from hotops.models import SimonyanNet

    with torch.device("meta"):
        net = SimonyanNet()
    convs = [m.out_channels for m in net.modules() if isinstance(m, nn.Conv2d)]
    fcs = [m.out_features for m in net.modules() if isinstance(m, nn.Linear)]
    assert convs == [64, 256, 256, 256, 256] and fcs == [4096, 4096, 1000]
    assert net.feature_shape == (256, 7, 7)


def test_simonyan_net_small_runs():
    from hotops.models import SimonyanNet

    net = SimonyanNet(num_classes=7, input_size=48, width=0.125, fc_width=32).eval()
    x = torch.randn(2, 3, 48, 48)
    assert net(x).shape == (2, 7)
    assert hotops.saliency(net, x, [0, 6], "guided").shape == (2, 48, 48)
    with pytest.raises(ValueError, match="x must have shape"):
        net(torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match="width"):
        SimonyanNet(width=0)


def test_non_finite_image_is_refused(data):
    # a NaN pixel need not reach the gradient (ReLU, max-pooling): the map would look finite
    x, t = data
    net = _module_net()
    for bad in (float("nan"), float("inf")):
        xb = x.clone()
        xb[1, 2, 3, 4] = bad
        before = xb.clone()
        with pytest.raises(ValueError, match="x must be finite"):
            hotops.saliency(net, xb, t)
        assert torch.equal(xb.isnan(), before.isnan()) and torch.equal(xb.nan_to_num(), before.nan_to_num())


def test_half_precision_map_on_the_cpu(data):
    x, t = data
    net = _module_net().to(torch.bfloat16)
    got = hotops.saliency(net, x.to(torch.bfloat16), t)
    assert got.dtype == torch.bfloat16 and got.shape == (4, 10, 8)
    xg = x.to(torch.bfloat16).requires_grad_(True)
    net(xg).gather(1, t.view(-1, 1)).sum().backward()
    assert torch.equal(got, xg.grad.abs().amax(1))


def test_class_model_float64_model():
    # the image takes the model's dtype (it was always float32, which a float64 model refuses)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 5)).double()
    img = hotops.class_model(net, 2, steps=3, input_shape=(3, 8, 8), mean_image=torch.ones(3), progress=False)
    assert img.dtype == torch.float64 and img.shape == (3, 8, 8)
    net32 = copy.deepcopy(net).float()
    img32 = hotops.class_model(net32, 2, steps=3, input_shape=(3, 8, 8), mean_image=torch.ones(3), progress=False)
    assert img32.dtype == torch.float32
    torch.testing.assert_close(img32.double(), img, rtol=1e-4, atol=1e-5)
    for kw, exc in [(dict(lr=float("nan")), ValueError), (dict(lr=0.0), ValueError), (dict(l2=-1.0), ValueError),
                    (dict(lr="1"), TypeError), (dict(input_shape=(3, 8.0, 8)), TypeError)]:
        with pytest.raises(exc):
            hotops.class_model(net, 2, **{"steps": 1, "input_shape": (3, 8, 8), "progress": False, **kw})
