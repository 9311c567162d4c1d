"""NMF by multiplicative updates (Lee & Seung 2001): hotops vs the libraries people use.

Groups (one question each, same inputs and same initial W, H for every row; ``tol=0`` so
that every row runs exactly the stated number of iterations; each timed call is a whole
``fit`` including input validation, the objective at the start and at the end):

* ``nmf sparse-KL 20000x10000 nnz1M r32 float64 x3it cpu``: Poisson counts, 1M non-zeros.
  Rows ``hotops`` (``hotops.NMF``), *``sklearn``* (``NMF(solver='mu', init='custom')``).
  ``extra_info["peak_MiB"]``: peak of the allocations during one 3-iteration fit, by
  ``tracemalloc`` (it sees numpy's, scipy's and Numba's allocations; the input matrix,
  made before, is not counted).
* ``nmf dense-Frobenius 2000x1500 r32 {float32,float64} x10it cpu``: rows ``hotops`` (whole
  fit), ``hotops_iterations`` (the 10 iterations alone, as the fit runs them: one fused
  ``DenseProblem.iterate`` call, including the transposed copy of V that float32 makes for
  them; no validation and no objective), *``sklearn``*, and *``gemms``*: the two GEMMs of each iteration (V H^T and
  W^T V), 10 times: the yardstick for "time per iteration at most 1.05x its two GEMMs"
  (compare ``hotops_iterations`` with ``gemms``).
* ``nmf dense-KL 2000x1500 r32 float64 x5it cpu``: ``hotops``, *``sklearn``*,
  *``torchnmf``* (``torchnmf.nmf.NMF.fit(V, beta=1)``, which factors V^T: its W is our H^T).
* ``nmf batched 50-of-2000 x 64x64 r8 200it float64 cpu``: the batched case timed on a
  50-problem sample of the 2000 problems (a Python loop over scikit-learn for all 2000
  takes minutes): ``hotops`` (``hotops.batched_nmf`` on the 50) vs *``sklearn_loop``*
  (a loop of ``NMF(solver='mu').fit`` over the same 50). Both costs are linear in the
  number of problems, so the ratio is the 2000-problem ratio; the next group times hotops on
  all 2000 (one round, to keep the suite short).
* ``nmf batched 2000x64x64 r8 200it float64 cpu``: ``hotops`` alone, 1 round.
* CUDA (skip without a GPU and CuPy): ``nmf dense-Frobenius 8192x8192 r64 float32 x10it
  cuda`` (``hotops`` on CuPy vs *``gemms``*: ``torch.mm`` V H^T and W^T V), and ``nmf
  sparse-KL 20000x10000 nnz1M r32 float32 x10it cuda`` (``hotops`` on cupyx CSR vs
  *``torchnmf``* on a CUDA COO tensor).

No speed assertions: hotops/bench/report.py prints the ratios. Per-iteration time = median / the
iteration count in the group name (also in ``extra_info["iterations"]``).
"""
from __future__ import annotations

import functools
import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch

OP = "nmf"


def _quiet(fn):
    @functools.wraps(fn)
    def run(*a, **k):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(*a, **k)

    return run


@functools.lru_cache(maxsize=None)
def _sparse_counts(m=20000, n=10000, nnz=1_000_000, seed=0):
    rng = np.random.default_rng(seed)
    X = sp.random(m, n, density=nnz / (m * n), format="csr", random_state=seed,
                  data_rvs=lambda k: rng.poisson(3.0, k) + 1.0)
    return X


@functools.lru_cache(maxsize=None)
def _factors(m, n, r, dtype=np.float64, seed=1, scale=0.3):
    rng = np.random.default_rng(seed)
    W = (np.abs(rng.standard_normal((m, r))) * scale + 0.01).astype(dtype)
    H = (np.abs(rng.standard_normal((r, n))) * scale + 0.01).astype(dtype)
    return W, H


@functools.lru_cache(maxsize=None)
def _dense(m, n, dtype=np.float64, seed=2):
    rng = np.random.default_rng(seed)
    return rng.poisson(2.0, (m, n)).astype(dtype)


def _hotops_fit(X, W0, H0, beta, iters):
    import hotops

    est = hotops.NMF(W0.shape[1], init="custom", beta_loss=beta, max_iter=iters, tol=0)
    return est.fit_transform(X, W=W0, H=H0)


def _sklearn_fit(X, W0, H0, beta, iters):
    from sklearn.decomposition import NMF

    est = NMF(W0.shape[1], init="custom", solver="mu", beta_loss=beta, max_iter=iters, tol=0)
    return est.fit_transform(X, W=W0.copy(), H=H0.copy())


def _peak_mib(fn, *args) -> float:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        fn(*args)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


# --- sparse KL ------------------------------------------------------------------------------

SPARSE_ITERS = 3


@pytest.mark.parametrize("impl", ["hotops", "sklearn"])
def test_nmf_sparse_kl(bench, impl):
    X = _sparse_counts()
    W0, H0 = _factors(X.shape[0], X.shape[1], 32)
    fn = _quiet(_hotops_fit if impl == "hotops" else _sklearn_fit)
    fn(X, W0, H0, "kullback-leibler", 1)  # compile / load kernels: not part of the peak
    peak = _peak_mib(fn, X, W0, H0, "kullback-leibler", SPARSE_ITERS)
    bench(fn, X, W0, H0, "kullback-leibler", SPARSE_ITERS, op=OP, impl=impl,
          baseline=impl != "hotops", group=f"{OP} sparse-KL 20000x10000 nnz1M r32 float64 x{SPARSE_ITERS}it cpu",
          iterations=SPARSE_ITERS, peak_MiB=round(peak, 1), nnz=int(X.nnz), dtype="float64")


# --- dense Frobenius --------------------------------------------------------------------------

FROB_ITERS = 10


def _two_gemms(X, W, H, iters):
    for _ in range(iters):
        X @ H.T
        W.T @ X


def _hotops_iterations(X, W0, H0, iters):
    """The iterations alone (no validation, no objective): hotops' per-iteration cost."""
    from hotops.kernels.nmf import EPSILON, Params, cpu

    prob = cpu.DenseProblem(X, None, Params(2.0, EPSILON), W0.shape[1])
    W, H = W0.copy(), H0.copy()
    with cpu.threads_for(prob, W.shape[1]):
        # as the fit runs them (kernels.nmf.run_loop with tol=0): all in one fused call,
        # including the transposed copy of V that float32 makes for them
        prob.iterate(W, H, iters, 0.0, 0.0, 0.0, 0.0, remaining=iters)
    return W


@pytest.mark.parametrize("impl", ["hotops", "hotops_iterations", "sklearn", "gemms"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_nmf_dense_frobenius(bench, impl, dtype):
    X = _dense(2000, 1500, dtype)
    W0, H0 = _factors(2000, 1500, 32, dtype)
    name = np.dtype(dtype).name
    group = f"{OP} dense-Frobenius 2000x1500 r32 {name} x{FROB_ITERS}it cpu"
    common = dict(op=OP, impl=impl, baseline=impl != "hotops", group=group, iterations=FROB_ITERS, dtype=name)
    if impl == "gemms":
        bench(_two_gemms, X, W0, H0, FROB_ITERS, **common)
    elif impl == "hotops_iterations":
        bench(_hotops_iterations, X, W0, H0, FROB_ITERS, **common)
    else:
        fn = _quiet(_hotops_fit if impl == "hotops" else _sklearn_fit)
        bench(fn, X, W0, H0, "frobenius", FROB_ITERS, **common)


# --- dense KL ---------------------------------------------------------------------------------

KL_ITERS = 5


def _torchnmf_fit(V_t, W0, H0, iters):
    from torchnmf.nmf import NMF

    # torchnmf factors V ~ H W^T with H (m, r) and W (n, r): our W is its H, our H^T its W
    model = NMF(W=torch.tensor(H0.T.copy()), H=torch.tensor(W0.copy()))
    model.fit(V_t, beta=1, tol=0, max_iter=iters)
    return model


@pytest.mark.parametrize("impl", ["hotops", "sklearn", "torchnmf"])
def test_nmf_dense_kl(bench, impl):
    X = _dense(2000, 1500)
    W0, H0 = _factors(2000, 1500, 32)
    common = dict(op=OP, impl=impl, baseline=impl != "hotops",
                  group=f"{OP} dense-KL 2000x1500 r32 float64 x{KL_ITERS}it cpu", iterations=KL_ITERS,
                  dtype="float64")
    if impl == "torchnmf":
        pytest.importorskip("torchnmf")
        bench(_quiet(_torchnmf_fit), torch.from_numpy(X), W0, H0, KL_ITERS, **common)
    else:
        fn = _quiet(_hotops_fit if impl == "hotops" else _sklearn_fit)
        bench(fn, X, W0, H0, "kullback-leibler", KL_ITERS, **common)


# --- batched ----------------------------------------------------------------------------------

N_PROBLEMS, SAMPLE, BATCH_ITERS = 2000, 50, 200


@functools.lru_cache(maxsize=None)
def _batch():
    rng = np.random.default_rng(3)
    V = rng.poisson(2.0, (N_PROBLEMS, 64, 64)).astype(np.float64)
    W0 = np.abs(rng.standard_normal((N_PROBLEMS, 64, 8))) * 0.3 + 0.01
    H0 = np.abs(rng.standard_normal((N_PROBLEMS, 8, 64))) * 0.3 + 0.01
    return V, W0, H0


def _hotops_batched(V, W0, H0):
    import hotops

    return hotops.batched_nmf(V, 8, init="custom", W=W0, H=H0, max_iter=BATCH_ITERS, tol=0)


def _sklearn_loop(V, W0, H0):
    from sklearn.decomposition import NMF

    out = []
    for b in range(V.shape[0]):
        est = NMF(8, init="custom", solver="mu", max_iter=BATCH_ITERS, tol=0)
        out.append(est.fit_transform(V[b], W=W0[b].copy(), H=H0[b].copy()))
    return out


@pytest.mark.parametrize("impl", ["hotops", "sklearn_loop"])
def test_nmf_batched_sample(bench, impl):
    V, W0, H0 = (a[:SAMPLE] for a in _batch())
    fn = _quiet(_hotops_batched if impl == "hotops" else _sklearn_loop)
    bench(fn, V, W0, H0, op=OP, impl=impl, baseline=impl != "hotops",
          group=f"{OP} batched {SAMPLE}-of-{N_PROBLEMS} x 64x64 r8 {BATCH_ITERS}it float64 cpu",
          problems=SAMPLE, iterations=BATCH_ITERS, dtype="float64")


def test_nmf_batched_2000(benchmark):
    V, W0, H0 = _batch()
    fn = _quiet(_hotops_batched)
    fn(V[:4], W0[:4], H0[:4])  # compile / load the kernel outside the timing
    benchmark.group = f"{OP} batched {N_PROBLEMS}x64x64 r8 {BATCH_ITERS}it float64 cpu"
    benchmark.extra_info.update(op=OP, impl="hotops", baseline=False, problems=N_PROBLEMS,
                                iterations=BATCH_ITERS, dtype="float64", rounds_note="1 round")
    benchmark.pedantic(fn, args=(V, W0, H0), rounds=1, iterations=1, warmup_rounds=0)


# --- CUDA -------------------------------------------------------------------------------------

def _cupy_or_skip():
    if not torch.cuda.is_available():
        pytest.skip("CUDA variant: torch.cuda.is_available() is false on this machine")
    return pytest.importorskip("cupy", reason="hotops on CUDA needs CuPy (pip install hotops[cuda12])")


@pytest.mark.parametrize("impl", ["hotops", "gemms"])
def test_nmf_dense_frobenius_cuda(bench, impl):
    cp = _cupy_or_skip()
    m = n = 8192
    r = 64
    rng = np.random.default_rng(4)
    X = cp.asarray(rng.random((m, n), dtype=np.float32))
    W0, H0 = (cp.asarray(a) for a in _factors(m, n, r, np.float32))
    group = f"{OP} dense-Frobenius 8192x8192 r64 float32 x{FROB_ITERS}it cuda"
    common = dict(op=OP, impl=impl, baseline=impl != "hotops", group=group, device="cuda",
                  iterations=FROB_ITERS, dtype="float32")
    if impl == "gemms":
        Xt, Wt, Ht = (torch.from_dlpack(a) for a in (X, W0, H0))
        bench(_two_gemms, Xt, Wt, Ht, FROB_ITERS, **common)
    else:
        bench(_quiet(_hotops_fit), X, W0, H0, "frobenius", FROB_ITERS, **common)


@pytest.mark.parametrize("impl", ["hotops", "torchnmf"])
def test_nmf_sparse_kl_cuda(bench, impl):
    cp = _cupy_or_skip()
    import cupyx.scipy.sparse as csp

    X = _sparse_counts().astype(np.float32)
    W0, H0 = _factors(X.shape[0], X.shape[1], 32, np.float32)
    iters = 10
    common = dict(op=OP, impl=impl, baseline=impl != "hotops", device="cuda", iterations=iters,
                  group=f"{OP} sparse-KL 20000x10000 nnz1M r32 float32 x{iters}it cuda", dtype="float32")
    if impl == "hotops":
        Xd = csp.csr_matrix(X)
        bench(_quiet(_hotops_fit), Xd, cp.asarray(W0), cp.asarray(H0), "kullback-leibler", iters, **common)
    else:
        pytest.importorskip("torchnmf")
        coo = X.tocoo()
        Vt = torch.sparse_coo_tensor(np.vstack([coo.row, coo.col]), coo.data, X.shape, device="cuda").coalesce()

        def run():
            from torchnmf.nmf import NMF

            model = NMF(W=torch.tensor(H0.T.copy(), device="cuda"), H=torch.tensor(W0, device="cuda"))
            model.fit(Vt, beta=1, tol=0, max_iter=iters)
            return model

        bench(_quiet(run), **common)
