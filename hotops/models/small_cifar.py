"""A compact all-convolutional CIFAR-10 classifier for the demo.

``SmallCifarNet`` is a VGG-like stack of 3x3 convolutions with batch norm and ReLU, max
pooling between stages, a 1x1 convolution as classifier and global average pooling at the
end: no fully-connected layer, so the same weights run on 32x32 CIFAR images and on
larger photos (the demo feeds it 128x128 scikit-image samples and takes saliency maps
through it, Simonyan et al. 2013).

The committed checkpoint ``hotops/checkpoints/small_cifar.pt`` was trained with
``hotops train small-cifar`` on this project's shared CIFAR-10 copy; it stores the
weights in float16 (cast back to float32 on load), the class names, the input
normalisation, the measured test accuracy and how it was trained.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..data import UnreadableFileError
from ._paths import checkpoint, load_checkpoint

__all__ = ["SmallCifarNet", "load_small_cifar", "CHECKPOINT", "DEFAULT_WIDTHS"]

CHECKPOINT = checkpoint("small_cifar.pt")
DEFAULT_WIDTHS = (16, 32, 64, 128)  # the committed checkpoint's
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def _conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class _Residual(nn.Module):
    """x + f(x), with f two conv-bn-relu layers of the same width."""

    def __init__(self, c: int):
        super().__init__()
        self.f = nn.Sequential(_conv_bn(c, c), _conv_bn(c, c))

    def forward(self, x):
        return x + self.f(x)


class SmallCifarNet(nn.Module):
    """Compact all-convolutional CNN with global average pooling.

    Layout for widths ``(w0, w1, w2, w3)`` (spatial size for a 32x32 input)::

        stem    conv3x3(3 -> w0)                          32x32
        stage1  conv3x3(w0 -> w1), maxpool2               16x16
        stage2  conv3x3(w1 -> w2), maxpool2, [residual]    8x8
        stage3  conv3x3(w2 -> w3), maxpool2, [residual]    4x4
        head    conv1x1(w3 -> classes), global average pool -> logits

    Parameters
    ----------
    num_classes : int
    widths : 4 ints
    residual : bool
        Add a two-layer residual block after stages 2 and 3 (more accuracy per epoch).

    The defaults (widths 16/32/64/128, residual) are the committed checkpoint's: 468k
    parameters, about 24M multiply-adds for a 32x32 image.
    """

    def __init__(self, num_classes: int = 10, widths=DEFAULT_WIDTHS, residual: bool = True):
        super().__init__()
        w0, w1, w2, w3 = (int(w) for w in widths)
        self.widths = (w0, w1, w2, w3)
        self.residual = bool(residual)
        self.num_classes = int(num_classes)
        stage2 = [_conv_bn(w1, w2), nn.MaxPool2d(2)]
        stage3 = [_conv_bn(w2, w3), nn.MaxPool2d(2)]
        if residual:
            stage2.append(_Residual(w2))
            stage3.append(_Residual(w3))
        self.features = nn.Sequential(
            _conv_bn(3, w0),
            _conv_bn(w0, w1), nn.MaxPool2d(2),
            *stage2,
            *stage3,
        )
        self.classifier = nn.Conv2d(w3, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 3, H, W) normalised images, any H, W >= 8 -> (N, num_classes) logits."""
        return self.classifier(self.features(x)).mean(dim=(2, 3))


def load_small_cifar(pretrained: bool = True, path=None, map_location="cpu"):
    """Build ``SmallCifarNet`` and load the committed weights.

    Parameters
    ----------
    pretrained : bool
        Load the checkpoint; ``False`` returns a randomly initialised net with the
        checkpoint's architecture when it exists (default widths otherwise).
    path : path, optional
        Another checkpoint written by ``hotops train small-cifar``.

    Returns
    -------
    model : SmallCifarNet in eval mode, float32
    meta : dict with ``classes`` (tuple of str), ``mean`` and ``std`` (per-channel input
        normalisation, applied to RGB in [0, 1]), ``test_accuracy`` (float in [0, 1]) and
        ``train`` (how it was trained), or just the defaults when not pretrained.

    The file is read with ``torch.load(weights_only=True)`` (tensors and plain data only):
    ``ValueError`` naming the file when it holds anything else or is not a small_cifar
    checkpoint.
    """
    from ..data import CIFAR10_CLASSES

    p = Path(path) if path is not None else CHECKPOINT
    ckpt = None
    if pretrained or p.exists():
        if not p.exists():
            raise FileNotFoundError(f"checkpoint not found: {p} (train one with: hotops train small-cifar)")
        ckpt = load_checkpoint(p, "small_cifar checkpoint", map_location=map_location)
    meta = {
        "classes": CIFAR10_CLASSES,
        "mean": CIFAR10_MEAN,
        "std": CIFAR10_STD,
        "test_accuracy": None,
        "train": {},
    }
    try:
        arch = (ckpt or {}).get("arch", {})
        model = SmallCifarNet(
            num_classes=arch.get("num_classes", 10),
            widths=tuple(arch.get("widths", DEFAULT_WIDTHS)),
            residual=arch.get("residual", True),
        )
        if ckpt is not None:
            meta.update(
                classes=tuple(ckpt["classes"]),
                mean=tuple(float(v) for v in ckpt["mean"]),
                std=tuple(float(v) for v in ckpt["std"]),
                test_accuracy=float(ckpt["test_accuracy"]),
                train=dict(ckpt.get("train", {})),
            )
        if pretrained:
            state = {k: (v.float() if v.is_floating_point() else v) for k, v in ckpt["state_dict"].items()}
            model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        raise UnreadableFileError(f"{p} is not a small_cifar checkpoint ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    model.eval()
    return model, meta
