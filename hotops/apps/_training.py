"""What every training pipeline shares: option checks, stopping on a signal, the log.

- :func:`check_positive`, :func:`check_count`: refuse non-finite, non-positive or
  non-integer option values with a ``ValueError`` that names the option.
- :func:`stop_requests`: for the duration of a training loop, SIGINT (Ctrl-C) and SIGTERM
  only *ask* the loop to stop; the loop finishes its step, saves its state and raises
  :class:`TrainingInterrupted`, so that ``--resume`` continues exactly where it stopped.
- Progress and results are logged on the ``hotops`` logger (``logging.getLogger(__name__)``
  in each pipeline, children of ``hotops``); the command line shows them, a library caller
  configures ``logging`` as it likes.
"""
from __future__ import annotations

import contextlib
import math
import signal
import threading

__all__ = ["TrainingInterrupted", "StopRequest", "stop_requests", "check_positive", "check_count"]


def check_positive(option: str, value, allow_none: bool = False) -> None:
    """``ValueError`` unless ``value`` is a finite number > 0 (or None when ``allow_none``)."""
    if value is None and allow_none:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    if not ok:
        raise ValueError(f"{option} must be > 0 and finite, got {value!r}")


def check_count(option: str, value, minimum: int = 1, allow_none: bool = False) -> None:
    """``ValueError`` unless ``value`` is an int >= ``minimum`` (or None when ``allow_none``)."""
    if value is None and allow_none:
        return
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{option} must be >= {minimum} (an integer), got {value!r}")


class TrainingInterrupted(KeyboardInterrupt):
    """A training loop stopped on SIGINT or SIGTERM after saving its state.

    Attributes: ``signum`` (the signal), ``state_path`` (where the state was saved, or None
    when the loop had nowhere to save it), ``step`` and ``total`` (steps done, and planned
    when known). A ``KeyboardInterrupt``, so that ``except Exception`` does not swallow it.
    """

    def __init__(self, signum: int, state_path=None, step: int | None = None, total: int | None = None):
        self.signum = int(signum)
        self.state_path = state_path
        self.step = step
        self.total = total
        try:
            name = signal.Signals(self.signum).name
        except ValueError:
            name = f"signal {self.signum}"
        self.signal_name = name
        msg = f"training stopped by {name}"
        if step is not None:
            msg += f" after step {step}" + (f" of {total}" if total is not None else "")
        msg += f"; its state is saved in {state_path}" if state_path is not None else "; no state was saved"
        super().__init__(msg)

    @property
    def exit_status(self) -> int:
        """The shell's convention for a process ended by the signal: 128 + its number."""
        return 128 + self.signum


class StopRequest:
    """Set by :func:`stop_requests`' handler: ``signum`` is None until a signal arrives."""

    def __init__(self):
        self.signum: int | None = None

    def __bool__(self) -> bool:
        return self.signum is not None


@contextlib.contextmanager
def stop_requests(signals=("SIGINT", "SIGTERM")):
    """Turn SIGINT / SIGTERM into a :class:`StopRequest` the loop polls between steps.

    The handlers are installed only for the duration of the block and only in the main
    thread (Python delivers signals there; elsewhere the request simply never fires), and
    the previous handlers are put back afterwards. A second Ctrl-C while a stop is pending
    raises ``KeyboardInterrupt`` at once, for a user who does not want to wait.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum, frame):
        if request.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        request.signum = signum

    previous = {}
    try:
        for name in signals:
            sig = getattr(signal, name, None)
            if sig is not None:
                previous[sig] = signal.signal(sig, handler)
        yield request
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
