"""hotops.localize / localize_batch: GMM colour models + GraphCut (Simonyan et al. 2013, Sec. 3.2)."""
from __future__ import annotations

import numpy as np
import pytest
import reference as ref

import hotops
from hotops.localization import (
    _DIRECTIONS, fit_gmm, graphcut_mask, largest_component_box, pairwise_weights, seed_masks,
)


def _scene(h=40, w=48, box=(12, 10, 30, 26), seed=0, gray=False):
    """A red rectangle on a blue-grey noisy background; the saliency map covers only part of it."""
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3))
    img[:] = (0.1, 0.15, 0.3)
    x0, y0, x1, y1 = box
    img[y0:y1, x0:x1] = (0.85, 0.2, 0.15)
    img = np.clip(img + rng.normal(0, 0.04, img.shape), 0, 1)
    sal = rng.random((h, w)) * 0.1
    cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
    sal[cy - 3:cy + 3, cx - 4:cx + 4] += 1.0  # only the object's middle is salient
    if gray:
        img = img.mean(2)
    return img, sal


def test_recovers_the_whole_object():
    img, sal = _scene()
    img0, sal0 = img.copy(), sal.copy()
    mask, box = hotops.localize(img, sal)
    assert box == (12, 10, 30, 26)
    assert mask.dtype == bool and mask.shape == sal.shape and mask.sum() == 18 * 16
    np.testing.assert_array_equal(img, img0)
    np.testing.assert_array_equal(sal, sal0)


def test_thresholded_saliency_alone_does_not():
    img, sal = _scene()
    fg, _ = seed_masks(sal)
    _, seed_box = largest_component_box(fg)
    assert seed_box != (12, 10, 30, 26)  # the seeds cover only the middle


def test_uint8_torch_and_grayscale_inputs():
    torch = pytest.importorskip("torch")
    img, sal = _scene()
    want = hotops.localize(img, sal)[1]
    u8 = np.round(img * 255).astype(np.uint8)
    assert hotops.localize(u8, sal)[1] == want
    assert hotops.localize(torch.from_numpy(img), torch.from_numpy(sal))[1] == want
    gimg, gsal = _scene(gray=True)
    assert hotops.localize(gimg, gsal)[1] == want  # 1-D colour model
    assert hotops.localize(gimg[:, :, None], gsal)[1] == want


def test_hard_seeds_split_the_object():
    # background seeds fall inside the object too (30% of its noisy saliency): clamped,
    # they keep the cut from growing past the salient middle
    img, sal = _scene()
    _, box = hotops.localize(img, sal, hard_seeds=True)
    x0, y0, x1, y1 = box
    assert (x1 - x0) * (y1 - y0) < 18 * 16


def test_graphcut_is_the_energy_minimum():
    """PyMaxflow's grid graph (one add_grid_edges per direction) minimises the reference energy."""
    rng = np.random.default_rng(3)
    for trial in range(3):
        h, w = (3, 4) if trial < 2 else (2, 5)
        img = rng.random((h, w, 3))
        source, sink = rng.random((h, w)) * 3, rng.random((h, w)) * 3
        weights, beta = pairwise_weights(img, 2.0)
        labels = graphcut_mask(source, sink, weights)
        e = ref.graphcut_energy(labels, source, sink, weights, _DIRECTIONS)
        assert e == pytest.approx(ref.brute_force_cut(source, sink, weights, _DIRECTIONS), rel=1e-9, abs=1e-9)
        assert beta > 0


def test_pairwise_weights_definition():
    rng = np.random.default_rng(0)
    img = rng.random((5, 6, 3))
    weights, beta = pairwise_weights(img, 50.0)
    d2 = []
    for dy, dx in _DIRECTIONS:
        for i in range(5):
            for j in range(6):
                if 0 <= i + dy < 5 and 0 <= j + dx < 6:
                    d2.append(((img[i, j] - img[i + dy, j + dx]) ** 2).sum())
    assert beta == pytest.approx(1 / (2 * np.mean(d2)))
    dy, dx = _DIRECTIONS[1]  # diagonal: divided by sqrt(2)
    i, j = 2, 3
    want = 50.0 / np.sqrt(2) * np.exp(-beta * ((img[i, j] - img[i + dy, j + dx]) ** 2).sum())
    assert weights[1][i, j] == pytest.approx(want)
    assert weights[2][0, 3] == 0.0  # 'up' from the top row leaves the image


def test_fit_gmm_matches_sklearn_likelihood():
    from sklearn.mixture import GaussianMixture

    from hotops.kernels.gmm import gmm_log_likelihood

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0.2, 0.05, (300, 3)), rng.normal(0.7, 0.1, (300, 3))])
    w, mu, cov = fit_gmm(x, 3)
    sk = GaussianMixture(3, covariance_type="full", reg_covar=1e-4, random_state=0).fit(x)
    assert gmm_log_likelihood(x, w, mu, cov).mean() == pytest.approx(sk.score(x), abs=0.05)
    w1, _, _ = fit_gmm(x[:2], 5)  # fewer samples than components
    assert len(w1) <= 2


def test_timings():
    img, sal = _scene()
    t: dict = {}
    hotops.localize(img, sal, timings=t)
    assert set(t) == {"gmm", "graph", "maxflow", "components"} and all(v >= 0 for v in t.values())


def test_batch_equals_single():
    scenes = [_scene(seed=s, box=(5 + s, 6, 25 + s, 20)) for s in range(3)]
    imgs, sals = [s[0] for s in scenes], [s[1] for s in scenes]
    got = hotops.localize_batch(imgs, sals, workers=2)
    for (m, b), img, sal in zip(got, imgs, sals):
        m1, b1 = hotops.localize(img, sal)
        assert b == b1 and np.array_equal(m, m1)
    assert hotops.localize_batch([], []) == []
    with pytest.raises(ValueError, match="image 1:"):
        hotops.localize_batch(imgs[:2], [sals[0], np.zeros_like(sals[1])])
    with pytest.raises(ValueError, match="same length"):
        hotops.localize_batch(imgs, sals[:2])


@pytest.mark.parametrize("change,match", [
    (dict(sal=np.zeros((40, 48))), "constant"),
    (dict(sal=np.zeros((40, 47))), "image's shape"),
    (dict(fg_quantile=1.0), r"fg_quantile must be in \(0, 1\)"),
    (dict(bg_quantile=0.0), r"bg_quantile must be in \(0, 1\)"),
    (dict(fg_quantile=0.3, bg_quantile=0.5), "fg_quantile must be > bg_quantile"),
    (dict(img=np.zeros((40, 48, 4))), "3 colour channels"),
    (dict(img=np.zeros((40, 48, 2))), "3 colour channels"),
    (dict(img=np.zeros((2, 40, 48, 3))), r"\(H, W, 3\)"),
    (dict(n_components=0), "n_components"),
    (dict(gamma=-1.0), "gamma"),
    (dict(sal_nan=True), "finite"),
])
def test_bad_input(change, match):
    img, sal = _scene()
    if change.pop("sal_nan", False):
        sal = sal.copy()
        sal[0, 0] = np.nan
    img = change.pop("img", img)
    sal = change.pop("sal", sal)
    with pytest.raises(ValueError, match=match):
        hotops.localize(img, sal, **change)


def test_bad_types():
    img, sal = _scene()
    with pytest.raises(TypeError, match="image must be a numpy array or a torch tensor"):
        hotops.localize(img.tolist(), sal)
    with pytest.raises(TypeError, match="uint8 or floating point"):
        hotops.localize(img.astype(np.int32), sal)


def test_property_random_inputs_give_consistent_mask_and_box():
    """Any finite image and non-constant map, any size >= 2x2: no crash, the box is the mask's."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=12, deadline=None)
    @given(h=st.integers(2, 12), w=st.integers(2, 12), seed=st.integers(0, 2**16), gray=st.booleans())
    def check(h, w, seed, gray):
        rng = np.random.default_rng(seed)
        img = rng.random((h, w) if gray else (h, w, 3))
        sal = rng.random((h, w))
        mask, (x0, y0, x1, y1) = hotops.localize(img, sal)
        assert mask.any()
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        assert (x0, y0, x1, y1) == (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)

    check()


@pytest.mark.parametrize("dtype", [np.complex128, np.bool_, object])
def test_saliency_of_another_kind_is_refused(dtype):
    # a complex map used to lose its imaginary part with only a warning
    img, sal = _scene()
    bad = sal.astype(dtype) if dtype is not np.complex128 else sal + 1j * sal
    with pytest.raises(TypeError, match="saliency must have a real"):
        hotops.localize(img, bad)
    with pytest.raises(TypeError, match="saliency must have a real"):
        seed_masks(bad)
    assert hotops.localize(img, (sal * 1000).astype(np.int64))[1] == hotops.localize(img, sal)[1]
