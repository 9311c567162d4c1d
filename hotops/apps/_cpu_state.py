"""Process-wide CPU state that training changes for speed and must give back."""
from __future__ import annotations

import contextlib


@contextlib.contextmanager
def flushing_denormals():
    """Flush denormal floats to zero inside the block, then restore the caller's setting.

    Denormals appear in the small gradients late in training and make x86 CPUs several
    times slower; flushing them changes nothing measurable in accuracy. The setting is
    process-wide: left on, it would change every later float computation of the caller.
    """
    import torch

    tiny = torch.tensor([2.0 ** -130], dtype=torch.float32)
    was_flushing = bool((tiny * 1.0)[0] == 0)
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(was_flushing)
