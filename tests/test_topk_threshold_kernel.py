"""hotops.kernels.topk_threshold: the Numba CPU kernel and its numba.cuda twin, same tests."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import reference
from _support import Backend, needs_cuda_kernels, needs_gpu
from hotops.kernels import simulator_enabled
from hotops.kernels import topk_threshold as tk
from hotops.kernels.topk_threshold import config, cpu, topk_threshold

REAL = (np.float32, np.float64)
COMPLEX = (np.complex64, np.complex128)
# (rows, n, k): row length 1, k = 1, k = n, odd sizes
CASES = [(1, 1, 1), (3, 7, 1), (3, 7, 7), (4, 33, 5), (2, 64, 63), (5, 300, 17)]


@pytest.fixture
def small_launch(monkeypatch):
    # The simulator runs one Python thread per CUDA thread: few threads per block keep it
    # fast (test_multi_block_path shrinks CUDA_ROW_MAX to reach the multi-block path).
    monkeypatch.setattr(config, "CUDA_THREADS", 8)


def dtypes_for(backend):
    return REAL + (COMPLEX if backend.name == "cpu" else ())


def draw(rng, shape, dtype, kind):
    if kind == "normal":
        a = rng.standard_normal(shape)
    elif kind == "ties":  # few distinct magnitudes, both signs: many ties at the threshold
        a = rng.integers(-3, 4, size=shape).astype(np.float64)
    else:  # constant rows
        a = np.full(shape, -1.5)
    if np.dtype(dtype).kind == "c":
        b = rng.standard_normal(shape) if kind == "normal" else np.zeros(shape)
        return (a + 1j * b).astype(dtype)
    return a.astype(dtype)


def sized(backend, rows, n):
    if backend.name == "cuda" and simulator_enabled() and rows * n > 100:
        pytest.skip("too large for the CUDA simulator (runs on a real GPU)")


@pytest.mark.parametrize("kind", ["normal", "ties", "constant"])
@pytest.mark.parametrize("rows,n,k", CASES)
def test_matches_reference(backend, rows, n, k, kind, rng, small_launch):
    sized(backend, rows, n)
    for dtype in dtypes_for(backend):
        c = draw(rng, (rows, n), dtype, kind)
        before = c.copy()
        dc = backend.put(c)
        out, mask = topk_threshold(dc, k, return_mask=True)
        out, mask = backend.get(out), backend.get(mask)
        ref_out, ref_mask = reference.topk_threshold(c, k)
        assert out.dtype == c.dtype and mask.dtype == np.bool_
        np.testing.assert_array_equal(mask, ref_mask)
        np.testing.assert_array_equal(out, ref_out)  # kept values are copied bit for bit
        assert (mask.sum(axis=1) == k).all()
        np.testing.assert_array_equal(backend.get(dc), before)  # input untouched
        np.testing.assert_array_equal(backend.get(topk_threshold(dc, k)), out)


@pytest.mark.cudasim
@needs_cuda_kernels
@pytest.mark.parametrize("rows,n,k", [(2, 20, 5), (1, 25, 25), (2, 17, 1)])
def test_multi_block_path(rows, n, k, rng, monkeypatch):
    backend = Backend("cuda")
    monkeypatch.setattr(config, "CUDA_THREADS", 4)
    monkeypatch.setattr(config, "CUDA_ROW_MAX", 8)
    monkeypatch.setattr(config, "CUDA_CHUNK", 6)
    for dtype in REAL:
        c = draw(rng, (rows, n), dtype, "ties")
        out, mask = topk_threshold(backend.put(c), k, return_mask=True)
        ref_out, ref_mask = reference.topk_threshold(c, k)
        np.testing.assert_array_equal(backend.get(mask), ref_mask)
        np.testing.assert_array_equal(backend.get(out), ref_out)


def test_first_digit_widths_cpu(rng, monkeypatch):
    # A narrow first digit (many candidates, more refinement) must give the same answer.
    c = rng.standard_normal((3, 5000)).astype(np.float32)
    expected = reference.topk_threshold(c, 321)[1]
    assert cpu.first_bits_for(31) > 8 and cpu.first_bits_for(63) > 8
    np.testing.assert_array_equal(topk_threshold(c, 321, return_mask=True)[1], expected)
    monkeypatch.setattr(config, "CPU_FIRST_BITS_32", 8)
    np.testing.assert_array_equal(topk_threshold(c, 321, return_mask=True)[1], expected)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_axis_and_strided_input_cpu(axis, rng):
    base = rng.standard_normal((6, 7, 9))
    c = base[:, ::2, :]  # non-contiguous
    out, mask = topk_threshold(c, 3, axis=axis, return_mask=True)
    ref_out, ref_mask = reference.topk_threshold(c, 3, axis=axis)
    np.testing.assert_array_equal(mask, ref_mask)
    np.testing.assert_array_equal(out, ref_out)
    assert (mask.sum(axis=axis) == 3).all()


def test_out_and_in_place_cpu(rng):
    c = rng.standard_normal((4, 20)).astype(np.float32)
    ref_out, _ = reference.topk_threshold(c, 6)
    out = np.full_like(c, 7.0)
    res = topk_threshold(c, 6, out=out)
    assert res is out
    np.testing.assert_array_equal(out, ref_out)
    same = c.copy()
    assert topk_threshold(same, 6, out=same) is same
    np.testing.assert_array_equal(same, ref_out)
    ties = np.array([[2.0, -2.0, 1.0, 2.0, -2.0], [5.0, 5.0, 5.0, 5.0, 5.0]], np.float32)
    expected = reference.topk_threshold(ties, 2)[0]
    assert topk_threshold(ties, 2, out=ties) is ties  # in place with ties at the threshold
    np.testing.assert_array_equal(ties, expected)
    t = np.asfortranarray(c)  # out not C-contiguous: written through a temporary
    o = np.zeros_like(t)
    topk_threshold(t, 2, axis=0, out=o)
    np.testing.assert_array_equal(o, reference.topk_threshold(t, 2, axis=0)[0])


def test_in_place_cuda(backend, rng, small_launch):
    c = rng.standard_normal((3, 10))
    dc = backend.put(c)
    assert topk_threshold(dc, 4, out=dc) is dc
    np.testing.assert_array_equal(backend.get(dc), reference.topk_threshold(c, 4)[0])


@settings(max_examples=30, deadline=None)
@given(
    c=hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=40),
                 elements=st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.5, -3.0, 1e-300, 7.25e10])),
    data=st.data(),
)
def test_properties(c, data):
    n = c.shape[1]
    k = data.draw(st.integers(1, n))
    out, mask = topk_threshold(c, k, return_mask=True)
    nnz = (c != 0).sum(axis=1)
    assert ((out != 0).sum(axis=1) == np.minimum(k, nnz)).all()  # exactly min(k, nnz) survivors
    assert (mask.sum(axis=1) == k).all()
    np.testing.assert_array_equal(topk_threshold(out, k), out)  # idempotent
    np.testing.assert_array_equal(mask, reference.topk_threshold(c, k)[1])
    kept = np.where(mask, np.abs(c), np.inf).min(axis=1)
    dropped = np.where(mask, -1.0, np.abs(c)).max(axis=1)
    assert (kept >= dropped).all()


@settings(max_examples=25, deadline=None)
@given(c=hnp.arrays(np.complex64, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=30),
                    elements=st.complex_numbers(max_magnitude=1e3, allow_nan=False, allow_infinity=False, width=64)),
       data=st.data())
def test_complex_properties(c, data):
    k = data.draw(st.integers(1, c.shape[1]))
    out, mask = topk_threshold(c, k, return_mask=True)
    np.testing.assert_array_equal(mask, reference.topk_threshold(c, k)[1])
    np.testing.assert_array_equal(topk_threshold(out, k), out)


# --------------------------------------------------------------------------- bad input

def test_bad_k_and_axis():
    c = np.ones((2, 5), np.float32)
    for k in (0, -1, 6):
        with pytest.raises(ValueError, match="k must be in"):
            topk_threshold(c, k)
    for k in (1.5, True, "3", None):
        with pytest.raises(TypeError, match="k must be an integer"):
            topk_threshold(c, k)
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        topk_threshold(c, 1, axis=2)
    with pytest.raises(TypeError, match="axis must be an integer"):
        topk_threshold(c, 1, axis=1.0)
    with pytest.raises(ValueError, match="no entries along axis"):
        topk_threshold(np.ones((3, 0)), 1)
    with pytest.raises(ValueError, match="at least one dimension"):
        topk_threshold(np.array(1.0), 1)


def test_bad_dtype_and_out():
    with pytest.raises(TypeError, match="c must have dtype"):
        topk_threshold(np.ones((2, 5), np.int64), 1)
    with pytest.raises(TypeError, match="c must have dtype"):
        topk_threshold(np.ones((2, 5), np.float16), 1)
    with pytest.raises(TypeError, match="numpy array or a CUDA array"):
        topk_threshold([[1.0, 2.0]], 1)
    c = np.ones((2, 5))
    with pytest.raises(ValueError, match="out must have shape"):
        topk_threshold(c, 1, out=np.ones((5, 2)))
    with pytest.raises(TypeError, match="out must have dtype"):
        topk_threshold(c, 1, out=np.ones((2, 5), np.float32))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_rejected_and_input_untouched(backend, bad, small_launch):
    dtypes = [np.float32, np.complex128] if backend.name == "cpu" else [np.float32, np.float64]
    for dtype in dtypes:
        c = np.arange(12, dtype=dtype).reshape(3, 4)
        c[1, 2] = bad
        before = c.copy()
        dc = backend.put(c)
        with pytest.raises(ValueError, match="c must be finite"):
            topk_threshold(dc, 2)
        with pytest.raises(ValueError, match="c must be finite"):
            topk_threshold(dc, 2, out=dc)  # in place: nothing written
        np.testing.assert_array_equal(backend.get(dc), before)


def test_hermitian_partner_table():
    part = tk.hermitian_partner((4, 6))  # half spectrum (4, 4)
    half = np.arange(16).reshape(4, 4)
    # column 0 and the Nyquist column 3 pair u with -u; columns 1, 2 pair outside
    assert part[half[0, 0]] == half[0, 0] and part[half[2, 0]] == half[2, 0]
    assert part[half[1, 0]] == half[3, 0] and part[half[3, 3]] == half[1, 3]
    assert (part[half[:, 1:3].ravel()] == -1).all()
    odd = tk.hermitian_partner((5,))  # 1-D odd length: only the zero frequency self-pairs
    np.testing.assert_array_equal(odd, [0, -1, -1])


# --------------------------------------------------------------------------- real GPU

@needs_gpu
@pytest.mark.gpu
@pytest.mark.parametrize("shape,k", [((256, 784), 40), ((8, 50176), 5000), ((4, 200_000), 777)])
def test_cupy_matches_cpu_on_gpu(shape, k):
    cupy = pytest.importorskip("cupy")
    rng = np.random.default_rng(0)
    for dtype in REAL:
        c = np.round(rng.standard_normal(shape) * 8).astype(dtype)  # many ties
        out, mask = topk_threshold(cupy.asarray(c), k, return_mask=True)  # > 64K: multi-block
        ref_out, ref_mask = topk_threshold(c, k, return_mask=True)
        np.testing.assert_array_equal(cupy.asnumpy(mask), ref_mask)
        np.testing.assert_array_equal(cupy.asnumpy(out), ref_out)


@needs_gpu
@pytest.mark.gpu
def test_cupy_sparse_project_and_iht_on_gpu():
    cupy = pytest.importorskip("cupy")
    from hotops.sparse_fourier import iht, sparse_project

    x = np.random.default_rng(1).standard_normal((64, 28, 28))
    for transform in ("dct", "fft"):
        np.testing.assert_allclose(cupy.asnumpy(sparse_project(cupy.asarray(x), 40, transform)),
                                   sparse_project(x, 40, transform), atol=1e-9)
    xh, eh = iht(cupy.asarray(x), 40, 20, n_iter=5)
    xr, er = iht(x, 40, 20, n_iter=5)
    np.testing.assert_allclose(cupy.asnumpy(xh), xr, atol=1e-9)


@pytest.mark.parametrize("kind", ["normal", "ties", "constant"])
def test_short_row_select_matches_radix(kind, rng, monkeypatch):
    """Rows with k << n take cpu._group_select; same result as the radix select and the reference."""
    from hotops.kernels.topk_threshold import hermitian_threshold

    for n, k in [(784, 40), (300, 3), (1000, 1), (4096, 100)]:
        assert cpu.groups_for(n, k) > 0
        for dtype in REAL + COMPLEX:
            c = draw(rng, (6, n), dtype, kind)
            out, mask = topk_threshold(c, k, return_mask=True)
            ref_out, ref_mask = reference.topk_threshold(c, k)
            np.testing.assert_array_equal(mask, ref_mask)
            np.testing.assert_array_equal(out, ref_out)
    X = np.fft.rfft2(draw(rng, (5, 28, 28), np.float64, kind), norm="ortho")
    y, x = draw(rng, (5, 784), np.float32, kind), draw(rng, (5, 784), np.float32, "normal")
    got = [hermitian_threshold(X, kk, (28, 28)) for kk in (1, 40, 41)]
    e, z = np.empty_like(y), np.empty_like(y)
    assert not cpu.threshold_residual(y, x, 20, e, z).any()
    monkeypatch.setattr(config, "CPU_SHORT_ROW_MAX", 0)  # the radix select on the same rows
    for kk, (out, mask) in zip((1, 40, 41), got):
        ref_out, ref_mask = hermitian_threshold(X, kk, (28, 28))
        np.testing.assert_array_equal(mask, ref_mask)
        np.testing.assert_array_equal(out, ref_out)
    ref_e = topk_threshold(y - x, 20)
    np.testing.assert_array_equal(e, ref_e)
    np.testing.assert_array_equal(z, y - ref_e)


def test_out_overlapping_c_in_part(backend, rng, small_launch):
    # out = c shifted by one element: computed through a temporary, as if they were disjoint
    buf = rng.standard_normal(101)
    want = reference.topk_threshold(buf[:100].copy(), 10)[0]
    d = backend.put(buf)
    res = topk_threshold(d[:100], 10, out=d[1:])
    np.testing.assert_array_equal(backend.get(res), want)
    np.testing.assert_array_equal(backend.get(d)[1:], want)
    # a transposed view of a square matrix starts at the same address but is no alias
    sq = rng.standard_normal((6, 6))
    want = reference.topk_threshold(sq.copy(), 2)[0]
    ds = backend.put(sq)
    topk_threshold(ds, 2, out=ds.T)
    np.testing.assert_array_equal(backend.get(ds).T, want)


def test_read_only_out():
    c = np.arange(10.0)
    out = np.zeros(10)
    out.setflags(write=False)
    with pytest.raises(ValueError, match="out must be writeable"):
        topk_threshold(c, 3, out=out)
    with pytest.raises(ValueError, match="out must be writeable"):
        tk.apply_mask(c, c > 4, out=out)
    X = np.fft.rfft(c)
    outX = np.zeros_like(X)
    outX.setflags(write=False)
    with pytest.raises(ValueError, match="out must be writeable"):
        tk.hermitian_threshold(X, 3, (10,), out=outX)


def test_patch_must_hold_integers():
    y = np.zeros((14, 14))
    for patch in [(7.5, 7), ("7", "7"), (True, True), (7,), 7, "77"]:
        with pytest.raises(TypeError, match="patch must be a pair of integers"):
            tk.patchwise_iht(y, 2, 1, patch=patch)
    x, e = tk.patchwise_iht(y, 2, 1, patch=(np.int64(7), np.int32(7)))
    assert x.shape == e.shape == y.shape
