"""hotops.kernels.nmf (CPU Numba kernels) against tests/reference.py's plain numpy MU."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import reference as ref
from hotops.kernels import nmf as K

BETAS = [2.0, 1.0, 0.0, 0.5, 1.5, 3.0]
TOL = {np.float64: 1e-10, np.float32: 2e-3}


def _problem(rng, m, n, r, dtype=np.float64, density=0.6, positive=False):
    V = rng.poisson(1.5, (m, n)).astype(np.float64) * (rng.random((m, n)) < density)
    if positive:
        V = V + 0.25
    W = np.abs(rng.standard_normal((m, r))) + 0.1
    H = np.abs(rng.standard_normal((r, n))) + 0.1
    return V.astype(dtype), W.astype(dtype), H.astype(dtype)


def _rel(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / max(np.abs(b).max(), 1e-300))


@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
def test_matches_reference(rng, beta, sparse, masked):
    # awkward shapes: odd sizes, r not a power of two
    V, W, H = _problem(rng, 23, 17, 3, positive=beta <= 0)
    M = (rng.random(V.shape) < 0.7) * rng.uniform(0.5, 2.0, V.shape) if masked else None
    l1W, l1H, l2W, l2H = 0.05, 0.02, 0.1, 0.03
    Vk = sp.csr_matrix(V) if sparse else V
    Mk = sp.csr_matrix(M) if (sparse and masked) else M
    Wk, Hk = W.copy(), H.copy()
    n, Wk, Hk = K.multiplicative_update(Vk, Wk, Hk, beta_loss=beta, max_iter=7, tol=0,
                                        l1_reg_W=l1W, l1_reg_H=l1H, l2_reg_W=l2W, l2_reg_H=l2H,
                                        mask=Mk)
    assert n == 7
    Wr, Hr = ref.nmf_mu(V, W, H, beta, 7, l1W, l1H, l2W, l2H, mask=M)
    assert _rel(Wk, Wr) < 1e-10
    assert _rel(Hk, Hr) < 1e-10


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("beta", [2.0, 1.0])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_dtypes(rng, dtype, beta, sparse):
    V, W, H = _problem(rng, 31, 12, 4, dtype=dtype)
    Vk = sp.csr_matrix(V) if sparse else V
    Wk, Hk = W.copy(), H.copy()
    K.multiplicative_update(Vk, Wk, Hk, beta_loss=beta, max_iter=5, tol=0)
    assert Wk.dtype == dtype and Hk.dtype == dtype
    Wr, Hr = ref.nmf_mu(V, W, H, beta, 5)
    assert _rel(Wk, Wr) < TOL[dtype]
    assert _rel(Hk, Hr) < TOL[dtype]


def test_multi_task_paths(rng, monkeypatch):
    # shrink the launch settings so that every parallel pass runs several tasks
    from hotops.kernels.nmf import config

    monkeypatch.setattr(config, "CPU_ROW_CHUNK", 2)
    monkeypatch.setattr(config, "CPU_COL_BLOCK", 3)
    monkeypatch.setattr(config, "DENSE_BLOCK_BYTES", 64)
    for beta in (2.0, 1.0, 1.5):
        for sparse in (False, True):
            V, W, H = _problem(rng, 13, 11, 2)
            Wk, Hk = W.copy(), H.copy()
            K.multiplicative_update(sp.csr_matrix(V) if sparse else V, Wk, Hk, beta_loss=beta,
                                    max_iter=4, tol=0)
            Wr, Hr = ref.nmf_mu(V, W, H, beta, 4)
            assert _rel(Wk, Wr) < 1e-10 and _rel(Hk, Hr) < 1e-10
            assert np.isclose(K.objective(sp.csr_matrix(V) if sparse else V, Wk, Hk, beta_loss=beta),
                              K.objective(V, Wk, Hk, beta_loss=beta), rtol=1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("transposed", [False, True], ids=["V", "VT"])
def test_fused_frobenius_iterations(rng, monkeypatch, dtype, transposed):
    # DenseProblem.iterate (whole Frobenius iterations in one call, Gram matrices handed from
    # one update to the other, W^T V from V^T or from column blocks of V) against the plain
    # numpy reference, on shapes where tasks get one row / no columns / several blocks, with
    # penalties, in several calls (H^T and the Grams rebuilt at each call)
    from hotops.kernels.nmf import EPSILON, Params, config, cpu

    monkeypatch.setattr(config, "DENSE_VT_MAX_BYTES", (1 << 30) if transposed else 0)
    monkeypatch.setattr(config, "DENSE_VT_MIN_ITER", 1)
    for m, n, r in ((23, 17, 3), (1, 40, 2), (40, 1, 2), (3, 70, 5), (90, 35, 1)):
        V, W, H = _problem(rng, m, n, r, dtype=dtype)
        prob = cpu.DenseProblem(V, None, Params(2.0, EPSILON), r)
        Wk, Hk = W.copy(), H.copy()
        with cpu.threads_for(prob, r):
            prob.iterate(Wk, Hk, 4, 0.05, 0.1, 0.02, 0.03, remaining=7)
            prob.iterate(Wk, Hk, 3, 0.05, 0.1, 0.02, 0.03, remaining=3)
        assert (prob.XT is not None) == (transposed and dtype == np.float32)
        Wr, Hr = ref.nmf_mu(V.astype(np.float64), W.astype(np.float64), H.astype(np.float64), 2.0, 7,
                            0.05, 0.02, 0.1, 0.03)
        tol = TOL[dtype] if dtype == np.float32 else 1e-10
        assert _rel(Wk, Wr) < tol and _rel(Hk, Hr) < tol, (m, n, r)


@pytest.mark.parametrize("beta", [2.0, 1.0, 0.5, 3.0])
def test_objective_matches_divergence(rng, beta):
    V, W, H = _problem(rng, 9, 14, 3, positive=True)
    want = np.sqrt(2 * ref.nmf_divergence(V, W, H, beta))
    assert np.isclose(K.objective(V, W, H, beta_loss=beta), want, rtol=1e-9)
    assert np.isclose(K.objective(sp.csr_matrix(V), W, H, beta_loss=beta), want, rtol=1e-9)
    M = rng.random(V.shape)
    want_m = np.sqrt(2 * ref.nmf_divergence(V, W, H, beta, mask=M))
    assert np.isclose(K.objective(V, W, H, beta_loss=beta, mask=M), want_m, rtol=1e-9)


def test_size_one_and_zero_rows(rng):
    V, W, H = _problem(rng, 1, 1, 1)
    V[:] = 2.0
    K.multiplicative_update(V, W, H, beta_loss=1, max_iter=50, tol=0)
    assert np.isclose((W @ H)[0, 0], 2.0, rtol=1e-6)
    V, W, H = _problem(rng, 8, 6, 2)
    V[3] = 0
    V[:, 2] = 0
    for sparse in (False, True):
        Wk, Hk = W.copy(), H.copy()
        K.multiplicative_update(sp.csr_matrix(V) if sparse else V, Wk, Hk, beta_loss=1, max_iter=20, tol=0)
        assert np.isfinite(Wk).all() and np.isfinite(Hk).all()
        assert (Wk >= 0).all() and (Hk >= 0).all()


def test_bad_input_messages(rng):
    V, W, H = _problem(rng, 5, 4, 2)
    V2 = V.copy()
    V2[1, 2] = -1.0
    V2[3, 0] = -2.0
    with pytest.raises(ValueError, match=r"2 negative entries, the first at V\[1, 2\] = -1.0"):
        K.multiplicative_update(V2, W.copy(), H.copy())
    V3 = V.copy()
    V3[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf: 1 non-finite entry, the first at V\[2, 1\]"):
        K.multiplicative_update(V3, W.copy(), H.copy())
    with pytest.raises(ValueError, match=r"the first at V\[1, 2\]"):
        K.multiplicative_update(sp.csc_matrix(V2), W.copy(), H.copy())
    with pytest.raises(ValueError, match="mask must have V's shape"):
        K.multiplicative_update(V, W.copy(), H.copy(), mask=np.ones((4, 5)))
    with pytest.raises(ValueError, match="zeros and beta_loss <= 0"):
        K.multiplicative_update(V * 0 + (V > 0), W.copy(), H.copy(), beta_loss=0)
    with pytest.raises(TypeError, match="W must have V's dtype"):
        K.multiplicative_update(V, W.astype(np.float32), H.copy())
    with pytest.raises(ValueError, match="H must have shape"):
        K.multiplicative_update(V, W.copy(), H[:, :3].copy())
    with pytest.raises(TypeError, match="V must have dtype"):
        K.multiplicative_update(V.astype(np.int64), W.copy(), H.copy())
    with pytest.raises(ValueError, match="beta_loss must be one of"):
        K.multiplicative_update(V, W.copy(), H.copy(), beta_loss="euclid")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_input_scan(dtype):
    # arrays of at least kernels.nmf.checks._SCAN_MIN entries are scanned by one parallel Numba pass
    # (a float64 sum of the negative entries and of all entries); each kind of bad value,
    # alone, in either task's half, still gets the exact message
    from hotops.kernels.nmf import check_nonnegative
    from hotops.kernels.nmf.checks import _SCAN_MIN

    m, n = 600, 500
    assert m * n >= _SCAN_MIN
    X = np.ones((m, n), dtype)
    check_nonnegative("X", X)
    check_nonnegative("X", np.zeros((m, n), dtype) * -1.0)  # -0.0 is >= 0
    for idx, value, msg in (((0, 3), -1e-30, "1 negative entry"), ((599, 499), np.nan, "NaN or inf"),
                            ((300, 0), np.inf, "NaN or inf"), ((7, 7), -np.inf, "NaN or inf")):
        Y = X.copy()
        Y[idx] = value
        where = rf"the first at X\[{idx[0]}, {idx[1]}\]"
        with pytest.raises(ValueError, match=rf"{msg}.*{where}"):
            check_nonnegative("X", Y)
    big = np.full((m, n), np.finfo(dtype).max / 4, dtype)  # the sum overflows: exact check
    check_nonnegative("X", big)


def test_inputs_not_modified(rng):
    V, W, H = _problem(rng, 7, 6, 2)
    M = rng.random(V.shape)
    for Vk in (V, sp.csr_matrix(V), sp.coo_matrix(V)):
        before = Vk.copy()
        Mb = M.copy()
        K.multiplicative_update(Vk, W.copy(), H.copy(), beta_loss=1, max_iter=3, tol=0, mask=M)
        assert (abs(Vk - before)).max() == 0
        assert np.array_equal(M, Mb)


@pytest.mark.parametrize("beta", [2.0, 1.0, 0.5])
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
def test_batched_matches_single(rng, beta, masked):
    nb, m, n, r = 5, 9, 7, 3
    V = rng.poisson(2.0, (nb, m, n)).astype(np.float64) + (0.1 if beta < 1 else 0)
    W = np.abs(rng.standard_normal((nb, m, r))) + 0.1
    H = np.abs(rng.standard_normal((nb, r, n))) + 0.1
    M = rng.random((nb, m, n)) if masked else None
    Wb, Hb = W.copy(), H.copy()
    n_iter, err = K.batched_multiplicative_update(V, Wb, Hb, beta_loss=beta, max_iter=60, tol=1e-3,
                                                  l1_reg_W=0.01, l2_reg_H=0.02, mask=M)
    for b in range(nb):
        Ws, Hs = W[b].copy(), H[b].copy()
        n_s, Ws, Hs = K.multiplicative_update(V[b], Ws, Hs, beta_loss=beta, max_iter=60, tol=1e-3,
                                              l1_reg_W=0.01, l2_reg_H=0.02,
                                              mask=None if M is None else M[b])
        assert n_iter[b] == n_s  # convergence is judged per problem
        assert _rel(Wb[b], Ws) < 1e-8 and _rel(Hb[b], Hs) < 1e-8
        assert np.isclose(err[b], K.objective(V[b], Ws, Hs, beta_loss=beta,
                                              mask=None if M is None else M[b]), rtol=1e-9)


@pytest.mark.parametrize("m,n,r", [(64, 64, 8), (9, 7, 3), (17, 33, 9), (16, 16, 16), (5, 40, 1),
                                   (70, 20, 6), (40, 3, 12)])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-8), (np.float32, 2e-3)])
def test_batched_frobenius_vector_kernels_match_single(rng, m, n, r, dtype, tol):
    # plain Frobenius batches run on the 8-lane kernels (r padded to 8k, m and n to 16k):
    # every shape, both dtypes, penalties on both factors, the stopping rule, a zero row
    # and a zero column of V, against the single-problem (BLAS) path
    nb = 3
    V = rng.poisson(2.0, (nb, m, n)).astype(dtype)
    V[0, m // 2, :] = 0
    V[1, :, n // 2] = 0
    W = (np.abs(rng.standard_normal((nb, m, r))) + 0.1).astype(dtype)
    H = (np.abs(rng.standard_normal((nb, r, n))) + 0.1).astype(dtype)
    Wb, Hb = W.copy(), H.copy()
    kw = dict(beta_loss=2, max_iter=80, tol=1e-4, l1_reg_W=0.01, l2_reg_W=0.03, l1_reg_H=0.02,
              l2_reg_H=0.01)
    n_iter, err = K.batched_multiplicative_update(V, Wb, Hb, **kw)
    assert Wb.dtype == dtype and Hb.dtype == dtype
    for b in range(nb):
        n_s, Ws, Hs = K.multiplicative_update(V[b], W[b].copy(), H[b].copy(), **kw)
        if dtype == np.float64:
            assert n_iter[b] == n_s
        if n_iter[b] == n_s:
            assert _rel(Wb[b], Ws) < tol and _rel(Hb[b], Hs) < tol
        assert (Wb[b] >= 0).all() and (Hb[b] >= 0).all()
        assert np.isclose(err[b], K.objective(V[b], Wb[b], Hb[b], beta_loss=2), rtol=1e-5)


def test_batched_frobenius_vector_kernels_against_scikit_learn(rng):
    # the benchmark's case: 64 x 64, r = 8, 200 iterations, tol = 0, float64
    from sklearn.decomposition import NMF

    nb = 2
    V = rng.poisson(2.0, (nb, 64, 64)).astype(np.float64)
    W = np.abs(rng.standard_normal((nb, 64, 8))) * 0.3 + 0.01
    H = np.abs(rng.standard_normal((nb, 8, 64))) * 0.3 + 0.01
    Wb, Hb = W.copy(), H.copy()
    n_iter, _ = K.batched_multiplicative_update(V, Wb, Hb, beta_loss=2, max_iter=200, tol=0)
    assert (n_iter == 200).all()
    for b in range(nb):
        est = NMF(8, init="custom", solver="mu", max_iter=200, tol=0)
        Ws = est.fit_transform(V[b], W=W[b].copy(), H=H[b].copy())
        assert _rel(Wb[b], Ws) < 1e-8 and _rel(Hb[b], est.components_) < 1e-8


@pytest.mark.parametrize("r", [8, 16, 5])
@pytest.mark.parametrize("tiles", [(1024, 1024), (4, 3)], ids=["one-tile", "many-tiles"])
def test_sparse_kl_tiled_vector_kernels_match_reference(rng, monkeypatch, r, tiles):
    # unmasked sparse KL runs on the tiled sweeps; float64 factors with r a multiple of 8 on
    # the 8-lane kernels (r = 5: the scalar ones). Small tiles and panels exercise the tile
    # and panel boundaries; penalties, an empty row and column, and the objective the fit
    # computes from its last sweep
    from hotops.kernels.nmf import config

    monkeypatch.setattr(config, "CPU_TILE_COLS", tiles[0])
    monkeypatch.setattr(config, "CPU_TILE_PANEL", tiles[1])
    V, W, H = _problem(rng, 29, 37, r, density=0.3)
    V[4, :] = 0
    V[:, 7] = 0
    kw = dict(l1_reg_W=0.01, l2_reg_W=0.02, l1_reg_H=0.03, l2_reg_H=0.0)
    Wk, Hk = W.copy(), H.copy()
    K.multiplicative_update(sp.csr_matrix(V), Wk, Hk, beta_loss=1, max_iter=6, tol=0, **kw)
    Wr, Hr = ref.nmf_mu(V, W, H, 1.0, 6, kw["l1_reg_W"], kw["l1_reg_H"], kw["l2_reg_W"],
                        kw["l2_reg_H"])
    assert _rel(Wk, Wr) < 1e-10 and _rel(Hk, Hr) < 1e-10
    assert np.isclose(K.objective(sp.csr_matrix(V), Wk, Hk, beta_loss=1),
                      K.objective(V, Wr, Hr, beta_loss=1), rtol=1e-10)
