"""The localisation benchmark's classifier: a small fully convolutional net with global
max pooling (:func:`localizer_net`) and its committed checkpoint (:func:`load_localizer`).

It is trained by ``hotops train localizer`` (``hotops.apps.loc_bench``) on cluttered
canvases with one MNIST digit each, and used by ``hotops saliency`` and the demo for
saliency maps and GraphCut localisation (Simonyan et al. 2013, Sec. 3.2).
"""
from __future__ import annotations

from pathlib import Path

from ..data import UnreadableFileError
from ._paths import checkpoint, load_checkpoint

__all__ = ["localizer_net", "load_localizer", "CHECKPOINT", "MEAN", "STD", "ARCH"]

CHECKPOINT = checkpoint("localizer.pt")
#: input normalisation of RGB in [0, 1]
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)
#: the committed checkpoint's architecture
ARCH = {"num_classes": 10, "widths": (32, 64, 96, 96)}


def _conv_bn_relu(c_in, c_out, k=3, stride=1):
    from torch import nn

    return [nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


def localizer_net(num_classes: int = 10, widths=(32, 64, 96, 96)):
    """The benchmark's classifier: a fully convolutional net with global max pooling.

    conv5x5/2 - maxpool2 - conv3x3 - maxpool2 - conv3x3 - conv3x3 (BatchNorm + nn.ReLU
    each) - conv1x1 to the class scores - max over positions. Any input size >= 16; the
    class score S_c is the strongest response of the class's detector anywhere in the
    image, so a single object at any position is found (a plain SimonyanNet with fully
    connected layers did not leave chance level in the same CPU budget on these canvases).
    """
    import torch
    from torch import nn

    class _GlobalMaxPool(nn.Module):
        def forward(self, x):
            return torch.amax(x, dim=(2, 3))

    w0, w1, w2, w3 = (int(w) for w in widths)
    return nn.Sequential(
        *_conv_bn_relu(3, w0, 5, 2), nn.MaxPool2d(2),
        *_conv_bn_relu(w0, w1), nn.MaxPool2d(2),
        *_conv_bn_relu(w1, w2), *_conv_bn_relu(w2, w3),
        nn.Conv2d(w3, int(num_classes), 1), _GlobalMaxPool(),
    )


def load_localizer(path=None):
    """The benchmark's classifier from its committed checkpoint.

    Returns
    -------
    model : :func:`localizer_net` in eval mode, float32
    meta : dict with ``classes``, ``mean``, ``std`` (normalisation of RGB in [0, 1]),
        ``canvas`` (side), ``test_accuracy`` (on held-out canvases) and ``train``.

    The file is read with ``torch.load(weights_only=True)`` (tensors and plain data only):
    ``ValueError`` naming the file when it holds anything else or is not a localizer
    checkpoint, ``FileNotFoundError`` when it is missing.
    """
    p = Path(path) if path is not None else CHECKPOINT
    if not p.exists():
        raise FileNotFoundError(f"checkpoint not found: {p} (train one with: hotops train localizer)")
    ckpt = load_checkpoint(p, "localizer checkpoint")
    try:
        arch = dict(ckpt["arch"])
        model = localizer_net(**arch)
        model.load_state_dict({k: (v.float() if v.is_floating_point() else v) for k, v in ckpt["state_dict"].items()})
        meta = {k: ckpt[k] for k in ("classes", "mean", "std", "canvas", "test_accuracy", "train")}
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        raise UnreadableFileError(f"{p} is not a localizer checkpoint ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    model.eval()
    meta["classes"] = tuple(meta["classes"])
    return model, meta
