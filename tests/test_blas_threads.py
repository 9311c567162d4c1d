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


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gemm_blocks_transposes_and_accumulation(dtype):
    # kernels._blas.gemm: row-major C = alpha op(A) op(B) + beta C on sub-blocks given by an
    # element offset and a leading dimension (no copies), called from Numba code
    import numba
    import numpy as np

    from hotops.kernels._blas import gemm

    @numba.njit
    def call(ta, tb, M, N, K, alpha, A, ao, lda, B, bo, ldb, beta, C, co, ldc):
        return gemm(ta, tb, M, N, K, alpha, A, ao, lda, B, bo, ldb, beta, C, co, ldc)

    rng = np.random.default_rng(0)
    X = rng.random((9, 13)).astype(dtype)
    W = rng.random((9, 4)).astype(dtype)
    C = rng.random((4, 20)).astype(dtype)
    C0 = C.copy()
    # C[:, 3:10] = 2 W^T X[:, 5:12] + C[:, 3:10]
    assert call(True, False, 4, 7, 9, 2.0, W, 0, 4, X, 5, 13, 1.0, C, 3, 20) == 0
    want = C0.copy()
    want[:, 3:10] += 2 * W.T @ X[:, 5:12]
    tol = 1e-5 if dtype == "float32" else 1e-12
    assert np.allclose(C, want, rtol=tol, atol=tol)
    # A B^T with both operands rows 2:6 of one array (a Gram matrix of a row block)
    out = np.zeros((4, 4), dtype)
    call(False, True, 4, 4, 13, 1.0, X, 2 * 13, 13, X, 2 * 13, 13, 0.0, out, 0, 4)
    assert np.allclose(out, X[2:6] @ X[2:6].T, rtol=tol, atol=tol)
