"""Per-pixel GMM log-likelihood kernel (hotops.kernels.gmm): Numba CPU and numba.cuda twins."""
from __future__ import annotations

import numpy as np
import pytest
import reference as ref
from _support import tol

from hotops.kernels import gmm
from hotops.kernels.gmm import config, gmm_log_likelihood


def _mixture(rng, k, d):
    weights = rng.random(k) + 0.1
    means = rng.random((k, d))
    a = rng.normal(size=(k, d, d)) * 0.2
    covs = a @ np.swapaxes(a, 1, 2) + 0.01 * np.eye(d)
    return weights, means, covs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p,k,d", [(37, 5, 3), (1, 1, 1), (64, 2, 1), (50, 3, 4)])
def test_matches_reference(backend, rng, dtype, p, k, d):
    w, mu, cov = _mixture(rng, k, d)
    x = rng.random((p, d)).astype(dtype)
    x_before = x.copy()
    got = backend.get(gmm_log_likelihood(backend.put(x), w, mu, cov))
    want = ref.gmm_log_likelihood(x, w, mu, cov)
    assert got.dtype == dtype and got.shape == (p,)
    np.testing.assert_allclose(got, want, **tol(dtype, scale=100))  # a sum of K exps of quadratic forms
    np.testing.assert_array_equal(x, x_before)


def test_multi_chunk_and_strided(backend, rng, monkeypatch):
    monkeypatch.setattr(config, "CPU_CHUNK", 7)
    monkeypatch.setattr(config, "CUDA_THREADS", 32)
    w, mu, cov = _mixture(rng, 4, 3)
    big = rng.random((90, 6))
    x = big[:, ::2]  # non-contiguous on the CPU
    if backend.name != "cpu":
        x = np.ascontiguousarray(x)
    got = backend.get(gmm_log_likelihood(backend.put(x), w, mu, cov))
    np.testing.assert_allclose(got, ref.gmm_log_likelihood(x, w, mu, cov), rtol=1e-9, atol=1e-9)


def test_far_pixels_do_not_underflow(backend):
    # every component's density underflows to 0 in float64; the max-shifted sum does not
    w, mu, cov = np.array([0.5, 0.5]), np.array([[0.0], [1.0]]), np.array([[[1e-4]], [[1e-4]]])
    x = np.array([[50.0], [-30.0]])
    got = backend.get(gmm_log_likelihood(backend.put(x), w, mu, cov))
    np.testing.assert_allclose(got, ref.gmm_log_likelihood(x, w, mu, cov), rtol=1e-12)
    assert np.all(np.isfinite(got))


def test_zero_weight_component_and_out(rng):
    w, mu, cov = _mixture(rng, 3, 3)
    w[1] = 0.0
    x = rng.random((10, 3))
    out = np.empty(10)
    res = gmm_log_likelihood(x, w, mu, cov, out=out)
    assert res is out
    keep = [0, 2]
    np.testing.assert_allclose(out, ref.gmm_log_likelihood(x, w[keep], mu[keep], cov[keep]), rtol=1e-10)


def test_matches_sklearn(rng):
    from sklearn.mixture import GaussianMixture

    x = rng.random((300, 3))
    g = GaussianMixture(3, covariance_type="full", random_state=0).fit(x)
    np.testing.assert_allclose(gmm_log_likelihood(x, g.weights_, g.means_, g.covariances_),
                               g.score_samples(x), rtol=1e-10, atol=1e-10)


def test_nan_propagates(backend):
    x = np.array([[np.nan, 0.0], [0.1, 0.2]])
    got = backend.get(gmm_log_likelihood(backend.put(x), [0.5, 0.5], [[0.0, 0.0], [1.0, 1.0]], [np.eye(2)] * 2))
    assert np.isnan(got[0]) and np.isfinite(got[1])


def test_empty():
    assert gmm_log_likelihood(np.empty((0, 3)), [1.0], [[0, 0, 0]], [np.eye(3)]).shape == (0,)


@pytest.mark.parametrize("kwargs,match", [
    (dict(x=np.zeros((4,))), "2 dimensions"),
    (dict(weights=[-1.0, 2.0]), "non-negative"),
    (dict(weights=[0.0, 0.0]), "non-negative"),
    (dict(means=np.zeros((3, 3))), "means must have shape"),
    (dict(covariances=np.zeros((2, 3, 3))), "not positive definite"),
    (dict(covariances=np.array([np.eye(3), [[1, 2, 0], [0, 1, 0], [0, 0, 1]]])), "symmetric"),
    (dict(x=np.zeros((4, 2))), "D=2"),
    (dict(means=np.array([[np.nan, 0, 0], [0, 0, 0]])), "finite"),
])
def test_bad_input(kwargs, match):
    args = dict(x=np.zeros((4, 3)), weights=[0.5, 0.5], means=np.zeros((2, 3)),
                covariances=np.array([np.eye(3)] * 2))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        gmm_log_likelihood(args["x"], args["weights"], args["means"], args["covariances"])


def test_bad_dtype_and_type():
    with pytest.raises(TypeError, match="x must have dtype"):
        gmm_log_likelihood(np.zeros((2, 3), np.int64), [1.0], [[0, 0, 0]], [np.eye(3)])
    with pytest.raises(TypeError, match="x must be a numpy array"):
        gmm_log_likelihood([[0.0, 0.0, 0.0]], [1.0], [[0, 0, 0]], [np.eye(3)])


def test_prepare_parameters_normalises():
    mu, inv_chol, log_const = gmm.prepare_parameters([2.0, 2.0], np.zeros((2, 1)), np.ones((2, 1, 1)) * 4.0)
    np.testing.assert_allclose(inv_chol[:, 0, 0], 0.5)
    np.testing.assert_allclose(log_const, np.log(0.5) - 0.5 * np.log(2 * np.pi) - np.log(2.0))


def test_property_single_gaussian_matches_scipy():
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from scipy.stats import multivariate_normal

    @settings(max_examples=15, deadline=None)
    @given(d=st.integers(1, 4), seed=st.integers(0, 2**16))
    def check(d, seed):
        rng = np.random.default_rng(seed)
        a = rng.normal(size=(d, d))
        cov = a @ a.T + 0.1 * np.eye(d)
        mu = rng.normal(size=d)
        x = rng.normal(size=(9, d)) * 3
        got = gmm_log_likelihood(x, [1.0], mu[None], cov[None])
        np.testing.assert_allclose(got, multivariate_normal(mu, cov).logpdf(x).reshape(-1), rtol=1e-9, atol=1e-9)

    check()


def test_out_sharing_memory_with_x_and_read_only_out(rng):
    x = rng.standard_normal((50, 2))
    w, mu, cov = np.array([0.4, 0.6]), rng.standard_normal((2, 2)), np.stack([np.eye(2), 2 * np.eye(2)])
    want = gmm_log_likelihood(x.copy(), w, mu, cov)
    flat = x.reshape(-1)  # out inside x's memory: computed through a temporary
    out = flat[10:60]
    gmm_log_likelihood(flat[:100].reshape(50, 2), w, mu, cov, out=out)
    np.testing.assert_array_equal(out, want)
    ro = np.empty(50)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="out must be writeable"):
        gmm_log_likelihood(x, w, mu, cov, out=ro)
