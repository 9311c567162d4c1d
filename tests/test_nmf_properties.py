"""Invariants of the multiplicative updates (hypothesis): the objective never increases,
W and H stay non-negative and finite, zero rows / columns of V are handled."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import reference as ref
from hotops.kernels import nmf as K


@st.composite
def problems(draw):
    m = draw(st.integers(1, 9))
    n = draw(st.integers(1, 9))
    r = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**31 - 1))
    density = draw(st.sampled_from([0.2, 0.6, 1.0]))
    rng = np.random.default_rng(seed)
    V = rng.poisson(2.0, (m, n)).astype(np.float64) * (rng.random((m, n)) < density)
    if draw(st.booleans()) and m > 1:
        V[rng.integers(m)] = 0  # a zero row
    if draw(st.booleans()) and n > 1:
        V[:, rng.integers(n)] = 0  # a zero column
    W = np.abs(rng.standard_normal((m, r))) + 0.05
    H = np.abs(rng.standard_normal((r, n))) + 0.05
    M = (rng.random((m, n)) < 0.7).astype(np.float64) if draw(st.booleans()) else None
    return V, W, H, M


@settings(max_examples=40, deadline=None)
@given(problems(), st.sampled_from([2.0, 1.0]), st.booleans())
def test_objective_never_increases(prob, beta, sparse):
    V, W, H, M = prob
    Vk = sp.csr_matrix(V) if sparse else V
    Mk = sp.csr_matrix(M) if (sparse and M is not None) else M
    prev = ref.nmf_divergence(V, W, H, beta, mask=M)
    for _ in range(6):
        K.multiplicative_update(Vk, W, H, beta_loss=beta, max_iter=1, tol=0, mask=Mk)
        assert np.isfinite(W).all() and np.isfinite(H).all()
        assert (W >= 0).all() and (H >= 0).all()
        cur = ref.nmf_divergence(V, W, H, beta, mask=M)
        # the eps clamps of scikit-learn's rule allow a rounding-level slack only
        assert cur <= prev * (1 + 1e-9) + 1e-12
        prev = cur


@settings(max_examples=15, deadline=None)
@given(problems())
def test_zero_rows_give_zero_factor_rows(prob):
    V, W, H, _ = prob
    zero_rows = ~V.any(axis=1)
    K.multiplicative_update(V, W, H, beta_loss=2.0, max_iter=3, tol=0)
    # Frobenius: the numerator (V H^T)_i of an all-zero row is 0, so W_i becomes 0 at once
    assert (W[zero_rows] == 0).all()
    assert np.isfinite(H).all() and (H >= 0).all()
