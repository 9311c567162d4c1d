"""kernels._simd: the 8-lane vector operations against numpy, float32 and float64."""
from __future__ import annotations

import numba
import numpy as np
import pytest
from _support import tol

from hotops.kernels._simd import (vadd, vbcast, vclip_below, vdiv, vfma, vhsum8, vload, vmul, vsplat,
                                  vstore, vzero, vzero_to)


@numba.njit
def _elementwise(a, b, c, out, x, thr):
    # out rows: fma, add, mul, div, splat * a, broadcast of b[3] + c, zero_to(c, x), clip
    for i in range(0, a.size, 8):
        va = vload(a, i)
        vb = vload(b, i)
        vc = vload(c, i)
        vstore(out, 0 * a.size + i, vfma(va, vb, vc))
        vstore(out, 1 * a.size + i, vadd(va, vb))
        vstore(out, 2 * a.size + i, vmul(va, vb))
        vstore(out, 3 * a.size + i, vdiv(va, vb))
        vstore(out, 4 * a.size + i, vmul(vsplat(x, va), va))
        vstore(out, 5 * a.size + i, vadd(vbcast(b, 3), vc))
        vstore(out, 6 * a.size + i, vzero_to(vc, x))
        vstore(out, 7 * a.size + i, vadd(vclip_below(va, thr), vzero(a)))


@numba.njit
def _hsum(a, out):
    # a: 64 elements = 8 vectors; out[l] = sum of vector l
    vstore(out, 0, vhsum8(vload(a, 0), vload(a, 8), vload(a, 16), vload(a, 24), vload(a, 32),
                          vload(a, 40), vload(a, 48), vload(a, 56)))


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-15), (np.float32, 1e-6)])
def test_elementwise_ops_match_numpy(dtype, rtol, rng=np.random.default_rng(0)):
    k = 48
    a = rng.standard_normal(k).astype(dtype)
    b = (rng.random(k) + 0.5).astype(dtype)
    c = rng.standard_normal(k).astype(dtype)
    c[[1, 9, 40]] = 0
    out = np.empty(8 * k, dtype)
    _elementwise(a, b, c, out, 2.5, 0.1)
    rows = out.reshape(8, k)
    x = dtype(2.5)
    expect = [a * b + c, a + b, a * b, a / b, x * a, b[3] + c, np.where(c == 0, x, c),
              np.where(a < dtype(0.1), 0, a)]
    # the fused multiply-add rounds once: within a rounding of the magnitudes of its terms
    scale = np.abs(a * b) + np.abs(c)
    assert (np.abs(rows[0] - expect[0]) <= 2 * np.finfo(dtype).eps * scale).all()
    for got, want in zip(rows[1:], expect[1:]):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=0)
    assert rows.dtype == dtype


def test_fma_rounds_once():
    # (1 + 2^-30)^2 - 1 = 2^-29 + 2^-60: only a fused multiply-add keeps the 2^-60
    e = 2.0 ** -30
    a = np.full(8, 1 + e)
    out = np.empty(8 * 8)
    _elementwise(a, a, np.full(8, -1.0), out, 1.0, 0.0)
    assert (out[:8] == 2.0 ** -29 + 2.0 ** -60).all()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_hsum8_is_a_transposing_sum(dtype, rng=np.random.default_rng(1)):
    a = rng.standard_normal(64).astype(dtype)
    out = np.empty(8, dtype)
    _hsum(a, out)
    np.testing.assert_allclose(out, a.reshape(8, 8).sum(axis=1), **tol(dtype, scale=5))


def test_nan_lanes_survive_selects():
    a = np.array([np.nan, -1.0, 0.05, 0.2, 0.0, np.inf, 3.0, -0.0])
    out = np.empty(64)
    _elementwise(a, np.ones(8), a, out, 7.0, 0.1)
    clipped = out[56:64]
    assert np.isnan(clipped[0]) and clipped[1] == 0 and clipped[2] == 0 and clipped[3] == 0.2
    zero_to = out[48:56]
    assert np.isnan(zero_to[0]) and zero_to[4] == 7.0 and zero_to[7] == 7.0 and zero_to[6] == 3.0
