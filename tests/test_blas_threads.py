"""kernels._blas.single_threaded_blas: one BLAS thread inside, the caller's limits after."""
from __future__ import annotations

import pytest

threadpoolctl = pytest.importorskip("threadpoolctl")

from hotops.kernels._blas import single_threaded_blas  # noqa: E402


def _blas_threads():
    import scipy.linalg.cython_blas  # noqa: F401  (the BLAS Numba's np.dot calls)

    return sorted({info["num_threads"] for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"})


def test_limits_one_thread_and_restores():
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        assert before, "no BLAS library loaded"
        with single_threaded_blas():
            assert _blas_threads() == [1]
            with single_threaded_blas():  # nested: still one
                assert _blas_threads() == [1]
            assert _blas_threads() == [1]  # the inner holder restored the outer one's limit
        assert _blas_threads() == before


def test_disabled_is_a_no_op():
    before = _blas_threads()
    with single_threaded_blas(False):
        assert _blas_threads() == before


def test_restored_after_an_exception():
    before = _blas_threads()
    with pytest.raises(RuntimeError):
        with single_threaded_blas():
            raise RuntimeError("boom")
    assert _blas_threads() == before
