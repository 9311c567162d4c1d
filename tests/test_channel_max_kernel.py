"""hotops.kernels.channel_max: the Numba CPU kernel and its numba.cuda twin, same tests."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import reference
from hotops.kernels import channel_max as cm
from hotops.kernels import simulator_enabled
from hotops.kernels.channel_max import config

SHAPES = [(1, 1, 1, 1), (1, 3, 1, 1), (2, 3, 5, 7), (3, 1, 4, 4), (1, 5, 17, 3), (2, 64, 9, 11), (4, 3, 33, 65)]


def sized_for(backend, shape):
    """The simulator runs one Python thread per CUDA thread: keep its inputs small."""
    if backend.name == "cuda" and simulator_enabled() and shape[0] * shape[2] * shape[3] > 600:
        pytest.skip("shape too large for the CUDA simulator (runs on a real GPU)")


def dtypes_for(backend):
    return [np.float32, np.float64] + ([np.float16] if backend.name == "cuda" else [])


@pytest.fixture
def small_chunks(monkeypatch):
    # Exercise the multi-chunk / multi-block paths on small inputs.
    monkeypatch.setattr(config, "CPU_CHUNK", 7)
    monkeypatch.setattr(config, "CUDA_THREADS", 32)


@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_reference(backend, shape, rng, small_chunks):
    sized_for(backend, shape)
    for dtype in dtypes_for(backend):
        g = rng.standard_normal(shape).astype(dtype)
        m, arg = cm.channel_max_abs(backend.put(g), return_argmax=True)
        m, arg = backend.get(m), backend.get(arg)
        assert m.dtype == dtype and m.shape == (shape[0], shape[2], shape[3])
        # |x| and max are exact in any precision: compare bit for bit with the float64 reference.
        np.testing.assert_array_equal(m.astype(np.float64), reference.channel_max_abs(g))
        assert arg.dtype == np.int32
        np.testing.assert_array_equal(arg, reference.channel_max_abs_argmax(g))
        np.testing.assert_array_equal(backend.get(cm.channel_max_abs(backend.put(g))), m)


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 4, 16, 16)])
def test_non_contiguous_input_is_read_in_place(backend, shape, rng):
    n, c, h, w = shape
    base = rng.standard_normal((n, h, w, c)).astype(np.float32)  # channels-last memory
    expected = reference.channel_max_abs(base.transpose(0, 3, 1, 2))
    g = backend.put(base).transpose((0, 3, 1, 2)) if backend.name == "cuda" else base.transpose(0, 3, 1, 2)
    m, arg = cm.channel_max_abs(g, return_argmax=True)
    np.testing.assert_array_equal(backend.get(m), expected)
    np.testing.assert_array_equal(backend.get(arg), reference.channel_max_abs_argmax(base.transpose(0, 3, 1, 2)))
    # strided slice along channels and width
    big = rng.standard_normal((2, 6, 5, 12))
    sl = big[:, ::2, :, 1::3]
    got = cm.channel_max_abs(backend.put(np.ascontiguousarray(big))[:, ::2, :, 1::3] if backend.name == "cuda" else sl)
    np.testing.assert_array_equal(backend.get(got), reference.channel_max_abs(sl))


def test_nan_propagates_and_first_nan_wins(backend):
    g = np.array([[[[1.0, -3.0]], [[np.nan, 2.0]], [[np.nan, -np.inf]]]], dtype=np.float32)  # (1, 3, 1, 2)
    m, arg = cm.channel_max_abs(backend.put(g), return_argmax=True)
    m, arg = backend.get(m), backend.get(arg)
    assert np.isnan(m[0, 0, 0]) and arg[0, 0, 0] == 1
    assert m[0, 0, 1] == np.inf and arg[0, 0, 1] == 2


def test_ties_keep_lowest_channel(backend):
    g = np.array([[[[2.0]], [[-2.0]], [[2.0]]]], dtype=np.float64)
    m, arg = cm.channel_max_abs(backend.put(g), return_argmax=True)
    assert backend.get(m)[0, 0, 0] == 2.0 and backend.get(arg)[0, 0, 0] == 0
    grad = backend.get(cm.channel_max_abs_backward(backend.put(np.ones((1, 1, 1))), backend.put(g), m))
    np.testing.assert_array_equal(grad.ravel(), [1.0, 0.0, 0.0])


@pytest.mark.parametrize("shape", SHAPES)
def test_backward_matches_reference(backend, shape, rng):
    sized_for(backend, shape)
    for dtype in dtypes_for(backend):
        g = rng.standard_normal(shape).astype(dtype)
        g[..., 0, 0] = 0.0  # sign(0) = 0 on some winners (all channels zero at this pixel)
        go = rng.standard_normal((shape[0], shape[2], shape[3])).astype(dtype)
        dg, dgo = backend.put(g), backend.put(go)
        m = cm.channel_max_abs(dg)
        grad = backend.get(cm.channel_max_abs_backward(dgo, dg, m))
        assert grad.dtype == dtype
        np.testing.assert_array_equal(grad.astype(np.float64), reference.channel_max_abs_backward(go, g))


def test_backward_nan_goes_to_first_nan_channel(backend):
    g = np.array([[[[1.0]], [[np.nan]], [[np.nan]]]], dtype=np.float64)
    m = cm.channel_max_abs(backend.put(g))
    grad = backend.get(cm.channel_max_abs_backward(backend.put(np.full((1, 1, 1), 5.0)), backend.put(g), m))
    assert grad[0, 0, 0, 0] == 0 and np.isnan(grad[0, 1, 0, 0]) and grad[0, 2, 0, 0] == 0


def test_out_argument_is_filled(backend, rng):
    g = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    out = backend.put(np.full((2, 4, 5), -1, np.float32))
    arg = backend.put(np.full((2, 4, 5), -1, np.int32))
    res = cm.channel_max_abs(backend.put(g), out=out, argmax=arg)
    assert res[0] is out and res[1] is arg
    np.testing.assert_array_equal(backend.get(out), reference.channel_max_abs(g))


@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (2, 3, 0, 4), (2, 3, 4, 0)])
def test_empty_batch_or_image_gives_empty_output(backend, shape):
    g = np.zeros(shape, np.float32)
    m = cm.channel_max_abs(backend.put(g))
    assert tuple(m.shape) == (shape[0], shape[2], shape[3])


# --- bad input: clear errors naming the argument, caller's arrays untouched -------------


@pytest.mark.parametrize(
    "g, exc, match",
    [
        (np.zeros((3, 4, 4), np.float32), ValueError, r"g must have 4 dimensions"),
        (np.zeros((1, 3, 4, 4, 1), np.float32), ValueError, r"g must have 4 dimensions"),
        (np.zeros((1, 3, 4, 4), np.int32), TypeError, r"g must have dtype .*got int32"),
        (np.zeros((1, 3, 4, 4), np.float16), TypeError, r"g must have dtype float32, float64; got float16"),
        (np.zeros((1, 0, 4, 4), np.float32), ValueError, r"at least one channel"),
        ([[[[1.0]]]], TypeError, r"g must be a numpy array or a CUDA array"),
    ],
)
def test_bad_input_raises_naming_argument(g, exc, match):
    before = np.array(g, copy=True)
    with pytest.raises(exc, match=match):
        cm.channel_max_abs(g)
    np.testing.assert_array_equal(np.asarray(g), before)


def test_bad_out_arguments():
    g = np.ones((1, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"out must have shape \(1, 3, 3\)"):
        cm.channel_max_abs(g, out=np.empty((1, 3, 4), np.float32))
    with pytest.raises(TypeError, match=r"out must have dtype float32, got float64"):
        cm.channel_max_abs(g, out=np.empty((1, 3, 3)))
    with pytest.raises(TypeError, match=r"argmax must have dtype int32"):
        cm.channel_max_abs(g, argmax=np.empty((1, 3, 3), np.int64))
    with pytest.raises(ValueError, match=r"out must be C-contiguous"):
        cm.channel_max_abs(g, out=np.empty((1, 3, 6), np.float32)[:, :, ::2])


def test_backward_bad_input():
    g = np.ones((1, 2, 3, 3), np.float32)
    m = cm.channel_max_abs(g)
    with pytest.raises(ValueError, match=r"grad_out must have shape"):
        cm.channel_max_abs_backward(np.ones((1, 3, 4), np.float32), g, m)
    with pytest.raises(TypeError, match=r"grad_out must have dtype float32"):
        cm.channel_max_abs_backward(np.ones((1, 3, 3)), g, m)
    with pytest.raises(TypeError, match=r"m must have dtype float32"):
        cm.channel_max_abs_backward(np.ones((1, 3, 3), np.float32), g, m.astype(np.float64))


@pytest.mark.cudasim
def test_mixed_devices_raise_type_error_naming_arguments():
    from hotops.kernels import cuda_available

    if not cuda_available():
        pytest.skip("needs CUDA arrays (a GPU or NUMBA_ENABLE_CUDASIM=1)")
    from numba import cuda

    g = cuda.to_device(np.ones((1, 2, 3, 3), np.float32))
    with pytest.raises(TypeError, match=r"different devices: g on cuda, out on cpu"):
        cm.channel_max_abs(g, out=np.empty((1, 3, 3), np.float32))


# --- invariants as properties -----------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=4, max_dims=4, min_side=1, max_side=6),
        elements=st.floats(-1e6, 1e6, allow_nan=False),
    )
)
def test_property_max_dominates_and_is_attained(g):
    m, arg = cm.channel_max_abs(g, return_argmax=True)
    a = np.abs(g)
    assert np.all(m[:, None] >= a)
    np.testing.assert_array_equal(np.take_along_axis(a, arg[:, None].astype(np.intp), 1)[:, 0], m)
    before = np.arange(g.shape[1])[None, :, None, None] < arg[:, None]  # channels before the winner
    assert np.all(a[before] < np.broadcast_to(m[:, None], a.shape)[before])


def test_outputs_sharing_memory_with_g(backend, rng):
    # computed through a temporary, as if out and g were disjoint
    g = rng.standard_normal((2, 3, 4, 5))
    want = reference.channel_max_abs(g)
    d = backend.put(g.copy())
    out = d.reshape(120)[7:47].reshape(2, 4, 5)  # inside g's memory
    res = cm.channel_max_abs(d, out=out)
    np.testing.assert_array_equal(backend.get(res), want)
    want_grad = reference.channel_max_abs_backward(np.ones_like(want), g)
    d = backend.put(g.copy())
    cm.channel_max_abs_backward(backend.put(np.ones_like(want)), d, backend.put(want), out=d)  # over g itself
    np.testing.assert_array_equal(backend.get(d), want_grad)


def test_read_only_and_shared_outputs():
    g = np.random.default_rng(0).standard_normal((1, 2, 3, 3))
    out = np.empty((1, 3, 3))
    out.setflags(write=False)
    with pytest.raises(ValueError, match="out must be writeable"):
        cm.channel_max_abs(g, out=out)
    both = np.empty(9, np.int32)
    with pytest.raises(ValueError, match="out and argmax must not share memory"):
        cm.channel_max_abs(g.astype(np.float32), out=both.view(np.float32).reshape(1, 3, 3),
                           argmax=both.reshape(1, 3, 3))
