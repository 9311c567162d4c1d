"""hotops.kernels.resize: MATLAB-exact bicubic imresize, Numba CPU kernel and numba.cuda twin."""
from __future__ import annotations


import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import reference
from _support import data_path, needs_data
from hotops.kernels import resize as rz
from hotops.kernels import simulator_enabled
from hotops.kernels.resize import config


MATLAB_DIR = data_path("matlab_imresize")
needs_matlab = needs_data("matlab_imresize")

_square = np.arange(64, dtype=np.float64).reshape(8, 8)
_small = np.arange(16, dtype=np.float64).reshape(4, 4)
_m15 = np.arange(225, dtype=np.float64).reshape(15, 15)
_topleft = np.zeros((4, 4))
_topleft[0, 0], _topleft[1, 0], _topleft[0, 1], _topleft[0, 3] = 100, 10, 1, 100

MATLAB_CASES = {
    "down_down_x2_aa": (_square, (4, 4), True),
    "down_down_x3_aa": (_m15, (5, 5), True),
    "down_down_x4_aa": (_square, (2, 2), True),
    "down_down_irregular_aa": (_square, (5, 7), True),
    "down_down_small_noaa": (_small, (3, 3), False),
    "up_up_topleft_noaa": (_topleft, (5, 5), False),
}


def sized_for(backend, n_out_elements: int):
    """The simulator runs one Python thread per CUDA thread: keep its inputs small."""
    if backend.name == "cuda" and simulator_enabled() and n_out_elements > 2500:
        pytest.skip("too large for the CUDA simulator (runs on a real GPU)")


@pytest.fixture
def small_tasks(monkeypatch):
    # many CPU tasks and partial tiles (uneven splits), several CUDA blocks
    monkeypatch.setattr(config, "CPU_TASKS_PER_THREAD", 7)
    monkeypatch.setattr(config, "CPU_TILE_ROWS", 3)
    monkeypatch.setattr(config, "CPU_TILE_INNER", 5)
    monkeypatch.setattr(config, "CPU_TRANSPOSE_BLOCK", 4)
    monkeypatch.setattr(config, "CUDA_THREADS", 32)


# --- the MATLAB files -----------------------------------------------------------------------


@needs_matlab
@pytest.mark.parametrize("name", sorted(MATLAB_CASES))
def test_matches_matlab_files(backend, name):
    from scipy.io import loadmat

    x, shape, aa = MATLAB_CASES[name]
    expected = loadmat(str(MATLAB_DIR / f"{name}.mat"))[name]
    assert expected.shape == shape
    got = backend.get(rz.imresize(backend.put(x), output_shape=shape, antialias=aa))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)
    # every layout resizes H and W the same way
    hwc = backend.get(rz.imresize(backend.put(np.stack([x, 2 * x], axis=-1)), output_shape=shape, antialias=aa))
    np.testing.assert_allclose(hwc[..., 0], expected, rtol=0, atol=1e-10)
    np.testing.assert_allclose(hwc[..., 1], 2 * expected, rtol=0, atol=2e-10)
    nchw = backend.get(rz.imresize(backend.put(np.stack([x, -x])[:, None]), output_shape=shape, antialias=aa))
    np.testing.assert_allclose(nchw[0, 0], expected, rtol=0, atol=1e-10)
    np.testing.assert_allclose(nchw[1, 0], -expected, rtol=0, atol=1e-10)


@needs_matlab
def test_matlab_file_via_scale_factor_matches_too():
    from scipy.io import loadmat

    # imresize(square, 0.5) and imresize(m15, 1/3): same sizes and, here, the same scales
    for name, scale in (("down_down_x2_aa", 0.5), ("down_down_x4_aa", 0.25), ("down_down_x3_aa", 1 / 3)):
        x = MATLAB_CASES[name][0]
        np.testing.assert_allclose(rz.imresize(x, scale), loadmat(str(MATLAB_DIR / f"{name}.mat"))[name], atol=1e-10)


def test_table_matches_matlab_contributions():
    for n_in, n_out, scale, aa in [(8, 4, 0.5, True), (4, 3, 0.75, False), (5, 17, 17 / 5, True), (1, 3, 3.0, True)]:
        table = rz.axis_table(n_in, n_out, scale, aa)
        dense = np.zeros((n_out, n_in))
        np.add.at(dense, (np.repeat(np.arange(n_out), table.indices.shape[1]), table.indices.ravel()), table.weights.ravel())
        np.testing.assert_allclose(dense, reference.imresize_matrix(n_in, n_out, scale, aa), rtol=0, atol=1e-15)
        np.testing.assert_allclose(table.weights.sum(1), 1.0, rtol=0, atol=1e-15)


def test_tables_are_cached_and_read_only():
    a = rz.axis_table(37, 12, 1 / 3, True)
    assert rz.axis_table(37, 12, 1 / 3, True) is a
    assert not a.weights.flags.writeable and not a.indices.flags.writeable
    with pytest.raises(ValueError):
        a.weights[0, 0] = 1.0
    assert rz.axis_table(5, 5, 1.0, True).identity
    assert not rz.axis_table(5, 5, 1.0, True).indices.flags.writeable


# --- against the slow reference --------------------------------------------------------------

CASES = [
    ((9, 7), dict(scale=0.5)),
    ((9, 7), dict(scale=2.0)),
    ((10, 11, 3), dict(scale=1 / 3)),
    ((2, 3, 9, 7), dict(scale=0.25)),
    ((2, 1, 12, 8), dict(scale=(0.7, 1.6))),
    ((5, 6, 2), dict(output_shape=(13, 4))),
    ((1, 2, 7, 9), dict(output_shape=(7, 3))),
    ((3, 11), dict(scale=3.0)),
    ((16, 16), dict(scale=0.3)),
    ((1, 1), dict(scale=4.0)),
    ((2, 2), dict(scale=0.5)),
    ((1, 5), dict(output_shape=(3, 2))),
]


@pytest.mark.parametrize("antialias", [True, False], ids=["aa", "noaa"])
@pytest.mark.parametrize("shape, kw", CASES, ids=[f"{s}-{list(k.values())[0]}" for s, k in CASES])
def test_matches_reference(backend, shape, kw, antialias, rng, small_tasks):
    x = rng.standard_normal(shape) * 40 + 100
    expected = reference.imresize_matlab(x, antialias=antialias, **kw)
    sized_for(backend, expected.size)
    got = backend.get(rz.imresize(backend.put(x), antialias=antialias, **kw))
    assert got.dtype == np.float64 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-11)
    got32 = backend.get(rz.imresize(backend.put(x.astype(np.float32)), antialias=antialias, **kw))
    assert got32.dtype == np.float32
    # two float32 roundings (one per pass) of values ~ 100-200
    np.testing.assert_allclose(got32, expected, rtol=2e-6, atol=1e-4)


@pytest.mark.parametrize("antialias", [True, False], ids=["aa", "noaa"])
@pytest.mark.parametrize("shape, kw", CASES[:8], ids=[f"{s}-{list(k.values())[0]}" for s, k in CASES[:8]])
def test_uint8_rounds_and_saturates_like_matlab(backend, shape, kw, antialias, rng, small_tasks):
    # hard edges make the bicubic overshoot past 0 and 255: saturation is exercised
    x = np.where(rng.random(shape) < 0.5, 0, 255).astype(np.uint8)
    x.flat[::3] = rng.integers(0, 256, x.flat[::3].size)
    expected = reference.imresize_matlab(x, antialias=antialias, **kw)
    sized_for(backend, expected.size)
    got = backend.get(rz.imresize(backend.put(x), antialias=antialias, **kw))
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got.astype(np.float64), expected)


def test_uint8_half_way_values_round_away_from_zero():
    # a column of 0, 1, 0, 1, ... shrunk 2x with antialias gives exact .5 values in the interior
    x = np.tile(np.array([[10], [11]], np.uint8), (8, 4))
    got = rz.imresize(x, output_shape=(8, 4))
    expected = reference.imresize_matlab(x, output_shape=(8, 4))
    np.testing.assert_array_equal(got, expected)
    assert np.all(got[2:-2] == 11)  # 10.5 -> 11


def test_layouts_resize_the_same_axes(rng):
    img = rng.random((11, 9, 3))
    per_channel = np.stack([rz.imresize(img[..., c], 0.5) for c in range(3)], axis=-1)
    np.testing.assert_array_equal(rz.imresize(img, 0.5), per_channel)
    batch = rng.random((2, 3, 11, 9))
    per_image = np.stack([[rz.imresize(batch[n, c], 0.5) for c in range(3)] for n in range(2)])
    np.testing.assert_array_equal(rz.imresize(batch, 0.5), per_image)


def test_non_contiguous_input_and_out_argument(backend, rng):
    base = rng.random((3, 12, 10))
    x = base.transpose(1, 2, 0)  # (H, W, C) view, not contiguous
    expected = reference.imresize_matlab(x, scale=0.5)
    if backend.name == "cuda":
        dx = backend.put(base).transpose((1, 2, 0))
    else:
        dx = x
    out = backend.put(np.full(expected.shape, -1.0))
    res = rz.imresize(dx, 0.5, out=out)
    assert res is out
    np.testing.assert_allclose(backend.get(out), expected, atol=1e-12)
    np.testing.assert_array_equal(x, base.transpose(1, 2, 0))  # input untouched


def test_scale_one_is_an_exact_copy(backend, rng):
    x = rng.random((2, 2, 5, 6)).astype(np.float32)
    got = rz.imresize(backend.put(x), 1.0)
    np.testing.assert_array_equal(backend.get(got), x)
    u = rng.integers(0, 256, (5, 6, 3)).astype(np.uint8)
    np.testing.assert_array_equal(backend.get(rz.imresize(backend.put(u), output_shape=(5, 6))), u)
    # one axis identity: only the other axis is resampled
    np.testing.assert_allclose(
        backend.get(rz.imresize(backend.put(x), output_shape=(5, 3))), reference.imresize_matlab(x, output_shape=(5, 3)), atol=1e-5
    )


def test_tiny_images_mirror_like_matlab(backend):
    one = np.array([[7.0]])
    np.testing.assert_allclose(backend.get(rz.imresize(backend.put(one), 3.0)), np.full((3, 3), 7.0), atol=1e-13)
    np.testing.assert_allclose(backend.get(rz.imresize(backend.put(one), 0.5)), [[7.0]], atol=1e-13)
    two = np.array([[0.0, 1.0], [2.0, 3.0]])
    # 2x2 -> 1x1 with the 10-tap antialiased kernel: indices reflect several times
    np.testing.assert_allclose(backend.get(rz.imresize(backend.put(two), 0.5)), reference.imresize_matlab(two, 0.5), atol=1e-13)
    row = np.arange(5.0)[None, :]
    np.testing.assert_allclose(
        backend.get(rz.imresize(backend.put(row), output_shape=(4, 2))), reference.imresize_matlab(row, output_shape=(4, 2)), atol=1e-12
    )


@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (2, 0, 4, 4)])
def test_empty_batch_or_channels(backend, shape):
    out = rz.imresize(backend.put(np.zeros(shape)), 2.0)
    assert tuple(out.shape) == (shape[0], shape[1], 8, 8)


def test_output_size_rule_is_matlab_ceil():
    assert rz.resize_plan((15, 15), 1 / 3).out_hw == (5, 5)
    assert rz.resize_plan((7, 9), 0.5).out_hw == (4, 5)
    assert rz.resize_plan((50, 50), 1.1).out_hw == (56, 56)  # 1.1 * 50 = 55.00000000000001 in float64, as in MATLAB
    plan = rz.resize_plan((15, 8), 0.5)
    assert plan.scales == (0.5, 0.5)  # the given scale, not out / in
    assert rz.resize_plan((8, 8), output_shape=(5, 7)).scales == (5 / 8, 7 / 8)
    assert rz.resize_plan((8, 8), output_shape=(5, 7)).order == (0, 1)
    assert rz.resize_plan((8, 8), output_shape=(7, 5)).order == (1, 0)


# --- the transposed resampling (autograd backward) -------------------------------------------


@pytest.mark.parametrize(
    "shape, kw",
    [((9, 7), dict(scale=0.5)), ((2, 3, 5, 4), dict(scale=2.0)), ((8, 6, 2), dict(output_shape=(3, 11))), ((2, 2), dict(scale=0.5))],
)
@pytest.mark.parametrize("antialias", [True, False], ids=["aa", "noaa"])
def test_transpose_is_the_adjoint(backend, shape, kw, antialias, rng, small_tasks):
    x = rng.standard_normal(shape)
    y = reference.imresize_matlab(x, antialias=antialias, **kw)
    g = rng.standard_normal(y.shape)
    ah, aw = (2, 3) if len(shape) == 4 else (0, 1)
    hw = (shape[ah], shape[aw])
    gt = backend.get(rz.imresize_transpose(backend.put(g), hw, antialias=antialias, **kw))
    assert gt.shape == x.shape
    np.testing.assert_allclose(gt, reference.imresize_transpose_dense(g, hw, antialias=antialias, **kw), atol=1e-12)
    # <A x, g> == <x, A^T g>
    np.testing.assert_allclose(np.vdot(y, g), np.vdot(x, gt), rtol=1e-12)
    gt32 = backend.get(rz.imresize_transpose(backend.put(g.astype(np.float32)), hw, antialias=antialias, **kw))
    assert gt32.dtype == np.float32
    np.testing.assert_allclose(gt32, gt, rtol=1e-5, atol=1e-5)


def test_transpose_rejects_uint8_and_wrong_shape():
    with pytest.raises(TypeError, match=r"g must have dtype float32, float64; got uint8"):
        rz.imresize_transpose(np.zeros((4, 4), np.uint8), (8, 8), 0.5)
    with pytest.raises(ValueError, match=r"g has height x width \(5, 4\), expected \(4, 4\)"):
        rz.imresize_transpose(np.zeros((5, 4)), (8, 8), 0.5)
    with pytest.raises(TypeError, match=r"input_shape must be a pair"):
        rz.imresize_transpose(np.zeros((4, 4)), 8, 0.5)


# --- bad input: clear errors naming the argument, caller's arrays untouched -------------------


@pytest.mark.parametrize(
    "x, kw, exc, match",
    [
        (np.ones((4, 4)), dict(scale=0.0), ValueError, r"scale must be positive"),
        (np.ones((4, 4)), dict(scale=-2), ValueError, r"scale must be positive"),
        (np.ones((4, 4)), dict(scale=float("nan")), ValueError, r"scale must be positive and finite"),
        (np.ones((4, 4)), dict(scale=float("inf")), ValueError, r"scale must be positive and finite"),
        (np.ones((4, 4)), dict(scale="2"), TypeError, r"scale must be a number"),
        (np.ones((4, 4)), dict(scale=(1, 2, 3)), TypeError, r"scale must be a number or a pair"),
        (np.ones((4, 4)), dict(output_shape=(0, 3)), ValueError, r"output_shape must be positive, got \(0, 3\)"),
        (np.ones((4, 4)), dict(output_shape=(3, -1)), ValueError, r"output_shape must be positive"),
        (np.ones((4, 4)), dict(output_shape=(3.0, 2)), TypeError, r"output_shape must hold integers"),
        (np.ones((4, 4)), dict(output_shape=5), TypeError, r"output_shape must be a pair"),
        (np.ones((4, 4)), dict(), ValueError, r"exactly one of scale and output_shape"),
        (np.ones((4, 4)), dict(scale=2, output_shape=(8, 8)), ValueError, r"exactly one of scale and output_shape"),
        (np.ones((4, 4)), dict(scale=2, antialias="yes"), TypeError, r"antialias must be a bool"),
        (np.ones(4), dict(scale=2), ValueError, r"x must have 2, 3 or 4 dimensions"),
        (np.ones((1, 1, 1, 4, 4)), dict(scale=2), ValueError, r"x must have 2, 3 or 4 dimensions"),
        (np.ones((0, 4)), dict(scale=2), ValueError, r"non-empty height and width"),
        (np.ones((1, 3, 4, 0)), dict(scale=2), ValueError, r"non-empty height and width"),
        (np.ones((4, 4), np.int32), dict(scale=2), TypeError, r"x must have dtype float32, float64, uint8; got int32"),
        (np.ones((4, 4), np.float16), dict(scale=2), TypeError, r"x must have dtype .*got float16"),
        ([[1.0, 2.0]], dict(scale=2), TypeError, r"x must be a numpy array or a CUDA array"),
    ],
)
def test_bad_input_raises_naming_argument(x, kw, exc, match):
    before = np.array(x, copy=True)
    with pytest.raises(exc, match=match):
        rz.imresize(x, **kw)
    np.testing.assert_array_equal(np.asarray(x), before)


@pytest.mark.filterwarnings("ignore:invalid value encountered")  # the simulator's inf - inf
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_pixels_raise(backend, bad):
    x = np.ones((2, 1, 6, 5), np.float32)
    x[1, 0, 5, 4] = bad
    with pytest.raises(ValueError, match=r"x contains NaN or infinite values"):
        rz.imresize(backend.put(x), 0.5)
    # the check can be skipped; NaN/inf then propagate through the weights
    y = backend.get(rz.imresize(backend.put(x), 2.0, check_finite=False))
    assert not np.isfinite(y[1]).all() and np.isfinite(y[0]).all()


def test_bad_out_argument():
    x = np.ones((6, 6), np.float32)
    with pytest.raises(ValueError, match=r"out must have shape \(3, 3\)"):
        rz.imresize(x, 0.5, out=np.empty((3, 4), np.float32))
    with pytest.raises(TypeError, match=r"out must have dtype float32, got float64"):
        rz.imresize(x, 0.5, out=np.empty((3, 3)))
    with pytest.raises(ValueError, match=r"out must be C-contiguous"):
        rz.imresize(x, 0.5, out=np.empty((3, 6), np.float32)[:, ::2])


@pytest.mark.cudasim
def test_mixed_devices_raise_type_error_naming_arguments():
    from hotops.kernels import cuda_available

    if not cuda_available():
        pytest.skip("needs CUDA arrays (a GPU or NUMBA_ENABLE_CUDASIM=1)")
    from numba import cuda

    x = cuda.to_device(np.ones((4, 4)))
    with pytest.raises(TypeError, match=r"different devices: x on cuda, out on cpu"):
        rz.imresize(x, 0.5, out=np.empty((2, 2)))


# --- invariants as properties ------------------------------------------------------------------

scales = st.sampled_from([0.25, 1 / 3, 0.5, 0.6, 0.75, 1.5, 2.0, 3.0, 4.0])


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(1, 24),
    w=st.integers(1, 24),
    c=st.floats(-1e3, 1e3, allow_nan=False),
    scale=scales,
    antialias=st.booleans(),
)
def test_property_constant_stays_constant(h, w, c, scale, antialias):
    x = np.full((h, w), c)
    y = rz.imresize(x, scale, antialias=antialias)
    np.testing.assert_allclose(y, c, rtol=0, atol=1e-12 * max(1.0, abs(c)))
    u = rz.imresize(np.full((h, w, 2), int(abs(c)) % 256, np.uint8), scale, antialias=antialias)
    assert np.all(u == int(abs(c)) % 256)


@settings(max_examples=40, deadline=None)
@given(
    xy=hnp.arrays(np.float64, st.tuples(st.just(2), st.integers(1, 16), st.integers(1, 16)), elements=st.floats(-100, 100)),
    a=st.floats(-3, 3),
    b=st.floats(-3, 3),
    scale=scales,
    antialias=st.booleans(),
)
def test_property_linear(xy, a, b, scale, antialias):
    x, y = xy
    lhs = rz.imresize(a * x + b * y, scale, antialias=antialias)
    rhs = a * rz.imresize(x, scale, antialias=antialias) + b * rz.imresize(y, scale, antialias=antialias)
    np.testing.assert_allclose(lhs, rhs, rtol=0, atol=1e-10)


@settings(max_examples=30, deadline=None)
@given(
    s=st.integers(2, 4),
    h=st.integers(7, 18),
    w=st.integers(7, 18),
    coef=st.tuples(st.floats(-5, 5), st.floats(-5, 5), st.floats(-5, 5)),
)
def test_property_down_of_up_by_integer_factor_keeps_affine_images_inside(s, h, w, coef):
    """Up by an integer s, then down by 1/s (antialiased): pixel centres line up again
    (x -> x/s + (1 - 1/s)/2 -> back to x) and both kernels reproduce affine functions, so an
    affine image comes back exactly, except within 3 pixels of the border (mirroring there
    is not affine). A general image comes back low-passed, not restored."""
    a0, ah, aw = coef
    x = a0 + ah * np.arange(h)[:, None] + aw * np.arange(w)[None, :]
    back = rz.imresize(rz.imresize(x, float(s)), 1.0 / s)
    assert back.shape == x.shape
    np.testing.assert_allclose(back[3:-3, 3:-3], x[3:-3, 3:-3], rtol=0, atol=1e-9)


def test_down_of_up_is_a_smoothing_not_the_identity(rng):
    x = rng.random((20, 20))
    back = rz.imresize(rz.imresize(x, 2.0), 0.5)
    err = np.abs(back - x)[3:-3, 3:-3]
    assert 1e-3 < err.max() < 0.5
    assert back.std() < x.std()  # energy of the highest frequencies is damped


# --- the per-thread workspace of the CPU kernel ---------------------------------------------


def test_workspace_reuse_never_aliases_results(rng, monkeypatch):
    # intermediates are reused across calls: earlier results must stay intact, sizes may
    # shrink and grow, and buffers above the cap are allocated per call
    a = rng.random((40, 30, 3)).astype(np.float32)
    b = rng.random((70, 90, 3)).astype(np.float32)
    ya = rz.imresize(a, 0.5)
    ya_copy = ya.copy()
    yb = rz.imresize(b, 1 / 3)
    rz.imresize(rng.random((9, 11, 3)).astype(np.float32), 2.0)
    np.testing.assert_array_equal(ya, ya_copy)
    np.testing.assert_allclose(yb, reference.imresize_matlab(b, 1 / 3), atol=1e-6)
    monkeypatch.setattr(config, "CPU_WORKSPACE_MAX_BYTES", 64)  # everything over the cap
    np.testing.assert_array_equal(rz.imresize(a, 0.5), ya_copy)


def test_workspace_is_per_thread(rng):
    from concurrent.futures import ThreadPoolExecutor

    images = [rng.random((60 + 7 * i, 50 + 5 * i, 3)) for i in range(6)]
    expected = [rz.imresize(x, 0.5) for x in images]
    with ThreadPoolExecutor(3) as pool:
        for _ in range(3):
            got = list(pool.map(lambda x: rz.imresize(x, 0.5), images))
            for g, e in zip(got, expected):
                np.testing.assert_array_equal(g, e)


def test_out_sharing_memory_with_x(backend, rng):
    # computed through a temporary, as if out and x were disjoint
    x = rng.random((2, 3, 16, 16))
    want = rz.imresize(x.copy(), 0.5)
    buf = np.zeros(x.size + 64)
    buf[: x.size] = x.ravel()
    d = backend.put(buf)
    dx = d[: x.size].reshape(x.shape)
    out = d[40 : 40 + want.size].reshape(want.shape)
    rz.imresize(dx, 0.5, out=out)
    np.testing.assert_array_equal(backend.get(out), want)


def test_read_only_out():
    out = np.empty((4, 4))
    out.setflags(write=False)
    with pytest.raises(ValueError, match="out must be writeable"):
        rz.imresize(np.ones((8, 8)), 0.5, out=out)
