"""Reversible-coupling kernels (Gomez et al. 2017, Eq. 3/4): CPU Numba and numba.cuda twins
against the element-by-element references in tests/reference.py."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference
from hotops.kernels import reversible as kr
from hotops.kernels.reversible import config

SHAPES = [(7,), (2, 3, 5), (1,), (4, 1, 3, 3), (0, 3)]


@pytest.fixture
def small_launch(monkeypatch):
    # grid-stride loops with several elements per thread; the serial/parallel CPU switch
    monkeypatch.setattr(config, "CUDA_THREADS", 4)
    monkeypatch.setattr(config, "CUDA_MAX_BLOCKS", 2)
    monkeypatch.setattr(config, "CPU_PARALLEL_MIN", 10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("sign", [1, -1])
def test_couple_matches_reference(backend, rng, small_launch, dtype, shape, sign):
    y, f, acc, add = (rng.standard_normal(shape).astype(dtype) for _ in range(4))
    want_y, want_bad, want_acc = reference.rev_couple(y, f, sign, acc, add)
    dy, df, da, dd = (backend.put(a.copy()) for a in (y, f, acc, add))
    bad = kr.couple_(dy, df, sign, acc=da, add=dd)
    assert bad == want_bad == 0
    np.testing.assert_array_equal(backend.get(dy), want_y)
    np.testing.assert_array_equal(backend.get(da), want_acc)
    np.testing.assert_array_equal(backend.get(dd), add)  # inputs untouched
    np.testing.assert_array_equal(backend.get(df), f)


def test_couple_counts_nonfinite(backend, small_launch):
    y = np.array([1.0, np.inf, 3.0, 1e308, -2.0, 0.0], np.float64)
    f = np.array([1.0, 0.0, np.nan, -1e308, 1.0, 0.0], np.float64)
    want_y, want_bad = reference.rev_couple(y, f, -1)
    dy = backend.put(y)
    assert kr.couple_(dy, backend.put(f), -1) == want_bad == 3
    np.testing.assert_array_equal(backend.get(dy), want_y)
    dy = backend.put(y)
    assert kr.couple_(dy, backend.put(f), -1, check_finite=False) == 0


def test_reconstruction_roundtrip_float(backend, rng, small_launch):
    # y = x + f then y - f: exact when no rounding happens (f on a coarse grid), else within one ulp
    x = rng.standard_normal(50)
    f = np.round(rng.standard_normal(50) * 64) / 64
    d = backend.put(x.copy())
    kr.couple_(d, backend.put(f), +1)
    kr.couple_(d, backend.put(f), -1)
    np.testing.assert_allclose(backend.get(d), x, rtol=0, atol=4 * np.finfo(np.float64).eps)


@pytest.mark.parametrize("int_dtype, frac_bits", [(np.int64, 32), (np.int64, 0), (np.int32, 12)])
@pytest.mark.parametrize("fdtype", [np.float32, np.float64])
def test_quantize_dequantize(backend, rng, small_launch, int_dtype, frac_bits, fdtype):
    x = (rng.standard_normal((3, 7)) * 4).astype(fdtype)
    x[0, 0] = 0.5 / 2**frac_bits  # a tie: rounds up
    limit = kr.fixed_point_limit(int_dtype)
    want = np.array(reference.rev_quantize(x, frac_bits, limit), dtype=np.int64).reshape(x.shape)
    q = backend.put(np.zeros(x.shape, int_dtype))
    assert kr.quantize(backend.put(x), frac_bits, q) == 0
    np.testing.assert_array_equal(backend.get(q), want)
    out = backend.put(np.zeros(x.shape, np.float64))
    kr.dequantize(q, frac_bits, out)
    np.testing.assert_array_equal(backend.get(out), want * 2.0**-frac_bits)


def test_quantize_out_of_range(backend, small_launch):
    x = np.array([1.0, np.nan, 2.0**20, -np.inf, -1.0])
    q = backend.put(np.zeros(5, np.int32))
    assert kr.quantize(backend.put(x), 12, q) == 3  # 2^20 * 2^12 > 2^31
    np.testing.assert_array_equal(backend.get(q), [4096, 0, 0, 0, -4096])


@pytest.mark.parametrize("int_dtype, frac_bits", [(np.int64, 32), (np.int32, 10)])
def test_quantize_couple_matches_reference_and_inverts(backend, rng, small_launch, int_dtype, frac_bits):
    limit = kr.fixed_point_limit(int_dtype)
    y = rng.integers(-2**20, 2**20, size=(4, 9)).astype(int_dtype)
    f = rng.standard_normal((4, 9))
    acc, add = rng.standard_normal((4, 9)), rng.standard_normal((4, 9))
    want, want_bad = reference.rev_quantize_couple(y, f, frac_bits, +1, limit)
    want_acc = acc + add
    dy, da = backend.put(y.copy()), backend.put(acc)
    assert kr.quantize_couple_(dy, backend.put(f), frac_bits, +1, acc=da, add=backend.put(add)) == want_bad
    np.testing.assert_array_equal(backend.get(dy), want)
    np.testing.assert_array_equal(backend.get(da), want_acc)
    assert kr.quantize_couple_(dy, backend.put(f), frac_bits, -1) == 0
    np.testing.assert_array_equal(backend.get(dy), y)  # bit-exact inverse


def test_quantize_couple_overflow_counted_and_left_unchanged(backend, small_launch):
    y = np.array([2**31 - 10, 5, -3], np.int32)
    f = np.array([100.0, np.nan, 1.0])
    dy = backend.put(y)
    assert kr.quantize_couple_(dy, backend.put(f), 0, +1) == 2
    np.testing.assert_array_equal(backend.get(dy), [2**31 - 10, 5, -2])


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 40), st.integers(0, 40), st.integers(0, 2**31 - 1))
def test_property_quantized_chain_is_exactly_invertible(n, frac_bits, seed):
    # any number of quantise-adds undone in reverse order restores the integers exactly
    rng = np.random.default_rng(seed)
    y0 = rng.integers(-2**30, 2**30, size=n).astype(np.int64)
    fs = [rng.standard_normal(n) * 10 for _ in range(5)]
    y = y0.copy()
    for f in fs:
        assert kr.quantize_couple_(y, f, frac_bits, +1) == 0
    for f in reversed(fs):
        assert kr.quantize_couple_(y, f, frac_bits, -1) == 0
    np.testing.assert_array_equal(y, y0)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 60), st.integers(0, 2**31 - 1))
def test_property_float_reconstruction_error_bounded(n, seed):
    # DESIGN.md: reconstruction error bounded -- y = x + f, x' = y - f: |x' - x| <= ulp(y)
    rng = np.random.default_rng(seed)
    x, f = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    y = x.copy()
    kr.couple_(y, f, +1)
    bound = np.spacing(np.maximum(np.abs(y), np.abs(x)))
    kr.couple_(y, f, -1)
    assert np.all(np.abs(y - x) <= bound)


def test_bad_arguments(rng):
    y = np.zeros((2, 3))
    with pytest.raises(ValueError, match="f must have the shape of y"):
        kr.couple_(y, np.zeros((3, 2)), -1)
    with pytest.raises(TypeError, match="f must have y's dtype float64"):
        kr.couple_(y, np.zeros((2, 3), np.float32), -1)
    with pytest.raises(TypeError, match="y must have dtype float32, float64; got int64"):
        kr.couple_(np.zeros(3, np.int64), np.zeros(3, np.int64), -1)
    with pytest.raises(ValueError, match="sign must be"):
        kr.couple_(y, y.copy(), 2)
    with pytest.raises(ValueError, match="acc and add must be given together"):
        kr.couple_(y, y.copy(), -1, acc=y.copy())
    with pytest.raises(ValueError, match="y must be C-contiguous"):
        kr.couple_(np.zeros((3, 4))[:, ::2], np.zeros((3, 2)), -1)
    ro = np.zeros(3)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="y is read-only"):
        kr.couple_(ro, np.zeros(3), -1)
    with pytest.raises(ValueError, match="frac_bits must be in"):
        kr.quantize(np.zeros(3), 31, np.zeros(3, np.int32))
    with pytest.raises(TypeError, match="frac_bits must be an int"):
        kr.quantize(np.zeros(3), 2.5, np.zeros(3, np.int64))
    with pytest.raises(TypeError, match="out must have dtype int32, int64"):
        kr.quantize(np.zeros(3), 8, np.zeros(3, np.int16))
    with pytest.raises(TypeError, match="y must be a numpy array"):
        kr.couple_([1.0], [1.0], -1)


def test_outputs_overlapping_inputs_in_part_are_refused():
    buf = np.arange(12.0)
    with pytest.raises(ValueError, match="y and f overlap in part"):
        kr.couple_(buf[1:9], buf[:8])
    acc = np.zeros(12)
    with pytest.raises(ValueError, match="y and acc must not share memory"):
        kr.couple_(acc[:6], np.ones(6), acc=acc[3:9], add=np.ones(6))
    with pytest.raises(ValueError, match="out and x overlap in part"):
        kr.quantize(buf[:6], 4, buf.view(np.int64)[2:8])
    # an output that is exactly its input is fine: every element is read before it is written
    f = np.arange(6.0)
    kr.couple_(f, f, sign=-1)
    np.testing.assert_array_equal(f, np.zeros(6))
