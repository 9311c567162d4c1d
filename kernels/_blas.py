"""One BLAS thread while Numba's own threads call BLAS from inside their tasks.

Several CPU kernels (NMF's dense updates, the fused small-image DCT/FFT of
``hotops.sparse_project`` and IHT) call ``np.dot`` from inside a Numba ``prange`` task, one
small product per task. Numba compiles those calls to scipy's cython BLAS, i.e. the same
OpenBLAS that numpy and scipy load, whose own thread pool would then start threads from
every task: on a 2-core machine OpenBLAS' spin-waiting workers and Numba's workers take the
cores from each other (measured here: IHT on 1024 MNIST-sized images, 10 iterations,
204 -> 146 ms with one BLAS thread). :func:`single_threaded_blas` limits the BLAS libraries to one thread for the
duration of such a call and restores the previous limits afterwards.

The limit is process-wide (BLAS has no per-thread setting): while it is held, BLAS calls
made by other Python threads also run on one thread. Each holder restores the limits it
found when it leaves (nesting on one thread is safe). Across Python threads, threadpoolctl
lets only one thread (the first that changed a limit) control OpenBLAS' process-wide pool;
in the others this context changes nothing, so concurrent callers can never leave BLAS
stuck at one thread, they only lose the speed-up. Without threadpoolctl (a dependency of
scikit-learn, itself a dependency of hotops) the context does nothing.
"""
from __future__ import annotations

import contextlib

__all__ = ["single_threaded_blas"]

_CONTROLLER = []


def _controller():
    # threadpoolctl only sees libraries that are loaded: load scipy's cython BLAS (the one
    # Numba's np.dot calls) before the scan. Made once; None when threadpoolctl is missing
    # or the scan fails.
    if not _CONTROLLER:
        try:
            import scipy.linalg.cython_blas  # noqa: F401
            from threadpoolctl import ThreadpoolController

            _CONTROLLER.append(ThreadpoolController().select(user_api="blas"))
        except Exception:  # pragma: no cover - threadpoolctl missing or failing
            _CONTROLLER.append(None)
    return _CONTROLLER[0]


@contextlib.contextmanager
def single_threaded_blas(enabled: bool = True):
    """Context manager: BLAS libraries limited to one thread inside, restored on exit.

    Parameters
    ----------
    enabled : bool
        ``False`` makes the context a no-op (for call sites that decide at run time).
    """
    ctl = _controller() if enabled else None
    if ctl is None:
        yield
        return
    limiter = ctl.limit(limits=1)
    try:
        yield
    finally:
        limiter.restore_original_limits()
