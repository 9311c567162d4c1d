"""VDSR: the very deep super-resolution network of Kim, Lee & Lee (CVPR 2016).

Kim, J., Lee, J. K. & Lee, K. M. "Accurate Image Super-Resolution Using Very Deep
Convolutional Networks", CVPR 2016. Sec. 3.1 (Fig. 2): d = 20 weight layers of 3x3
convolutions with 64 filters (the first takes the 1-channel luminance, the last gives 1
channel), zero padding so every feature map keeps the image size, ReLU after every layer but
the last, and residual learning: the network predicts r = y - x and outputs x + f(x) (Eq. 5).
Sec. 4.1: weights initialised as He et al. (2015) ("MSRA"), biases zero.

The input is the luminance (Y of MATLAB's ``rgb2ycbcr``, float in [0, 1]) already enlarged
to the target size by bicubic interpolation (``hotops.kernels.resize.imresize``).
The committed checkpoint is ``hotops/checkpoints/vdsr.pt``; see ``hotops.apps.sr`` for how it
was trained and measured.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..data import UnreadableFileError
from ._paths import checkpoint, load_checkpoint, plain, save_checkpoint

__all__ = ["VDSR", "CHECKPOINT"]

CHECKPOINT = checkpoint("vdsr.pt")


class VDSR(nn.Module):
    """Kim et al. (2016) VDSR, Sec. 3.1: ``depth`` 3x3 conv layers, residual output.

    Parameters
    ----------
    depth : int
        Number of weight layers (>= 2); the paper's d = 20.
    channels : int
        Filters per hidden layer (>= 1); the paper's 64.

    Notes
    -----
    ``forward(x)`` takes (N, 1, H, W) float and returns ``x + f(x)`` (Eq. 5); no clipping, so
    the training loss sees the raw residual. :meth:`upscale_y` is the inference entry point
    (tiles, clips to [0, 1], accepts numpy).
    """

    def __init__(self, depth: int = 20, channels: int = 64):
        super().__init__()
        if not isinstance(depth, int) or depth < 2:
            raise ValueError(f"depth must be an int >= 2, got {depth!r}")
        if not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be an int >= 1, got {channels!r}")
        self.depth = depth
        self.channels = channels
        layers: list[nn.Module] = [nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(channels, 1, 3, padding=1))
        self.body = nn.Sequential(*layers)
        self.metadata: dict = {}
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He et al. (2015) init, as Kim et al. Sec. 4.1: N(0, 2 / (9 * fan_in)), zero bias."""
        for m in self.body:
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.in_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
                nn.init.zeros_(m.bias)

    @property
    def convs(self) -> list[nn.Conv2d]:
        return [m for m in self.body if isinstance(m, nn.Conv2d)]

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"x must have shape (N, 1, H, W), got {tuple(x.shape)}")
        return x + self.body(x)

    # ------------------------------------------------------------------ inference

    @torch.no_grad()
    def upscale_y(self, y, tile: int = 256, overlap: int | None = None):
        """Restore a bicubic-enlarged luminance image.

        Parameters
        ----------
        y : numpy array or Tensor, float in [0, 1], shape (H, W) or (N, 1, H, W)
            The luminance already enlarged to the output size by bicubic interpolation.
        tile : int
            Tile side (pixels of output kept per tile); bounds memory for large images.
        overlap : int, optional
            Context added on each side of a tile; default the receptive radius (``depth``),
            which makes the tiled result equal to the untiled one.

        Returns
        -------
        Same type and shape as ``y`` (numpy keeps its float dtype), clipped to [0, 1].
        """
        if tile < 1:
            raise ValueError(f"tile must be >= 1, got {tile}")
        overlap = self.depth if overlap is None else int(overlap)
        if overlap < 0:
            raise ValueError(f"overlap must be >= 0, got {overlap}")
        is_numpy = isinstance(y, np.ndarray)
        if is_numpy:
            if y.dtype not in (np.float32, np.float64):
                raise TypeError(f"y must be float32 or float64 (values in [0, 1]), got {y.dtype}")
            t = torch.from_numpy(np.ascontiguousarray(y))
        elif isinstance(y, Tensor):
            if not y.dtype.is_floating_point:
                raise TypeError(f"y must be a floating tensor (values in [0, 1]), got {y.dtype}")
            t = y
        else:
            raise TypeError(f"y must be a numpy array or torch Tensor, got {type(y).__qualname__}")
        shape = tuple(t.shape)
        if t.dim() == 2:
            t = t[None, None]
        elif t.dim() != 4 or t.shape[1] != 1:
            raise ValueError(f"y must have shape (H, W) or (N, 1, H, W), got {shape}")
        if t.numel() == 0:
            raise ValueError(f"y must be non-empty, got shape {shape}")
        if not torch.isfinite(t).all():
            raise ValueError("y contains NaN or infinite values")
        p = next(self.parameters())
        was_training = self.training
        self.eval()
        try:
            x = t.to(device=p.device, dtype=p.dtype)
            out = torch.empty_like(x)
            _, _, h, w = x.shape
            for i0 in range(0, h, tile):
                for j0 in range(0, w, tile):
                    i1, j1 = min(i0 + tile, h), min(j0 + tile, w)
                    a0, b0 = max(i0 - overlap, 0), max(j0 - overlap, 0)
                    a1, b1 = min(i1 + overlap, h), min(j1 + overlap, w)
                    res = self(x[:, :, a0:a1, b0:b1])
                    out[:, :, i0:i1, j0:j1] = res[:, :, i0 - a0:i1 - a0, j0 - b0:j1 - b0]
            out.clamp_(0.0, 1.0)
        finally:
            self.train(was_training)
        out = out.reshape(shape)
        if is_numpy:
            return out.cpu().numpy().astype(y.dtype, copy=False)
        return out.to(device=y.device, dtype=y.dtype)

    # ------------------------------------------------------------------ checkpoints

    def save(self, path, metadata: dict | None = None, half: bool = True) -> Path:
        """Write ``{'state_dict', 'config', 'metadata'}``; float16 weights when ``half``.

        The metadata is stored as plain data (``hotops.models._paths.plain``: numbers,
        strings, lists, dicts), so that :meth:`load` reads the file with
        ``torch.load(weights_only=True)``; the file is replaced atomically.
        """
        sd = {k: (v.detach().half() if half and v.is_floating_point() else v.detach()).cpu().clone()
              for k, v in self.state_dict().items()}
        meta = plain(dict(self.metadata if metadata is None else metadata))
        return save_checkpoint({"state_dict": sd, "config": {"depth": self.depth, "channels": self.channels},
                                "metadata": meta, "format": "hotops-vdsr-1"}, path)

    @classmethod
    def load(cls, path, map_location="cpu") -> "VDSR":
        """Load a checkpoint written by :meth:`save` or by ``hotops train vdsr``.

        The file is read with ``torch.load(weights_only=True)``: tensors and plain data only,
        so a crafted file cannot run code. Raises ``FileNotFoundError`` when there is no file,
        ``ValueError`` (naming the file) when it is not a VDSR checkpoint or holds anything else.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"VDSR checkpoint not found: {path}")
        ckpt = load_checkpoint(path, "VDSR checkpoint", map_location=map_location)
        if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
            raise UnreadableFileError(f"{path} is not a hotops VDSR checkpoint (no 'state_dict')")
        cfg = ckpt.get("config", {})
        try:
            model = cls(depth=int(cfg.get("depth", 20)), channels=int(cfg.get("channels", 64)))
            model.load_state_dict({k: v.float() if v.is_floating_point() else v
                                   for k, v in ckpt["state_dict"].items()})
        except (RuntimeError, TypeError, ValueError, AttributeError) as exc:
            raise UnreadableFileError(f"{path} is not a hotops VDSR checkpoint ({str(exc).splitlines()[0]})") from None
        meta = ckpt.get("metadata", {})
        model.metadata = dict(meta) if isinstance(meta, dict) else {}
        model.eval()
        return model

    @classmethod
    def pretrained(cls, path=None) -> "VDSR":
        """The checkpoint trained by this project (``hotops/checkpoints/vdsr.pt``).

        Its ``metadata`` holds the scales, iterations, batch, wall time, hardware and the
        measured PSNR/SSIM table (Set5/Set14, x2/x3/x4, with the bicubic baseline).
        """
        path = CHECKPOINT if path is None else Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"the pretrained VDSR checkpoint is missing: {path}. Train one with "
                f"`hotops train vdsr --out {path}` (needs the train291 images)."
            )
        return cls.load(path)
