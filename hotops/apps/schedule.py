"""Learning-rate schedules of the training pipelines, as functions of training progress.

Both pipelines can size their run by a time budget (VDSR probes a few steps and then fixes
the total; RevNet can measure progress in seconds), so a schedule is a function of the
fraction of training done, recomputed at every step. That keeps resuming exact without a
scheduler state to save: the rate follows from the step (or the time) alone.
"""
from __future__ import annotations

import math

__all__ = ["SCHEDULES", "lr_at"]

SCHEDULES = ("step", "cosine")


def lr_at(base_lr: float, progress: float, schedule: str = "step", milestones=(0.25, 0.5, 0.75)) -> float:
    """The learning rate once ``progress`` (0 at the start, 1 at the end) of training is done.

    'step': ``base_lr`` divided by 10 at each of ``milestones`` (fractions of the run) that
    ``progress`` has reached. VDSR (Kim et al. 2016, Sec. 4.1): every 20 of 80 epochs, i.e.
    milestones (0.25, 0.5, 0.75); RevNet (revnet-public's CIFAR schedule): 40k and 60k of 80k
    steps, i.e. (0.5, 0.75).
    'cosine': ``base_lr * (1 + cos(pi * progress)) / 2`` (Loshchilov & Hutter, ICLR 2017,
    without restarts), which keeps a useful rate for most of a short run.
    """
    if schedule == "step":
        return base_lr * 0.1 ** sum(progress >= m for m in milestones)
    if schedule == "cosine":
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
