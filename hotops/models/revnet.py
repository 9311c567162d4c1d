"""RevNets (Gomez et al. 2017) and their ResNet counterparts, for CIFAR and ImageNet.

Gomez, Ren, Urtasun & Grosse, "The Reversible Residual Network: Backpropagation Without
Storing Activations" (NeurIPS 2017), Sec. 5 / Table 1. The configurations follow the
authors' code (revnet-public; the same numbers are in tensor2tensor's ``revnet.py``):

========== ======================= ================ ==========================
model      channels per half        units per stage  residual function
========== ======================= ================ ==========================
RevNet-38  16, 32, 56 (32/64/112)   3, 3, 3          basic (two 3x3 convs)
RevNet-110 16, 32, 64 (32/64/128)   9, 9, 9          basic
RevNet-164 16, 32, 64 (x4 out)      9, 9, 9          bottleneck (1x1, 3x3, 1x1)
RevNet-104 64, 128, 256, 416 (x4)   2, 2, 11, 2      bottleneck, ImageNet stem
ResNet-32  16, 32, 64               5, 5, 5          basic
ResNet-110 16, 32, 64               18, 18, 18       basic
ResNet-164 16, 32, 64 (x4 out)      18, 18, 18       bottleneck
ResNet-101 64, 128, 256, 512 (x4)   3, 4, 23, 3      bottleneck, ImageNet stem
========== ======================= ================ ==========================

In every RevNet stage the first unit changes the resolution and/or the width and is *not*
reversible (:class:`DownsampleUnit`, a coupling whose shortcut is an average pool and zero
channel padding); it stores its activations. The remaining units of the stage are
:class:`hotops.bindings.ReversibleBlock` s run as one
:class:`hotops.bindings.ReversibleSequence` per stage, so their activation memory does not
grow with the number of units. Depth counts convolutions: 38 = 9 units x 2 functions x 2
convs + stem + classifier.

``RevNet(..., reversible=False)`` (or setting ``model.reversible = False``) runs the
identical network with plain autograd storing every activation: the baseline of the
memory and time comparisons.
"""
from __future__ import annotations

import numbers

import torch
import torch.nn.functional as nnf
from torch import nn

from hotops.bindings import ReversibleBlock, ReversibleSequence
from hotops.kernels._validate import check_int

__all__ = ["RevNet", "ResNet", "DownsampleUnit", "residual_function",
           "revnet38", "revnet110", "revnet164", "revnet104", "resnet32", "resnet110", "resnet164", "resnet101"]

EXPANSION = 4  # bottleneck output channels = 4 x inner channels


def residual_function(c_in: int, c_mid: int, stride: int = 1, bottleneck: bool = False,
                      preactivate: bool = True) -> nn.Sequential:
    """Pre-activation residual function (He et al. 2016): BN-ReLU-conv blocks.

    basic: 3x3 (stride) -> 3x3, output ``c_mid`` channels; bottleneck: 1x1 -> 3x3 (stride)
    -> 1x1, output ``EXPANSION * c_mid``. ``preactivate=False`` drops the leading BN-ReLU
    (the first unit after the stem, whose output is already normalised).
    """
    layers: list[nn.Module] = []
    if preactivate:
        layers += [nn.BatchNorm2d(c_in), nn.ReLU()]
    if bottleneck:
        layers += [nn.Conv2d(c_in, c_mid, 1, bias=False),
                   nn.BatchNorm2d(c_mid), nn.ReLU(), nn.Conv2d(c_mid, c_mid, 3, stride, 1, bias=False),
                   nn.BatchNorm2d(c_mid), nn.ReLU(), nn.Conv2d(c_mid, EXPANSION * c_mid, 1, bias=False)]
    else:
        layers += [nn.Conv2d(c_in, c_mid, 3, stride, 1, bias=False),
                   nn.BatchNorm2d(c_mid), nn.ReLU(), nn.Conv2d(c_mid, c_mid, 3, 1, 1, bias=False)]
    return nn.Sequential(*layers)


def _pool_pad(x: torch.Tensor, stride: int, c_out: int) -> torch.Tensor:
    """Parameter-free shortcut: average pool by ``stride`` and zero-pad channels to ``c_out``."""
    if stride > 1:
        x = nnf.avg_pool2d(x, stride)
    extra = c_out - x.shape[1]
    if extra:
        x = nnf.pad(x, (0, 0, 0, 0, 0, extra))
    return x


class DownsampleUnit(nn.Module):
    """Non-reversible coupling at a stage boundary (stores its activations).

    y1 = S(x1) + F(x2), y2 = S(x2) + G(y1), with F strided and widening, G keeping the
    shape, and S an average pool plus zero channel padding.
    """

    def __init__(self, c_in: int, c_mid: int, stride: int, bottleneck: bool, preactivate: bool = True):
        super().__init__()
        if c_in % 2:
            raise ValueError(f"c_in must be even (it is split into two halves), got {c_in}")
        half_in = c_in // 2
        self.half_out = (EXPANSION if bottleneck else 1) * c_mid
        if self.half_out < half_in:
            raise ValueError(f"a downsampling unit cannot narrow the halves: {half_in} -> {self.half_out}")
        self.stride = stride
        self.F = residual_function(half_in, c_mid, stride, bottleneck, preactivate)
        self.G = residual_function(self.half_out, c_mid, 1, bottleneck)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, 1)
        y1 = _pool_pad(x1, self.stride, self.half_out) + self.F(x2)
        y2 = _pool_pad(x2, self.stride, self.half_out) + self.G(y1)
        return torch.cat([y1, y2], 1)


def _check_config(channels, units, init_channels, num_classes):
    """The sizes of a network as lists of ints; ``TypeError``/``ValueError`` naming the
    argument (bools and floats are no sizes)."""
    for name, seq in (("channels", channels), ("units", units)):
        if isinstance(seq, (str, bytes)) or not hasattr(seq, "__len__"):
            raise TypeError(f"{name} must be a sequence of integers, got {seq!r}")
    if len(channels) != len(units):
        raise ValueError(f"channels and units must have the same length, got {list(channels)} and {list(units)}")
    if not len(units):
        raise ValueError("the network needs at least one stage, got channels=[] and units=[]")
    channels = [check_int(f"channels[{i}]", c, min=1) for i, c in enumerate(channels)]
    if any(isinstance(u, bool) or not isinstance(u, numbers.Integral) for u in units):
        raise TypeError(f"units must hold integers, got {list(units)}")
    if any(u < 1 for u in units):
        raise ValueError(f"every stage needs at least one unit, got units={list(units)}")
    units = [int(u) for u in units]
    init_channels = check_int("init_channels", init_channels, min=1)
    num_classes = check_int("num_classes", num_classes, min=1)
    return channels, units, init_channels, num_classes


def _stem(c_out: int, imagenet: bool) -> nn.Sequential:
    if imagenet:
        return nn.Sequential(nn.Conv2d(3, c_out, 7, 2, 3, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
                             nn.MaxPool2d(3, 2, 1))
    return nn.Sequential(nn.Conv2d(3, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class RevNet(nn.Module):
    """Reversible residual network (Gomez et al. 2017).

    Parameters
    ----------
    channels : sequence of int
        Inner channels of each half's residual functions, per stage.
    units : sequence of int
        Units per stage (the first is a :class:`DownsampleUnit`, the rest reversible).
    init_channels : int
        Stem output channels.
    bottleneck : bool
        Bottleneck residual functions (output = 4 x inner channels per half).
    imagenet : bool
        7x7/2 stem with max pooling and strides (1, 2, 2, 2) instead of the CIFAR stem.
    num_classes : int
    reversible : bool
        False runs the same network storing all activations (plain autograd).
    exact : bool
        Fixed-point reversible stages (bit-exact reconstruction), see ReversibleSequence.
    """

    def __init__(self, channels, units, init_channels: int, bottleneck: bool = False, imagenet: bool = False,
                 num_classes: int = 10, reversible: bool = True, exact: bool = False):
        super().__init__()
        channels, units, init_channels, num_classes = _check_config(channels, units, init_channels, num_classes)
        self.config = {"channels": list(channels), "units": list(units), "init_channels": init_channels,
                       "bottleneck": bottleneck, "imagenet": imagenet, "num_classes": num_classes}
        self.reversible = reversible
        self.stem = _stem(init_channels, imagenet)
        strides = [1] + [2] * (len(units) - 1)
        c_in = init_channels
        self.downsample = nn.ModuleList()
        self.stages = nn.ModuleList()
        for k, (c, n, s) in enumerate(zip(channels, units, strides)):
            unit = DownsampleUnit(c_in, c, s, bottleneck, preactivate=k > 0)
            half = unit.half_out
            self.downsample.append(unit)
            blocks = [ReversibleBlock(residual_function(half, c, 1, bottleneck), residual_function(half, c, 1, bottleneck))
                      for _ in range(n - 1)]
            self.stages.append(ReversibleSequence(*blocks, exact=exact, name=f"stage{k + 1}") if blocks else None)
            c_in = 2 * half
        self.head_bn = nn.BatchNorm2d(c_in)
        self.fc = nn.Linear(c_in, num_classes)
        self.out_channels = c_in
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for unit, stage in zip(self.downsample, self.stages):
            x = unit(x)
            if stage is not None:
                x = stage(x) if self.reversible else stage.forward_stored(x)
        return torch.relu(self.head_bn(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(nnf.adaptive_avg_pool2d(self.features(x), 1), 1))


class _PreActUnit(nn.Module):
    def __init__(self, c_in: int, c_mid: int, stride: int, bottleneck: bool, preactivate: bool):
        super().__init__()
        c_out = (EXPANSION if bottleneck else 1) * c_mid
        self.f = residual_function(c_in, c_mid, stride, bottleneck, preactivate)
        self.shortcut = (nn.Conv2d(c_in, c_out, 1, stride, bias=False) if (stride != 1 or c_in != c_out)
                         else nn.Identity())
        self.c_out = c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.f(x)


class ResNet(nn.Module):
    """Pre-activation ResNet (He et al. 2016), the RevNet paper's baseline (same stems/heads)."""

    def __init__(self, channels, units, init_channels: int, bottleneck: bool = False, imagenet: bool = False,
                 num_classes: int = 10):
        super().__init__()
        channels, units, init_channels, num_classes = _check_config(channels, units, init_channels, num_classes)
        self.config = {"channels": list(channels), "units": list(units), "init_channels": init_channels,
                       "bottleneck": bottleneck, "imagenet": imagenet, "num_classes": num_classes}
        self.stem = _stem(init_channels, imagenet)
        strides = [1] + [2] * (len(units) - 1)
        c_in = init_channels
        layers = []
        for k, (c, n, s) in enumerate(zip(channels, units, strides)):
            for j in range(n):
                unit = _PreActUnit(c_in, c, s if j == 0 else 1, bottleneck, preactivate=not (k == 0 and j == 0))
                layers.append(unit)
                c_in = unit.c_out
        self.body = nn.Sequential(*layers)
        self.head_bn = nn.BatchNorm2d(c_in)
        self.fc = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.head_bn(self.body(self.stem(x))))
        return self.fc(torch.flatten(nnf.adaptive_avg_pool2d(x, 1), 1))


def revnet38(num_classes: int = 10, **kw) -> RevNet:
    """RevNet-38 for CIFAR (32x32): channels per half 16/32/56, units 3/3/3."""
    return RevNet([16, 32, 56], [3, 3, 3], 32, num_classes=num_classes, **kw)


def revnet110(num_classes: int = 10, **kw) -> RevNet:
    """RevNet-110 for CIFAR: channels per half 16/32/64, units 9/9/9."""
    return RevNet([16, 32, 64], [9, 9, 9], 32, num_classes=num_classes, **kw)


def revnet164(num_classes: int = 10, **kw) -> RevNet:
    """RevNet-164 for CIFAR: bottleneck units, inner channels per half 16/32/64, units 9/9/9."""
    return RevNet([16, 32, 64], [9, 9, 9], 32, bottleneck=True, num_classes=num_classes, **kw)


def revnet104(num_classes: int = 1000, **kw) -> RevNet:
    """RevNet-104 for ImageNet (224x224): bottleneck, inner channels per half 64/128/256/416,
    units 2/2/11/2 (the paper's Table 1: 128/256/512/832 over both halves)."""
    return RevNet([64, 128, 256, 416], [2, 2, 11, 2], 64, bottleneck=True, imagenet=True,
                  num_classes=num_classes, **kw)


def resnet32(num_classes: int = 10) -> ResNet:
    """ResNet-32 for CIFAR: 16/32/64 channels, 5/5/5 units."""
    return ResNet([16, 32, 64], [5, 5, 5], 16, num_classes=num_classes)


def resnet110(num_classes: int = 10) -> ResNet:
    """ResNet-110 for CIFAR: 16/32/64 channels, 18/18/18 units."""
    return ResNet([16, 32, 64], [18, 18, 18], 16, num_classes=num_classes)


def resnet164(num_classes: int = 10) -> ResNet:
    """ResNet-164 for CIFAR: bottleneck, inner 16/32/64 channels, 18/18/18 units."""
    return ResNet([16, 32, 64], [18, 18, 18], 16, bottleneck=True, num_classes=num_classes)


def resnet101(num_classes: int = 1000) -> ResNet:
    """ResNet-101 for ImageNet: bottleneck, inner 64/128/256/512 channels, 3/4/23/3 units."""
    return ResNet([64, 128, 256, 512], [3, 4, 23, 3], 64, bottleneck=True, imagenet=True, num_classes=num_classes)
