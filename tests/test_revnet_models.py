"""RevNet / ResNet model definitions (Gomez et al. 2017, Table 1) and the training command."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from hotops import models
from hotops.bindings import saved_tensor_bytes


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def n_convs(m):
    return sum(1 for q in m.modules() if isinstance(q, nn.Conv2d))


@pytest.mark.parametrize("name, convs, params", [
    # convolutions + the classifier = the depth in the name (ResNets: plus projection shortcuts)
    ("revnet38", 37, 465_000), ("revnet110", 109, 1_729_000), ("revnet164", 163, 1_665_000),
    ("resnet32", 31 + 2, 467_000), ("resnet110", 109 + 2, 1_731_000), ("resnet164", 163 + 3, 1_703_000),
])
def test_cifar_models_depth_and_size(name, convs, params):
    m = getattr(models, name)()
    assert n_convs(m) == convs
    assert sum(p.numel() for p in m.parameters()) == pytest.approx(params, rel=2e-3)
    with torch.no_grad():
        assert m.eval()(torch.randn(2, 3, 8, 8)).shape == (2, 10)


def test_imagenet_models_depth():
    rev, res = models.revnet104(), models.resnet101()
    assert n_convs(rev) == 103 and n_convs(res) == 100 + 4
    assert [len(s) if s is not None else 0 for s in rev.stages] == [1, 1, 10, 1]
    with torch.no_grad():
        assert rev.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 1000)


def test_revnet38_reversible_equals_stored_float64():
    torch.manual_seed(0)
    m = models.revnet38().double()
    ref = copy.deepcopy(m)
    ref.reversible = False
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    target = torch.tensor([1, 7])
    for model in (m, ref):
        nn.functional.cross_entropy(model(x), target).backward()
    for (name, a), b in zip(m.named_parameters(), ref.parameters()):
        scale = float(b.grad.abs().max()) or 1.0
        assert float((a.grad - b.grad).abs().max()) / scale <= 1e-10, name
    for a, b in zip(m.buffers(), ref.buffers()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_revnet110_saves_less_than_stored():
    m = models.revnet110()
    x = torch.randn(2, 3, 8, 8)
    with saved_tensor_bytes() as rev:
        m(x)
    m.reversible = False
    with saved_tensor_bytes() as plain:
        m(x)
    assert rev["bytes"] * 3 < plain["bytes"]


def test_bad_configuration():
    with pytest.raises(ValueError, match="same length"):
        models.revnet.RevNet([16, 32], [3], 32)
    with pytest.raises(ValueError, match="c_in must be even"):
        models.revnet.RevNet([16], [2], 31)


@pytest.mark.parametrize("name", ["revnet38", "revnet110", "revnet164", "revnet104",
                                  "resnet32", "resnet110", "resnet164", "resnet101", "SimonyanNet"])
@pytest.mark.parametrize("num_classes, exc", [(0, ValueError), (-3, ValueError), (2.0, TypeError),
                                              (True, TypeError), ("10", TypeError)])
def test_num_classes_must_be_a_positive_integer(name, num_classes, exc):
    # checked before any layer is built (0 classes used to build a network with no outputs)
    with pytest.raises(exc, match="num_classes"):
        getattr(models, name)(num_classes=num_classes)


def test_sizes_must_be_integers():
    with pytest.raises(TypeError, match=r"channels\[1\]"):
        models.revnet.RevNet([16, 32.5], [2, 2], 32)
    with pytest.raises(TypeError, match="units must hold integers"):
        models.revnet.ResNet([16], [2.0], 16)
    with pytest.raises(ValueError, match="init_channels"):
        models.revnet.RevNet([16], [2], 0)
    with pytest.raises(TypeError, match="input_size"):
        models.SimonyanNet(10, input_size=(64.0, 64))
    with pytest.raises(ValueError, match="fc_width"):
        models.SimonyanNet(10, input_size=32, fc_width=0)
    import numpy as np

    with torch.device("meta"):
        net = models.revnet38(num_classes=np.int64(5))  # a numpy integer is an integer
    assert net.fc.out_features == 5
