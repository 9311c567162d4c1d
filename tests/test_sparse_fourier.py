"""hotops.sparse_project / iht / patchwise_iht (Bafna et al. 2018) against dense references."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.fft as sfft
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import hotops
import hotops.sparse_fourier
import reference
from hotops.kernels import topk_threshold as tk
from hotops.kernels.topk_threshold import config, hermitian_partner, hermitian_threshold, project, transforms
from hotops.sparse_fourier import iht, patchwise_iht, project_with_mask, sparse_project

SHAPES_2D = [(1, 1), (1, 5), (4, 4), (5, 6), (7, 3), (8, 9)]


def full_count(mask, signal_shape):
    """Coefficients of the full spectrum kept by a half-spectrum mask (pairs count 2)."""
    part = hermitian_partner(tuple(signal_shape))
    m = mask.reshape(-1, part.size)
    idx = np.arange(part.size)
    cost = np.where(part < 0, 2, np.where(part == idx, 1, 1))  # in-half pairs: each member counts 1
    return (m * cost).sum(axis=1)


@pytest.mark.parametrize("shape", SHAPES_2D)
@pytest.mark.parametrize("transform", ["dct", "fft"])
def test_matches_dense_reference(shape, transform, rng):
    n = shape[0] * shape[1]
    x = rng.standard_normal((3, *shape))
    for k in sorted({1, max(1, n // 3), n}):
        y = sparse_project(x, k, transform)
        for i in range(3):
            np.testing.assert_allclose(y[i], reference.sparse_project_dense(x[i], k, transform), atol=1e-12)


@pytest.mark.parametrize("dtype,tol", [(np.float32, 2e-6), (np.float64, 1e-12)])
@pytest.mark.parametrize("transform", ["dct", "fft"])
def test_dtypes_batch_and_axes(dtype, tol, transform, rng):
    x = rng.standard_normal((2, 6, 3, 10)).astype(dtype)
    before = x.copy()
    y = sparse_project(x, 9, transform, axes=(1, 3))
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_array_equal(x, before)  # input untouched
    for a in range(2):
        for c in range(3):
            np.testing.assert_allclose(y[a, :, c, :], reference.sparse_project_dense(x[a, :, c, :].astype(np.float64),
                                                                                    9, transform), atol=tol * 10)
    y_last = sparse_project(np.moveaxis(x, 1, 2), 9, transform)
    np.testing.assert_allclose(np.moveaxis(y_last, 2, 1), y, atol=tol)


def test_fft_keeps_pairs_and_count(rng):
    x = rng.standard_normal((20, 6, 8))
    for k in (1, 2, 3, 7, 10, 48):
        y, mask = sparse_project(x, k, "fft", return_mask=True)
        assert y.dtype == np.float64  # a real signal stays real
        cnt = full_count(mask, (6, 8))
        assert ((cnt == k) | (cnt == k - 1)).all(), (k, cnt)
    # three axes, odd lengths
    x3 = rng.standard_normal((2, 3, 5, 7))
    y3 = sparse_project(x3, 11, "fft", axes=(1, 2, 3))
    X = np.fft.fftn(y3, axes=(1, 2, 3), norm="ortho")
    assert ((np.abs(X) > 1e-9).reshape(2, -1).sum(1) <= 11).all()


def test_complex_input_fft_and_dct(rng):
    z = (rng.standard_normal((3, 5, 6)) + 1j * rng.standard_normal((3, 5, 6))).astype(np.complex128)
    y = sparse_project(z, 7, "fft")
    Z = np.fft.fft2(z, norm="ortho").reshape(3, -1)
    kept, _ = reference.topk_threshold(Z, 7)
    np.testing.assert_allclose(y, np.fft.ifft2(kept.reshape(3, 5, 6), norm="ortho"), atol=1e-12)
    yd = sparse_project(z, 7, "dct")
    C = sfft.dctn(z, norm="ortho", axes=(1, 2)).reshape(3, -1)
    np.testing.assert_allclose(yd, sfft.idctn(reference.topk_threshold(C, 7)[0].reshape(3, 5, 6), norm="ortho",
                                              axes=(1, 2)), atol=1e-12)


def test_integer_input():
    img = np.arange(16, dtype=np.int32).reshape(4, 4)
    np.testing.assert_allclose(sparse_project(img, 3, "dct"), sparse_project(img.astype(np.float64), 3, "dct"))
    with pytest.raises(TypeError, match="integer dtype int32"):
        sparse_project(img, 3, "fft")


@settings(max_examples=20, deadline=None)
@given(x=hnp.arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(1, 7), st.integers(1, 7)),
                    elements=st.floats(-100, 100, allow_nan=False, width=32)),
       transform=st.sampled_from(["dct", "fft"]), data=st.data())
def test_projection_properties(x, transform, data):
    n = x.shape[1] * x.shape[2]
    k = data.draw(st.integers(1, n))
    y, mask = sparse_project(x, k, transform, return_mask=True)
    np.testing.assert_allclose(sparse_project(y, k, transform), y, atol=1e-9)  # idempotent
    np.testing.assert_allclose(project_with_mask(x, mask, transform), y, atol=1e-9)
    # orthogonal projection: the residual is orthogonal to the result, norms add up
    assert abs(np.vdot(y, x - y)) <= 1e-8 * max(1.0, np.vdot(x, x))
    # orthonormal round trip: k = n is the identity
    np.testing.assert_allclose(sparse_project(x, n, transform), x, atol=1e-9)


def test_hermitian_threshold_direct(rng):
    X = sfft.rfftn(rng.standard_normal((4, 6, 5)), axes=(1, 2), norm="ortho")
    out, mask = hermitian_threshold(X, 9, (6, 5))
    assert out.shape == X.shape and mask.dtype == np.bool_
    np.testing.assert_array_equal(out, np.where(mask, X, 0))
    with pytest.raises(ValueError, match="half-spectrum shape"):
        hermitian_threshold(X, 9, (6, 6))


# --------------------------------------------------------------------------- IHT

def planted(rng, batch, size, k, t):
    """x exactly k-sparse in the DCT (coefficients in [5, 10]), e exactly t-sparse ([3, 6])."""
    n = size * size
    X = np.zeros((batch, n))
    E = np.zeros((batch, n))
    for b in range(batch):
        X[b, rng.choice(n, k, replace=False)] = rng.uniform(5, 10, k) * rng.choice([-1, 1], k)
        E[b, rng.choice(n, t, replace=False)] = rng.uniform(3, 6, t) * rng.choice([-1, 1], t)
    x = sfft.idctn(X.reshape(batch, size, size), norm="ortho", axes=(1, 2))
    return x, E.reshape(batch, size, size)


def test_iht_recovers_planted_instances(rng):
    x, e = planted(rng, 6, 32, 8, 6)
    x_hat, e_hat, iters = iht(x + e, 8, 6, n_iter=40, tol=1e-13, return_iterations=True)
    assert np.abs(x_hat - x).max() < 1e-6
    assert np.abs(e_hat - e).max() < 1e-6
    assert iters.shape == (6,) and (iters < 40).all()  # each sample stopped early on its own
    # float32 input: same support, float32 accuracy
    xf, ef = iht((x + e).astype(np.float32), 8, 6, n_iter=40, tol=0)
    assert xf.dtype == np.float32 and np.abs(xf - x).max() < 1e-4


def test_iht_matches_dense_algorithm(rng):
    y = rng.standard_normal((2, 6, 5))
    x_hat, e_hat = iht(y, 5, 3, n_iter=4, tol=0)
    for i in range(2):
        xr, er = reference.iht_dense(y[i], 5, 3, 4)
        np.testing.assert_allclose(x_hat[i], xr, atol=1e-10)
        np.testing.assert_allclose(e_hat[i], er, atol=1e-10)


def test_iht_fft_and_batch_axes(rng):
    y = rng.standard_normal((3, 8, 2, 8))
    x_hat, e_hat = iht(y, 6, 4, n_iter=5, transform="fft", axes=(1, 3))
    assert x_hat.shape == y.shape
    assert ((e_hat != 0).sum(axis=(1, 3)) <= 4).all()
    X = np.fft.fft2(np.moveaxis(x_hat, 2, 1), norm="ortho")
    assert ((np.abs(X) > 1e-9).sum(axis=(2, 3)) <= 6).all()


def test_patchwise_iht(rng):
    x, e = planted(rng, 4, 16, 4, 2)  # four 16x16 patches per 32x32 image
    img = np.zeros((1, 32, 32))
    err = np.zeros((1, 32, 32))
    for i, (r, c) in enumerate([(0, 0), (0, 16), (16, 0), (16, 16)]):
        img[0, r:r + 16, c:c + 16] = x[i]
        err[0, r:r + 16, c:c + 16] = e[i]
    x_hat, e_hat = patchwise_iht(img + err, 4, 2, patch=(16, 16), n_iter=40, tol=1e-13)
    assert np.abs(x_hat - img).max() < 1e-6 and np.abs(e_hat - err).max() < 1e-6
    with pytest.raises(ValueError, match="dividing the image size"):
        patchwise_iht(img, 4, 2, patch=(5, 5))


def test_lazy_exports():
    assert hotops.sparse_project is sparse_project
    assert hotops.iht is iht and hotops.patchwise_iht is patchwise_iht
    c = np.array([[3.0, -1.0, 2.0]])
    np.testing.assert_array_equal(hotops.topk_threshold(c, 2), [[3.0, 0.0, 2.0]])


def test_torch_inputs():
    torch = pytest.importorskip("torch")
    y = torch.randn(2, 8, 8, dtype=torch.float64)
    x_hat, e_hat = iht(y, 5, 3, n_iter=3)
    ref_x, ref_e = iht(y.numpy(), 5, 3, n_iter=3)
    assert isinstance(x_hat, torch.Tensor)
    np.testing.assert_array_equal(x_hat.numpy(), ref_x)
    np.testing.assert_array_equal(sparse_project(y, 5).numpy(), sparse_project(y.numpy(), 5))
    # the kernel entries take arrays only and say where tensors go
    for call in (lambda: tk.sparse_project(y, 5), lambda: tk.iht(y, 5, 3), lambda: tk.patchwise_iht(y, 5, 3)):
        with pytest.raises(TypeError, match="torch tensors go through hotops.bindings"):
            call()


def test_surface_routes_arrays_to_the_kernel(rng):
    """hotops.sparse_fourier only routes: numpy results are the kernel entries' own."""
    x = rng.standard_normal((3, 9, 7))
    for transform in ("dct", "fft"):
        np.testing.assert_array_equal(sparse_project(x, 8, transform), tk.sparse_project(x, 8, transform))
        np.testing.assert_array_equal(sparse_project(x, 8, transform, axes=(0, 2)),
                                      tk.sparse_project(x, 8, transform, axes=(0, 2)))
        for a, b in zip(iht(x, 5, 2, n_iter=3, transform=transform), tk.iht(x, 5, 2, n_iter=3, transform=transform)):
            np.testing.assert_array_equal(a, b)
    assert tk.TRANSFORMS == hotops.sparse_fourier.TRANSFORMS == ("dct", "fft")


# --------------------------------------------------------------------------- bad input

def test_bad_input():
    x = np.ones((2, 4, 4))
    with pytest.raises(ValueError, match="transform must be one of"):
        sparse_project(x, 3, "wavelet")
    for k in (0, 17):
        with pytest.raises(ValueError, match=r"k must be in \[1, 16\]"):
            sparse_project(x, k)
    with pytest.raises(ValueError, match="out of range"):
        sparse_project(x, 3, axes=(1, 3))
    with pytest.raises(ValueError, match="must not repeat"):
        sparse_project(x, 3, axes=(1, -2))
    with pytest.raises(TypeError, match="numpy array"):
        sparse_project([[1.0]], 1)
    bad = x.copy()
    bad[1, 2, 2] = np.nan
    for transform in ("dct", "fft"):
        with pytest.raises(ValueError, match="x must be finite"):
            sparse_project(bad, 3, transform)
    with pytest.raises(ValueError, match="y must be finite"):
        iht(bad, 3, 2)
    with pytest.raises(ValueError, match=r"t must be in \[1, 16\]"):
        iht(x, 3, 17)
    with pytest.raises(ValueError, match="n_iter must be >= 1"):
        iht(x, 3, 2, n_iter=0)
    with pytest.raises(ValueError, match="tol must be"):
        iht(x, 3, 2, tol=-1)
    with pytest.raises(TypeError, match="y must be real"):
        iht(x.astype(np.complex128), 3, 2)
    with pytest.raises(TypeError, match="integer dtype"):
        iht(x.astype(np.int64), 3, 2, transform="fft")
    np.testing.assert_array_equal(x, np.ones((2, 4, 4)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_small_dct_matches_batched_path(dtype, rng):
    """Small images take the fused per-image kernel; same result and support as the batched
    GEMM + select + GEMM path (ties included: integer images)."""
    for x in (rng.standard_normal((40, 28, 28)), rng.integers(0, 3, (40, 28, 28)), np.zeros((3, 28, 28))):
        x = x.astype(dtype)
        for k in (1, 40, 784):
            y, mask = sparse_project(x, k, "dct", return_mask=True)
            C, ref_mask = project.select(transforms.forward(x, "dct", 2, 1, False), k, (28, 28), False)
            ref = transforms.inverse(C, "dct", (28, 28), 1, False, x.dtype)
            np.testing.assert_array_equal(mask, ref_mask)
            np.testing.assert_allclose(y, ref, atol=1e-5 if dtype == np.float32 else 1e-12)
            assert (mask.reshape(len(x), -1).sum(axis=1) == k).all()


def test_fused_small_iht_matches_iteration_loop(rng, monkeypatch):
    """Small DCT images run IHT in one fused kernel; same iterates and stops as the loop."""
    y = np.concatenate([rng.random((20, 12, 10)), rng.integers(0, 3, (4, 12, 10))]).astype(np.float64)
    fused = [iht(y, 6, 4, n_iter=n, tol=tol, return_iterations=True) for n, tol in ((7, 0), (30, 1e-9))]
    monkeypatch.setattr(config, "DCT_MATMUL_MAX", 0)  # no fused kernel, no DCT products: scipy.fft's loop
    for (n, tol), (x_f, e_f, it_f) in zip(((7, 0), (30, 1e-9)), fused):
        x_l, e_l, it_l = iht(y, 6, 4, n_iter=n, tol=tol, return_iterations=True)
        np.testing.assert_array_equal(it_f, it_l)
        np.testing.assert_allclose(x_f, x_l, atol=1e-12)
        np.testing.assert_allclose(e_f, e_l, atol=1e-12)


@pytest.mark.parametrize("dtype,tol", [(np.float32, 2e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("shape", [(28, 28), (7, 5), (6, 9), (1, 4)])
def test_fused_small_fft_matches_rfftn_path(dtype, tol, shape, rng):
    """Small real images take the fused per-image DFT (real products); same support as the
    rfftn + select + irfftn path and its values to rounding."""
    h, w = shape
    x = rng.standard_normal((30, h, w)).astype(dtype)
    for k in sorted({1, 2, min(7, h * w), min(40, h * w), h * w // 3 + 1, h * w}):  # 40: the estimated-threshold select
        y, mask = sparse_project(x, k, "fft", return_mask=True)
        C, ref_mask = project.select(transforms.forward(x, "fft", 2, 1, True), k, shape, True)
        ref = transforms.inverse(C, "fft", shape, 1, True, x.dtype)
        np.testing.assert_array_equal(mask, ref_mask)
        np.testing.assert_allclose(y, ref, atol=tol)
        assert y.dtype == dtype


@pytest.mark.parametrize("transform", ["dct", "fft"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_small_without_mask_same_values(transform, dtype, rng):
    """The fused small-image kernels skip the mask when it is not asked for (and the default
    axes take a shortcut past the generic validation): same values as with the mask, also
    for non-contiguous input and for k past the short-row select."""
    x = rng.standard_normal((9, 12, 10)).astype(dtype)
    for xin in (x, x[:, ::-1, :]):
        for k in (1, 13, 40, 120):
            y, _mask = sparse_project(xin, k, transform, return_mask=True)
            np.testing.assert_array_equal(sparse_project(xin, k, transform), y)
            np.testing.assert_array_equal(sparse_project(xin, k, transform, axes=(1, 2)), y)
