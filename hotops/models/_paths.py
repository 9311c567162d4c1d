"""Where the committed checkpoints live (importing this does not import torch)."""
from __future__ import annotations

from pathlib import Path

#: ``hotops/checkpoints``: the float16 checkpoints this project trained and ships.
CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints"


def checkpoint(name: str) -> Path:
    """Path of the committed checkpoint ``name`` (e.g. ``"vdsr.pt"``)."""
    return CHECKPOINT_DIR / name
