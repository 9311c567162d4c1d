"""What every demo section gets: :class:`DemoContext`, and the small helpers they share."""
from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path
from typing import Callable

__all__ = ["Section", "DemoContext", "time_call", "md_table", "numba_threads"]


@dataclasses.dataclass
class Section:
    """One capability of the demo.

    name : short id (also the stem of its figure files)
    title : heading in the report
    run : ``run(ctx) -> markdown``; it calls ``ctx.step(...)`` ``steps`` times. Given as
        ``"module:function"`` (a module of this package), imported only when the section
        runs, so that one section's imports never slow or break another's.
    steps : how many progress-bar steps ``run`` reports
    """

    name: str
    title: str
    run: Callable[["DemoContext"], str]
    steps: int = 1


class DemoContext:
    """What a section gets: the output folder, the quick flag, shared helpers."""

    def __init__(self, out_dir: Path, quick: bool, bar):
        self.out_dir = out_dir
        self.quick = quick
        self._bar = bar
        self.figures: list[Path] = []
        self._cache: dict = {}

    def step(self, desc: str) -> None:
        """Advance the progress bar, showing what comes next."""
        if self._bar is not None:
            self._bar.set_postfix_str(desc, refresh=False)
            self._bar.update(1)

    def figure_path(self, name: str) -> Path:
        p = self.out_dir / name
        self.figures.append(p)
        return p

    def small_cifar(self):
        """The committed small CIFAR-10 net and its metadata (loaded once)."""
        if "small_cifar" not in self._cache:
            from hotops.models.small_cifar import load_small_cifar

            self._cache["small_cifar"] = load_small_cifar(pretrained=True)
        return self._cache["small_cifar"]


def time_call(fn, repeats: int, warmup: int = 2) -> dict:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` calls.

    Returns dict with ``first`` (the first call, which pays any JIT compile, cache load or
    allocator warm-up not already paid), ``median``, ``min`` and ``repeats``, in seconds.
    """
    t = time.perf_counter()
    fn()
    first = time.perf_counter() - t
    for _ in range(max(0, warmup - 1)):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return {"first": first, "median": statistics.median(times), "min": min(times), "repeats": repeats}


def md_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def numba_threads():
    """numba's thread count, or 'n/a' when numba cannot say."""
    try:
        import numba

        return numba.get_num_threads()
    except Exception:
        return "n/a"
