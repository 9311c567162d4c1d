"""hotops.bindings.nmf and hotops.batched_nmf (torch, numpy) against hotops.NMF / references."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import hotops
import reference as ref
from hotops.bindings import nmf


def _data(rng, m=20, n=14):
    return rng.poisson(2.0, (m, n)).astype(np.float64) * (rng.random((m, n)) < 0.6)


@pytest.mark.parametrize("layout", ["dense", "coo", "csr"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_binding_matches_estimator(rng, layout, dtype):
    X = _data(rng)
    V = torch.from_numpy(X).to(dtype)
    if layout == "coo":
        V = V.to_sparse()
    elif layout == "csr":
        V = V.to_sparse_csr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        W, H = nmf(V, 3, beta_loss="kullback-leibler", max_iter=40, random_state=0, init="random")
        est = hotops.NMF(3, beta_loss="kullback-leibler", max_iter=40, random_state=0, init="random")
        We = est.fit_transform(X.astype(np.float32 if dtype == torch.float32 else np.float64))
    assert isinstance(W, torch.Tensor) and W.dtype == dtype and W.shape == (20, 3) and H.shape == (3, 14)
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    assert np.abs(W.numpy() - We).max() <= tol * np.abs(We).max()
    assert np.abs(H.numpy() - est.components_).max() <= tol * np.abs(est.components_).max()


def test_binding_zero_copy_in(rng, monkeypatch):
    from hotops.kernels import nmf as K

    seen = {}
    real = K.multiplicative_update

    def spy(V, W, H, **kw):
        seen["V"] = V
        return real(V, W, H, **kw)

    monkeypatch.setattr(K, "multiplicative_update", spy)
    V = torch.from_numpy(_data(rng))
    Vc = V.clone()
    nmf(V, 2, max_iter=10, tol=0)
    assert np.shares_memory(seen["V"], V.numpy())
    assert torch.equal(V, Vc)
    Vs = V.to_sparse_csr()
    nmf(Vs, 2, max_iter=10, tol=0)
    assert np.shares_memory(seen["V"].data, Vs.values().numpy())


def test_binding_custom_mask_and_errors(rng):
    X = _data(rng)
    W0 = np.abs(rng.standard_normal((20, 2))) + 0.1
    H0 = np.abs(rng.standard_normal((2, 14))) + 0.1
    M = (rng.random(X.shape) < 0.7).astype(np.float64)
    W, H = nmf(torch.from_numpy(X), 2, init="custom", W=torch.from_numpy(W0), H=torch.from_numpy(H0),
               mask=torch.from_numpy(M), max_iter=15, tol=0)
    Wr, Hr = ref.nmf_mu(X, W0, H0, 2.0, 15, mask=M)
    assert np.abs(W.numpy() - Wr).max() < 1e-10 * np.abs(Wr).max()
    with pytest.raises(TypeError, match="V must be a torch.Tensor"):
        nmf(X, 2)
    with pytest.raises(ValueError, match="n_components must be a positive integer"):
        nmf(torch.from_numpy(X), 0)
    Xn = X.copy()
    Xn[4, 5] = -1
    with pytest.raises(ValueError, match=r"the first at V\[4, 5\]"):
        nmf(torch.from_numpy(Xn), 2)


def test_batched_nmf_numpy_and_torch(rng):
    V = rng.poisson(2.0, (6, 10, 8)).astype(np.float64)
    W0 = np.abs(rng.standard_normal((6, 10, 2))) + 0.1
    H0 = np.abs(rng.standard_normal((6, 2, 8))) + 0.1
    Wb, Hb, it = hotops.batched_nmf(V, 2, init="custom", W=W0, H=H0, max_iter=300, return_n_iter=True)
    for b in range(6):
        est = hotops.NMF(2, init="custom", max_iter=300)
        Wsingle = est.fit_transform(V[b], W=W0[b], H=H0[b])
        assert it[b] == est.n_iter_
        assert np.abs(Wb[b] - Wsingle).max() <= 1e-8 * np.abs(Wsingle).max()
    Wt, Ht = nmf(torch.from_numpy(V), 2, init="custom", W=W0, H=H0, max_iter=300)
    assert isinstance(Wt, torch.Tensor) and torch.allclose(Wt, torch.from_numpy(Wb), rtol=0, atol=0)
    with pytest.warns(Warning, match="Maximum number of iterations 3 reached in 6 of 6"):
        hotops.batched_nmf(V, 2, max_iter=3)
    with pytest.raises(ValueError, match="3-D"):
        hotops.batched_nmf(V[0], 2)
    with pytest.raises(ValueError, match="mask must have V's shape"):
        hotops.batched_nmf(V, 2, mask=np.ones((6, 10, 7)))


@pytest.mark.parametrize("kw, error, match", [
    (dict(max_iter=0), ValueError, "max_iter must be >= 1"),
    (dict(max_iter=2.5), TypeError, "max_iter must be an integer"),
    (dict(max_iter=True), TypeError, "max_iter must be an integer"),
    (dict(tol=float("nan")), ValueError, "tol must be a finite number"),
    (dict(tol=float("inf")), ValueError, "tol must be a finite number"),
    (dict(tol=-1e-3), ValueError, "tol must be >= 0"),
    (dict(alpha_W=-0.1), ValueError, "alpha_W must be finite and >= 0"),
    (dict(alpha_H=float("nan")), ValueError, "alpha_H must be finite and >= 0"),
    (dict(l1_ratio=1.5), ValueError, r"l1_ratio must be in \[0, 1\]"),
    (dict(beta_loss=True), TypeError, "beta_loss must be a string or a real number"),
])
def test_batched_parameters_follow_sklearn_rules(rng, kw, error, match):
    # scikit-learn's NMF rules: max_iter an integer >= 1, tol finite >= 0, penalties >= 0
    V = rng.random((2, 5, 4))
    for fit in (hotops.batched_nmf, lambda V, r, **kw: hotops.batched_nmf(torch.from_numpy(V), r, **kw),
                lambda V, r, **kw: nmf(torch.from_numpy(V[0]), r, **kw)):
        with pytest.raises(error, match=match):
            fit(V, 2, **kw)
    W, H = hotops.batched_nmf(V, 2, max_iter=np.int64(20), tol=np.float32(0))  # numpy scalars are fine
    assert W.shape == (2, 5, 2)


@pytest.mark.parametrize("layout", ["dense", "coo", "csr", "batched"])
def test_complex_input_is_a_type_error(rng, layout):
    # NMF factorises non-negative reals: the imaginary part must not be dropped silently
    X = _data(rng).astype(np.complex128) + 1j
    V = torch.from_numpy(X)
    if layout == "coo":
        V = V.to_sparse()
    elif layout == "csr":
        V = V.to_sparse_csr()
    elif layout == "batched":
        V = V.expand(2, -1, -1)
    with pytest.raises(TypeError, match="V must be real .* got complex128"):
        nmf(V, 2, max_iter=5)
    with pytest.raises(TypeError, match="V must be real .* got complex64"):
        nmf(torch.from_numpy(X).to(torch.complex64), 2, max_iter=5)
    real = torch.from_numpy(_data(rng))
    with pytest.raises(TypeError, match="mask must be real"):
        nmf(real, 2, max_iter=5, mask=torch.ones(real.shape, dtype=torch.complex64))
    with pytest.raises(TypeError, match="W must be real"):
        nmf(real, 2, init="custom", W=np.ones((20, 2), complex), H=np.ones((2, 14)), max_iter=5)
    with pytest.raises(TypeError, match="H must be real"):
        nmf(real, 2, init="custom", W=np.ones((20, 2)), H=[[1j] * 14] * 2, max_iter=5)
    with pytest.raises(TypeError, match="V must be real"):
        hotops.batched_nmf(torch.ones(2, 4, 3, dtype=torch.complex64), 2, max_iter=5)
