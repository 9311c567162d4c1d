"""MATLAB rgb2ycbcr/ycbcr2rgb, PSNR and SSIM of the SR protocol, and the protocol end to end."""
from __future__ import annotations


import numpy as np
import pytest

import reference
from _support import data_path, needs_data, tol
from hotops.kernels.resize import imresize, psnr, rgb2ycbcr, ssim, ycbcr2rgb


SET5 = data_path("sr", "set5")


# --- colour ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rgb2ycbcr_float_matches_matlab_formula(dtype, rng):
    rgb = rng.random((7, 5, 3)).astype(dtype)
    got = rgb2ycbcr(rgb)
    assert got.dtype == dtype and got.shape == rgb.shape
    np.testing.assert_allclose(got, reference.rgb2ycbcr_matlab(rgb), **tol(dtype))
    np.testing.assert_allclose(rgb2ycbcr(np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], dtype)), [[16 / 255, 128 / 255, 128 / 255], [235 / 255, 128 / 255, 128 / 255]], atol=1e-6)


def test_rgb2ycbcr_uint8_rounds_like_matlab(rng):
    rgb = rng.integers(0, 256, (40, 30, 3)).astype(np.uint8)
    grey = np.repeat(np.arange(256, dtype=np.uint8)[:, None, None], 3, axis=2)
    for img in (rgb, grey, np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]], np.uint8)):
        got = rgb2ycbcr(img)
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, reference.rgb2ycbcr_matlab(img).astype(np.uint8))
    assert rgb2ycbcr(np.array([255, 255, 255], np.uint8)).tolist() == [235, 128, 128]
    assert rgb2ycbcr(np.array([0, 0, 0], np.uint8)).tolist() == [16, 128, 128]


def test_rgb2ycbcr_agrees_with_scikit_image(rng):
    from skimage.color import rgb2ycbcr as sk_rgb2ycbcr

    rgb = rng.random((9, 8, 3))
    np.testing.assert_allclose(rgb2ycbcr(rgb) * 255, sk_rgb2ycbcr(rgb), rtol=0, atol=1e-9)


def test_ycbcr2rgb_inverts(rng):
    rgb = rng.random((6, 7, 3))
    np.testing.assert_allclose(ycbcr2rgb(rgb2ycbcr(rgb)), rgb, rtol=0, atol=1e-12)
    rgb8 = rng.integers(0, 256, (20, 20, 3)).astype(np.uint8)
    back = ycbcr2rgb(rgb2ycbcr(rgb8))
    assert back.dtype == np.uint8
    assert np.abs(back.astype(int) - rgb8).max() <= 3  # two 8-bit quantisations
    # float output is clipped to [0, 1] (Cb/Cr outside the RGB gamut)
    out = ycbcr2rgb(np.array([[16 / 255, 240 / 255, 16 / 255]]))
    assert out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize(
    "x, exc, match",
    [
        (np.zeros((4, 4)), ValueError, r"rgb must have 3 channels on its last axis"),
        (np.zeros((4, 4, 4)), ValueError, r"rgb must have 3 channels"),
        (np.zeros((4, 4, 3), np.int16), TypeError, r"rgb must have dtype float32, float64, uint8; got int16"),
        (np.full((2, 2, 3), np.nan), ValueError, r"rgb contains NaN or infinite"),
        ([[0.1, 0.2, 0.3]], TypeError, r"rgb must be a numpy array"),
    ],
)
def test_colour_bad_input(x, exc, match):
    with pytest.raises(exc, match=match):
        rgb2ycbcr(x)


# --- PSNR --------------------------------------------------------------------------------------


def test_psnr_matches_formula_and_scikit_image(rng):
    from skimage.metrics import peak_signal_noise_ratio

    a = rng.random((20, 18))
    b = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1)
    assert psnr(a, b) == pytest.approx(reference.psnr(a, b), rel=1e-12)
    assert psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=1.0), rel=1e-12)
    assert psnr(a, b, shave=3) == pytest.approx(reference.psnr(a, b, shave=3), rel=1e-12)
    assert psnr(a.astype(np.float32), b.astype(np.float32)) == pytest.approx(reference.psnr(a.astype(np.float32), b.astype(np.float32)), rel=1e-12)
    a8, b8 = (a * 255).astype(np.uint8), (b * 255).astype(np.uint8)
    assert psnr(a8, b8) == pytest.approx(reference.psnr(a8, b8, peak=255.0), rel=1e-12)
    assert psnr(a8, b8) == pytest.approx(peak_signal_noise_ratio(a8, b8), rel=1e-12)
    assert psnr(a, a) == float("inf")
    c = rng.random((10, 10, 3))
    assert psnr(c, c * 0.9, shave=2) == pytest.approx(reference.psnr(c, c * 0.9, shave=2), rel=1e-12)
    assert psnr(a8, b8.astype(np.float64), data_range=255) == pytest.approx(psnr(a8, b8), rel=1e-12)


@pytest.mark.parametrize(
    "a, b, kw, exc, match",
    [
        (np.zeros((4, 4)), np.zeros((4, 5)), {}, ValueError, r"a and b must have the same shape, got \(4, 4\) and \(4, 5\)"),
        (np.zeros((4, 4)), np.zeros((4, 4), np.uint8), {}, ValueError, r"pass data_range"),
        (np.zeros((4, 4)), np.full((4, 4), np.nan), {}, ValueError, r"b contains NaN"),
        (np.full((4, 4), np.inf), np.zeros((4, 4)), {}, ValueError, r"a contains NaN or infinite"),
        (np.zeros((4, 4)), np.zeros((4, 4)), dict(shave=2), ValueError, r"shave=2 leaves nothing"),
        (np.zeros((4, 4)), np.zeros((4, 4)), dict(shave=-1), ValueError, r"shave must be >= 0, got -1"),
        (np.zeros((4, 4)), np.zeros((4, 4)), dict(data_range=0), ValueError, r"data_range must be positive"),
        (np.zeros(4), np.zeros(4), {}, ValueError, r"a must have 2 or 3 dimensions"),
        (np.zeros((4, 4), np.int32), np.zeros((4, 4)), {}, TypeError, r"a must have dtype"),
        ([[0.0]], np.zeros((1, 1)), {}, TypeError, r"a must be a numpy array"),
    ],
)
def test_metrics_bad_input(a, b, kw, exc, match):
    for fn in (psnr, ssim):
        with pytest.raises(exc, match=match):
            fn(a, b, **kw)


# --- SSIM --------------------------------------------------------------------------------------


def test_ssim_agrees_with_scikit_image(rng):
    from skimage.metrics import structural_similarity

    def sk(a, b, **kw):
        return structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, **kw)

    a = rng.random((40, 33))
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
    assert ssim(a, b) == pytest.approx(sk(a, b, data_range=1.0), abs=1e-12)
    a8, b8 = (a * 255).round().astype(np.uint8), (b * 255).round().astype(np.uint8)
    assert ssim(a8, b8) == pytest.approx(sk(a8, b8, data_range=255), abs=1e-12)
    c = rng.random((30, 25, 3))
    d = np.clip(c + rng.normal(0, 0.1, c.shape), 0, 1)
    assert ssim(c, d) == pytest.approx(sk(c, d, data_range=1.0, channel_axis=-1), abs=1e-12)
    assert ssim(a, b, shave=4) == pytest.approx(sk(a[4:-4, 4:-4], b[4:-4, 4:-4], data_range=1.0), abs=1e-12)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert ssim(a, 1 - a) < 0


def test_ssim_needs_the_window_to_fit():
    with pytest.raises(ValueError, match=r"at least 11 x 11"):
        ssim(np.zeros((10, 20)), np.zeros((10, 20)))
    with pytest.raises(ValueError, match=r"at least 11 x 11"):
        ssim(np.zeros((20, 20)), np.zeros((20, 20)), shave=5)


# --- the SR protocol end to end ---------------------------------------------------------------


@needs_data("sr", "set5")
def test_bicubic_baseline_reproduces_published_set5_psnr():
    """Kim et al. (2016, VDSR) Table 2 bicubic row, Set5: 33.66 / 30.39 / 28.42 dB at x2/x3/x4.

    Y of the 8-bit RGB image (MATLAB rgb2ycbcr on uint8), cropped to a multiple of the scale,
    shrunk and enlarged with imresize in double, `scale` pixels shaved, PSNR with peak 1.
    """
    from PIL import Image

    published = {2: 33.66, 3: 30.39, 4: 28.42}
    images = sorted(SET5.glob("*.png"))
    assert len(images) == 5
    ys = [rgb2ycbcr(np.asarray(Image.open(p).convert("RGB")))[..., 0].astype(np.float64) / 255.0 for p in images]
    for s, expected in published.items():
        scores = []
        for y in ys:
            h, w = (y.shape[0] // s) * s, (y.shape[1] // s) * s
            hr = y[:h, :w]
            bicubic = imresize(imresize(hr, 1.0 / s), float(s))
            scores.append(psnr(bicubic, hr, shave=s))
        assert np.mean(scores) == pytest.approx(expected, abs=0.05), (s, scores)
