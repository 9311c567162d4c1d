"""The ConvNet of Simonyan, Vedaldi & Zisserman, "Deep Inside Convolutional Networks" (2013).

The paper (Sec. 2) gives the layer widths only: ``conv64-conv256-conv256-conv256-conv256-
full4096-full4096-full1000`` (convN: a convolutional layer with N filters, fullM: a fully
connected layer with M outputs), trained on ILSVRC-2013 (39.7% top-1 / 17.7% top-5 error),
"similar to Krizhevsky et al. (2012)". The kernel sizes, strides and pooling below follow
that lineage (AlexNet / Zeiler & Fergus) and are *our* reading, not the paper's text:

=======  ==========================================  ======================
layer    operation                                   224x224 input -> size
=======  ==========================================  ======================
conv1    7x7 stride 2, ReLU, max-pool 3x3 stride 2   112 -> 56
conv2    5x5 stride 2, ReLU, max-pool 3x3 stride 2   28 -> 14
conv3-5  3x3 stride 1, ReLU each                     14
pool5    max-pool 3x3 stride 2                       7
full6-7  4096 each, ReLU, dropout 0.5
full8    1000 (the class scores S_c)
=======  ==========================================  ======================

``width`` scales the convolutional widths and ``fc_width`` sets the two hidden fully
connected layers, for CPU-sized variants; the defaults are the paper's network. (The
localisation benchmark, ``hotops.apps.loc_bench``, does not use it: ``SimonyanNet(10, 96,
width=0.25, fc_width=512, batch_norm=True)`` stayed at chance level, loss 2.30, after 160
Adam steps of batch 128 on its cluttered canvases, where a small fully convolutional net with
global max pooling learned; see ``hotops.models.localizer.localizer_net``.)
"""
from __future__ import annotations

import numbers

import torch
from torch import nn

from hotops.kernels._validate import check_int, check_real

__all__ = ["SimonyanNet"]

PAPER_CONV_WIDTHS = (64, 256, 256, 256, 256)
PAPER_FC_WIDTH = 4096


def _out(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


class SimonyanNet(nn.Module):
    """conv64-conv256-conv256-conv256-conv256-full4096-full4096-full1000 (Simonyan et al. 2013).

    Parameters
    ----------
    num_classes : int
        Outputs of the last layer (1000 in the paper).
    input_size : int or (int, int)
        Height and width of the input images (224 in the paper); fixes the size of full6.
    width : float
        Multiplier of the convolutional widths (1.0: 64, 256, 256, 256, 256).
    fc_width : int, optional
        Outputs of full6 and full7 (default ``round(4096 * width)``).
    batch_norm : bool
        BatchNorm after every convolution (not in the paper; helps short CPU training).
    dropout : float
        Dropout before full7 and full8 (0.5 as in Krizhevsky et al.).

    Notes
    -----
    Only nn.ReLU modules are used as non-linearities (no functional ``F.relu``), so Captum's
    ``GuidedBackprop``/``Deconvolution`` and ``hotops.saliency`` apply the same rule to it.
    """

    def __init__(self, num_classes: int = 1000, input_size=224, width: float = 1.0,
                 fc_width: int | None = None, batch_norm: bool = False, dropout: float = 0.5):
        super().__init__()
        if isinstance(input_size, numbers.Integral) and not isinstance(input_size, bool):
            input_size = (input_size, input_size)
        if isinstance(input_size, (str, bytes)) or not hasattr(input_size, "__len__") or len(input_size) != 2:
            raise TypeError(f"input_size must be an int or a pair of ints, got {input_size!r}")
        h, w = (check_int("input_size", s) for s in input_size)
        num_classes = check_int("num_classes", num_classes, min=1)
        width = check_real("width", width)
        if not width > 0:
            raise ValueError(f"width must be > 0, got {width}")
        if min(h, w) < 32:
            raise ValueError(f"input_size must be at least 32x32, got {input_size}")
        dropout = check_real("dropout", dropout)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        convs = [max(1, int(round(c * width))) for c in PAPER_CONV_WIDTHS]
        fc = (check_int("fc_width", fc_width, min=1) if fc_width is not None
              else max(1, int(round(PAPER_FC_WIDTH * width))))
        self.arch = {"num_classes": int(num_classes), "input_size": (h, w), "width": float(width),
                     "fc_width": fc, "batch_norm": bool(batch_norm), "dropout": float(dropout)}

        def conv(c_in, c_out, k, s):
            layers = [nn.Conv2d(c_in, c_out, k, stride=s, padding=k // 2, bias=not batch_norm)]
            if batch_norm:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.ReLU(inplace=False))
            return layers

        self.features = nn.Sequential(
            *conv(3, convs[0], 7, 2), nn.MaxPool2d(3, 2, 1),
            *conv(convs[0], convs[1], 5, 2), nn.MaxPool2d(3, 2, 1),
            *conv(convs[1], convs[2], 3, 1),
            *conv(convs[2], convs[3], 3, 1),
            *conv(convs[3], convs[4], 3, 1), nn.MaxPool2d(3, 2, 1),
        )
        sh, sw = h, w
        for k, s, p in ((7, 2, 3), (3, 2, 1), (5, 2, 2), (3, 2, 1), (3, 2, 1)):
            sh, sw = _out(sh, k, s, p), _out(sw, k, s, p)
        self.feature_shape = (convs[4], sh, sw)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(convs[4] * sh * sw, fc), nn.ReLU(inplace=False), nn.Dropout(dropout),
            nn.Linear(fc, fc), nn.ReLU(inplace=False), nn.Dropout(dropout),
            nn.Linear(fc, int(num_classes)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 3, H, W) normalised images of the configured size -> (N, num_classes) scores."""
        if x.dim() != 4 or tuple(x.shape[2:]) != self.arch["input_size"] or x.shape[1] != 3:
            raise ValueError(
                f"x must have shape (N, 3, {self.arch['input_size'][0]}, {self.arch['input_size'][1]}), "
                f"got {tuple(x.shape)}"
            )
        return self.classifier(self.features(x))
