"""Learning-rate schedules of the training pipelines, as functions of training progress.

Both pipelines can size their run by a time budget (VDSR probes a few steps and then fixes
the total; RevNet can measure progress in seconds), so a schedule is a function of the
fraction of training done. :func:`lr_at` is that arithmetic; :func:`progress_scheduler`
puts it under ``torch.optim.lr_scheduler.LambdaLR`` as the multiplier of the base rate,
with the fraction computed from the scheduler's step count (or from the clock) by the
pipeline. Resuming rebuilds the scheduler at the saved step (``last_step``) on top of the
restored optimizer, whose parameter groups keep the base rate (``initial_lr``): the rate
of the next step is then the one the uninterrupted run would have used.
"""
from __future__ import annotations

import math

__all__ = ["SCHEDULES", "lr_at", "lr_factor", "progress_scheduler"]

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


def lr_factor(progress: float, schedule: str = "step", milestones=(0.25, 0.5, 0.75)) -> float:
    """The multiplier of the base rate at ``progress``: ``lr_at(1.0, progress, ...)``."""
    return lr_at(1.0, progress, schedule, milestones)


def progress_scheduler(optimizer, progress, schedule: str = "step", milestones=(0.25, 0.5, 0.75),
                       last_step: int = 0):
    """A ``torch.optim.lr_scheduler.LambdaLR`` following :func:`lr_at`.

    Parameters
    ----------
    optimizer : torch optimizer; its current ``lr`` is the base rate of a new run
    progress : callable step -> fraction of training done before that step (0 at the start)
    schedule, milestones : as :func:`lr_at`
    last_step : the number of steps already taken: 0 for a new run; a resumed run passes the
        saved step after loading the optimizer's state, whose groups hold ``initial_lr``

    The optimizer's rate is set at once to the one of step ``last_step``; call ``step()``
    after every ``optimizer.step()``.
    """
    import torch

    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    milestones = tuple(milestones)

    def factor(step: int) -> float:
        return lr_factor(progress(step), schedule, milestones)

    if last_step > 0:
        for g in optimizer.param_groups:
            g.setdefault("initial_lr", g["lr"])
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor, last_epoch=last_step - 1)
