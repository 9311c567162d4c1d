"""numba.cuda twins of the NMF kernels (run under NUMBA_ENABLE_CUDASIM=1 on tiny shapes),
against the same plain-numpy references as the CPU kernels."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import reference as ref
from _support import needs_cuda_kernels, needs_gpu
from hotops.kernels import nmf as K

pytestmark = [pytest.mark.cudasim, needs_cuda_kernels]


def _problem(rng, m=5, n=4, r=2, positive=False):
    V = rng.poisson(1.5, (m, n)).astype(np.float64) * (rng.random((m, n)) < 0.7)
    if positive:
        V += 0.25
    W = np.abs(rng.standard_normal((m, r))) + 0.1
    H = np.abs(rng.standard_normal((r, n))) + 0.1
    return V, W, H


def _rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.fixture(autouse=True)
def small_launches(monkeypatch):
    # several blocks even on tiny inputs, and a 2x2-tile fallback GEMM
    from hotops.kernels.nmf import config

    monkeypatch.setattr(config, "CUDA_THREADS", 8)
    monkeypatch.setattr(config, "CUDA_GEMM_TILE", 2)


@pytest.mark.parametrize("beta", [2.0, 1.0, 0.5])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_cuda_matches_reference(rng, beta, sparse):
    from numba import cuda

    from hotops.kernels.nmf.cuda import DeviceCSR

    V, W, H = _problem(rng, positive=beta < 1)
    Vd = DeviceCSR.from_scipy(sp.csr_matrix(V)) if sparse else cuda.to_device(V)
    Wd, Hd = cuda.to_device(W), cuda.to_device(H)
    n, Wd, Hd = K.multiplicative_update(Vd, Wd, Hd, beta_loss=beta, max_iter=3, tol=0,
                                        l1_reg_W=0.05, l2_reg_H=0.1)
    Wr, Hr = ref.nmf_mu(V, W, H, beta, 3, l1_W=0.05, l2_H=0.1)
    assert _rel(Wd.copy_to_host(), Wr) < 1e-10
    assert _rel(Hd.copy_to_host(), Hr) < 1e-10
    assert np.isclose(K.objective(Vd, Wd, Hd, beta_loss=beta), K.objective(V, Wr, Hr, beta_loss=beta),
                      rtol=1e-10)


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_cuda_masked(rng, sparse):
    from numba import cuda

    from hotops.kernels.nmf.cuda import DeviceCSR

    V, W, H = _problem(rng)
    M = (rng.random(V.shape) < 0.6).astype(np.float64)
    Vd = DeviceCSR.from_scipy(sp.csr_matrix(V)) if sparse else cuda.to_device(V)
    Md = sp.csr_matrix(M) if sparse else cuda.to_device(M)
    Wd, Hd = cuda.to_device(W), cuda.to_device(H)
    K.multiplicative_update(Vd, Wd, Hd, beta_loss=1, max_iter=2, tol=0, mask=Md)
    Wr, Hr = ref.nmf_mu(V, W, H, 1.0, 2, mask=M)
    assert _rel(Wd.copy_to_host(), Wr) < 1e-10
    assert _rel(Hd.copy_to_host(), Hr) < 1e-10


@pytest.mark.parametrize("beta", [2.0, 1.0])
def test_cuda_batched_matches_cpu(rng, beta):
    from numba import cuda

    nb, m, n, r = 3, 4, 3, 2
    V = rng.poisson(2.0, (nb, m, n)).astype(np.float64)
    W = np.abs(rng.standard_normal((nb, m, r))) + 0.1
    H = np.abs(rng.standard_normal((nb, r, n))) + 0.1
    Wc, Hc = W.copy(), H.copy()
    it_c, err_c = K.batched_multiplicative_update(V, Wc, Hc, beta_loss=beta, max_iter=20, tol=1e-2)
    Wd, Hd = cuda.to_device(W), cuda.to_device(H)
    it_d, err_d = K.batched_multiplicative_update(cuda.to_device(V), Wd, Hd, beta_loss=beta,
                                                  max_iter=20, tol=1e-2)
    assert np.array_equal(it_c, it_d)
    assert _rel(Wd.copy_to_host(), Wc) < 1e-10 and _rel(Hd.copy_to_host(), Hc) < 1e-10
    assert np.allclose(err_c, err_d, rtol=1e-10)


def test_cuda_bad_input(rng):
    from numba import cuda

    V, W, H = _problem(rng)
    V[1, 1] = -3.0
    with pytest.raises(ValueError, match=r"1 negative entry, the first at V\[1, 1\]"):
        K.multiplicative_update(cuda.to_device(V), cuda.to_device(W), cuda.to_device(H))
    with pytest.raises(TypeError, match="different devices"):
        K.multiplicative_update(np.abs(V), cuda.to_device(W), cuda.to_device(H))


@needs_gpu
def test_cupy_estimator_stays_on_gpu(rng):
    cp = pytest.importorskip("cupy")
    import hotops

    V, W, H = _problem(rng, 40, 30, 4)
    Xd = cp.asarray(V)
    est = hotops.NMF(4, init="custom", max_iter=50, tol=0)
    Wd = est.fit_transform(Xd, W=cp.asarray(W), H=cp.asarray(H))
    assert isinstance(Wd, cp.ndarray) and isinstance(est.components_, cp.ndarray)
    Wr, Hr = ref.nmf_mu(V, W, H, 2.0, 50)
    assert _rel(cp.asnumpy(Wd), Wr) < 1e-8
