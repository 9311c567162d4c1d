"""The fused passes allocate no m x n, r x n or nnz-sized arrays per iteration (tracemalloc
sees numpy's, scipy's and Numba's allocations: only r x r Gram matrices, r-vectors and the
per-task r x CPU_COL_BLOCK denominator buffers remain)."""
from __future__ import annotations

import tracemalloc

import numpy as np
import scipy.sparse as sp

from hotops.kernels.nmf import EPSILON, Params, cpu


def _peak_of(fn) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_per_iteration_allocations_are_small():
    rng = np.random.default_rng(0)
    m, n, r = 600, 500, 4
    Xd = rng.poisson(1.0, (m, n)).astype(np.float64)
    Xs = sp.csr_matrix(Xd * (rng.random((m, n)) < 0.1))
    W0 = np.abs(rng.standard_normal((m, r))) + 0.1
    H0 = np.abs(rng.standard_normal((r, n))) + 0.1
    import numba

    from hotops.kernels.nmf import config

    # a Gram matrix, a few r-vectors, each task's r x block buffer, small fixed overheads
    limit = 8 * (r * r + 4 * r) + 8 * r * config.CPU_COL_BLOCK * numba.get_num_threads() + 4096
    for X, beta in ((Xd, 2.0), (Xd, 1.0), (Xs, 2.0), (Xs, 1.0)):
        prob = (cpu.SparseProblem(X, None, Params(beta, EPSILON), r) if sp.issparse(X)
                else cpu.DenseProblem(X, None, Params(beta, EPSILON), r))
        W, H = prob.start(W0.copy(), H0.copy())
        prob.update_W(W, H, 0.0, 0.0)  # compile / warm up
        prob.update_H(W, H, 0.0, 0.0)

        def three_iterations():
            for _ in range(3):
                prob.update_W(W, H, 0.0, 0.0)
                prob.update_H(W, H, 0.0, 0.0)

        peak = _peak_of(three_iterations)
        assert peak < limit, (type(prob).__name__, beta, peak)
        # and far below one m x n (dense) or nnz-sized (sparse) float64 array
        assert peak < 8 * (X.nnz if sp.issparse(X) else m * n) / 50


def test_fused_iterations_allocate_no_large_arrays():
    # DenseProblem.iterate (plain Frobenius): after its first call (which makes its buffers
    # and, in float32, the transposed copy of V once per fit) iterations allocate nothing
    # larger than the tasks' r x r Grams
    rng = np.random.default_rng(1)
    m, n, r = 600, 500, 4
    for dtype in (np.float64, np.float32):
        X = rng.poisson(1.0, (m, n)).astype(dtype)
        prob = cpu.DenseProblem(X, None, Params(2.0, EPSILON), r)
        W = (np.abs(rng.standard_normal((m, r))) + 0.1).astype(dtype)
        H = (np.abs(rng.standard_normal((r, n))) + 0.1).astype(dtype)
        prob.iterate(W, H, 1, 0.0, 0.0, 0.0, 0.0, remaining=10)
        peak = _peak_of(lambda: prob.iterate(W, H, 3, 0.0, 0.0, 0.0, 0.0, remaining=9))
        assert peak < 8 * (r * n + 4096), (dtype, peak)
