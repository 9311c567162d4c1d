"""A small MNIST CNN, and the two committed checkpoints of the sparse-Fourier defence.

Bafna, Murtagh & Vyas (NeurIPS 2018) classify the IHT reconstruction of an attacked image
with a network trained on top-k DCT projections. ``hotops train defense`` trains two
copies of :class:`MnistCNN`: ``normal`` on the raw images and ``topk`` on their top-k DCT
projections H_k (``hotops.sparse_project``); :func:`load_defense_model` loads them from
``hotops/checkpoints/defense_{normal,topk}.pt`` (float16 weights, ~0.23 MB each), together
with the k they were trained for and their measured accuracies.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..data import UnreadableFileError
from ._paths import CHECKPOINT_DIR, load_checkpoint

__all__ = ["MnistCNN", "load_defense_model", "CHECKPOINT_DIR", "defense_checkpoint"]

_KINDS = ("normal", "topk")


class MnistCNN(nn.Module):
    """conv5x5(1->c1) - ReLU - maxpool2 - conv5x5(c1->c2) - ReLU - maxpool2 - fc(hidden) - ReLU - fc(10).

    Inputs are (N, 1, 28, 28) images with pixel values in [0, 1]; outputs are logits.
    With the defaults (c1=16, c2=32, hidden=64): 114,314 parameters (0.23 MB as float16).
    """

    def __init__(self, c1: int = 16, c2: int = 32, hidden: int = 64, num_classes: int = 10):
        super().__init__()
        self.arch = {"c1": int(c1), "c2": int(c2), "hidden": int(hidden), "num_classes": int(num_classes)}
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(c2 * 7 * 7, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise ValueError(f"x must have shape (N, 1, 28, 28) or (N, 28, 28), got {tuple(x.shape)}")
        return self.head(self.features(x))


def defense_checkpoint(kind: str) -> Path:
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    return CHECKPOINT_DIR / f"defense_{kind}.pt"


def load_defense_model(kind: str = "topk", path=None) -> tuple[MnistCNN, dict]:
    """The committed (or a given) checkpoint as an eval-mode float32 model, and its metadata.

    Parameters
    ----------
    kind : {'normal', 'topk'}
        The normally trained model, or the one trained on top-k DCT projections.
    path : path, optional
        Another checkpoint written by ``hotops train defense``.

    Returns
    -------
    model, meta : meta holds ``k`` (top-k model: coefficients it was trained on), the
    training settings and the measured test accuracy.

    The file is read with ``torch.load(weights_only=True)`` (tensors and plain data only):
    ``ValueError`` naming the file when it holds anything else or is not a defence checkpoint.
    """
    p = Path(path) if path is not None else defense_checkpoint(kind)
    if not p.exists():
        raise FileNotFoundError(f"no defence checkpoint at {p} (train one with `hotops train defense`)")
    ckpt = load_checkpoint(p, "defence checkpoint")
    try:
        model = MnistCNN(**ckpt["arch"])
        model.load_state_dict({k: v.float() for k, v in ckpt["state_dict"].items()})
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        raise UnreadableFileError(f"{p} is not a defence checkpoint ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    model.eval()
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    return model, meta
