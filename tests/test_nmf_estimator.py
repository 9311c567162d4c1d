"""hotops.NMF against scikit-learn's NMF(solver='mu'), and its estimator contract."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.decomposition import NMF as SkNMF
from sklearn.exceptions import ConvergenceWarning

import hotops
import reference as ref


def _data(rng, m=60, n=45, density=0.3):
    X = rng.poisson(2.0, (m, n)).astype(np.float64) * (rng.random((m, n)) < density)
    return X


def _rel(a, b):
    return float(np.abs(np.asarray(a) - b).max() / np.abs(b).max())


@pytest.mark.parametrize("beta", ["frobenius", "kullback-leibler"])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_iterates_match_sklearn_200_iterations(rng, beta, sparse):
    X = _data(rng)
    Xk = sp.csr_matrix(X) if sparse else X
    W0 = np.abs(rng.standard_normal((60, 6))) * 0.5
    H0 = np.abs(rng.standard_normal((6, 45))) * 0.5
    kw = dict(n_components=6, init="custom", beta_loss=beta, max_iter=200, tol=0, alpha_W=0.01, l1_ratio=0.5)
    sk = SkNMF(solver="mu", **kw)
    Ws = sk.fit_transform(Xk, W=W0.copy(), H=H0.copy())
    ho = hotops.NMF(**kw)
    Wh = ho.fit_transform(Xk, W=W0, H=H0)
    assert ho.n_iter_ == sk.n_iter_ == 200
    assert _rel(Wh, Ws) <= 1e-8
    assert _rel(ho.components_, sk.components_) <= 1e-8
    assert np.isclose(ho.reconstruction_err_, sk.reconstruction_err_, rtol=1e-10)


@pytest.mark.parametrize("init", [None, "random", "nndsvdar"])
def test_default_inits_and_stopping_match_sklearn(rng, init):
    X = _data(rng, 30, 20, 0.6)
    kw = dict(n_components=4, init=init, beta_loss="kullback-leibler", random_state=3, max_iter=400)
    sk = SkNMF(solver="mu", **kw).fit(X)
    ho = hotops.NMF(**kw).fit(X)
    assert ho.n_iter_ == sk.n_iter_ < 400  # the tol rule stops at the same iteration
    assert _rel(ho.components_, sk.components_) <= 1e-8
    assert _rel(ho.transform(X), sk.transform(X)) <= 1e-8


def test_float32(rng):
    # flash-attention's rule: against a float64 run from the same start, hotops' float32
    # error may be at most twice scikit-learn's float32 error
    X = _data(rng, 30, 20, 0.6).astype(np.float32)
    W0 = (np.abs(rng.standard_normal((30, 3))) + 0.1).astype(np.float32)
    H0 = (np.abs(rng.standard_normal((3, 20))) + 0.1).astype(np.float32)
    for beta in ("frobenius", "kullback-leibler"):
        for sparse in (False, True):
            conv = sp.csr_matrix if sparse else np.asarray
            kw = dict(n_components=3, init="custom", beta_loss=beta, max_iter=50, tol=0)
            W64 = SkNMF(solver="mu", **kw).fit_transform(conv(X.astype(np.float64)), W=W0.astype(np.float64),
                                                         H=H0.astype(np.float64))
            Wsk = SkNMF(solver="mu", **kw).fit_transform(conv(X), W=W0.copy(), H=H0.copy())
            Wh = hotops.NMF(**kw).fit_transform(conv(X), W=W0, H=H0)
            assert Wh.dtype == np.float32
            assert _rel(Wh, W64) <= 2 * _rel(Wsk, W64) + 1e-6


def test_check_estimator():
    from sklearn.utils.estimator_checks import check_estimator

    # scikit-learn's own NMF(solver='mu') fails exactly these two checks (measured with
    # scikit-learn 1.9.1): MU with tol=1e-4 does not converge to 1e-2 agreement between
    # fit_transform(X) and fit(X).transform(X). hotops keeps scikit-learn's semantics.
    why = "scikit-learn's NMF(solver='mu') fails it too: MU stops before fit_transform and transform agree to 1e-2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_estimator(hotops.NMF(), expected_failed_checks={
            "check_transformer_general": why, "check_transformer_data_not_an_array": why})


def test_convergence_warning_and_inputs_untouched(rng):
    X = _data(rng, 20, 15, 0.7)
    W0 = np.abs(rng.standard_normal((20, 3)))
    H0 = np.abs(rng.standard_normal((3, 15)))
    M = (rng.random(X.shape) < 0.8).astype(float)
    copies = [a.copy() for a in (X, W0, H0, M)]
    with pytest.warns(ConvergenceWarning, match="Maximum number of iterations 5"):
        hotops.NMF(3, init="custom", max_iter=5).fit(X, W=W0, H=H0, mask=M)
    for a, b in zip((X, W0, H0, M), copies):
        assert np.array_equal(a, b)
    Xs = sp.csc_matrix(X)
    before = Xs.copy()
    with pytest.warns(ConvergenceWarning):
        hotops.NMF(3, max_iter=5).fit(Xs)
    assert (Xs != before).nnz == 0


@pytest.mark.parametrize("beta", [2.0, 1.0])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_mask(rng, beta, sparse):
    X = _data(rng, 25, 18, 0.6)
    M = (rng.random(X.shape) < 0.7).astype(float)
    W0 = np.abs(rng.standard_normal((25, 3))) + 0.1
    H0 = np.abs(rng.standard_normal((3, 18))) + 0.1
    Xk = sp.csr_matrix(X) if sparse else X
    Mk = sp.csr_matrix(M) if sparse else M
    est = hotops.NMF(3, init="custom", beta_loss=beta, max_iter=30, tol=0)
    W = est.fit_transform(Xk, W=W0, H=H0, mask=Mk)
    Wr, Hr = ref.nmf_mu(X, W0, H0, beta, 30, mask=M)
    assert _rel(W, Wr) < 1e-10 and _rel(est.components_, Hr) < 1e-10
    assert np.isclose(est.reconstruction_err_, np.sqrt(2 * ref.nmf_divergence(X, Wr, Hr, beta, mask=M)), rtol=1e-9)
    # a mask of ones is no mask
    W1 = hotops.NMF(3, init="custom", beta_loss=beta, max_iter=30, tol=0).fit_transform(
        X, W=W0, H=H0, mask=np.ones_like(X))
    W2 = hotops.NMF(3, init="custom", beta_loss=beta, max_iter=30, tol=0).fit_transform(X, W=W0, H=H0)
    assert _rel(W1, W2) < 1e-10


def test_bad_input(rng):
    X = _data(rng, 10, 8, 0.8)
    Xn = X.copy()
    Xn[2, 3] = -1
    with pytest.raises(ValueError, match=r"1 negative entry, the first at X\[2, 3\]"):
        hotops.NMF(2).fit(Xn)
    Xn[2, 3] = np.inf
    with pytest.raises(ValueError, match=r"NaN or inf.*X\[2, 3\]"):
        hotops.NMF(2).fit(Xn)
    with pytest.raises(ValueError, match="n_components"):
        hotops.NMF(0).fit(X)
    with pytest.raises(ValueError, match="n_components <= min"):
        hotops.NMF(20, init="nndsvda").fit(X)
    with pytest.raises(ValueError, match="beta_loss <= 0"):
        hotops.NMF(2, beta_loss="itakura-saito").fit(X)
    with pytest.raises(ValueError, match="mask must have X's shape"):
        hotops.NMF(2).fit(X, mask=np.ones((8, 10)))
    with pytest.raises(ValueError, match=r"negative entry, the first at mask\[0, 1\]"):
        M = np.ones_like(X)
        M[0, 1] = -1
        hotops.NMF(2).fit(X, mask=M)
    with pytest.raises(TypeError, match="same dtype"):
        hotops.NMF(2, init="custom").fit(X, W=np.ones((10, 2), np.float32), H=np.ones((2, 8), np.float32))
    with pytest.raises(ValueError, match="device"):
        hotops.NMF(2, device="gpu").fit(X)
    # integers are converted to float64 as scikit-learn does
    Wi = hotops.NMF(2, max_iter=400).fit_transform(X.astype(np.int64))
    assert Wi.dtype == np.float64


def test_transform_inverse_and_feature_names(rng):
    X = _data(rng, 20, 12, 0.7)
    est = hotops.NMF(3, max_iter=500, random_state=0).fit(X)
    W = est.transform(X)
    assert W.shape == (20, 3)
    assert est.inverse_transform(W).shape == X.shape
    assert list(est.get_feature_names_out()) == ["nmf0", "nmf1", "nmf2"]
    assert est.n_features_in_ == 12


@pytest.mark.parametrize("param, value", [
    ("n_components", 0), ("n_components", 2.0), ("n_components", True), ("max_iter", 0), ("max_iter", True),
    ("max_iter", 1.0), ("tol", float("nan")), ("tol", float("inf")), ("tol", -1.0), ("alpha_W", float("nan")),
    ("alpha_H", -1.0), ("alpha_H", "other"), ("l1_ratio", 1.5), ("beta_loss", "other"), ("beta_loss", True),
    ("beta_loss", float("nan")), ("init", "other"), ("random_state", -1), ("verbose", -1), ("device", "gpu"),
])
def test_parameter_rules(rng, param, value):
    # scikit-learn's rules for NMF (bool is no integer here); both a ValueError and a TypeError
    X = _data(rng, 8, 6, 0.8)
    with pytest.raises(ValueError, match=f"'{param}' parameter of NMF"):
        hotops.NMF(**{param: value}).fit(X)
    with pytest.raises(TypeError, match=f"'{param}' parameter of NMF"):
        hotops.NMF(**{param: value}).fit(X)


def test_no_private_sklearn_imports():
    # scikit-learn's private modules change without notice: the library uses its public API
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[1]
    private = re.compile(r"sklearn(\.\w+)*\._\w+")
    hits = [f"{p.relative_to(root)}:{i}" for folder in ("kernels", "bindings", "hotops")
            for p in (root / folder).rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1)
            if private.search(line) and "import" in line]
    assert not hits, hits
