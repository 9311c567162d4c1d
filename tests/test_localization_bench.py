"""The localisation benchmark (hotops.apps.loc_bench), its committed checkpoint and ``hotops saliency``."""
from __future__ import annotations

import numpy as np
import pytest

from hotops.apps import loc_bench
from hotops.apps.loc_bench import box_iou, centred_box, make_canvases
from hotops.models.localizer import CHECKPOINT, load_localizer

torch = pytest.importorskip("torch")


def _digits(n=20):
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs = np.stack([np.kron(im, np.ones((3, 3))) for im in d.images[:n]])  # 24x24
    return (imgs / 16 * 255).astype(np.uint8), d.target[:n]


def test_canvases_are_reproducible_and_boxes_tight():
    digits, labels = _digits()
    a = make_canvases(digits, labels, 6, seed=3, size=64, scale=(20, 40))
    b = make_canvases(digits, labels, 6, seed=3, size=64, scale=(20, 40))
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    images, y, boxes = a
    assert images.shape == (6, 64, 64, 3) and images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 1
    assert set(y) <= set(range(10))
    for x0, y0, x1, y1 in boxes:
        assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64


def test_box_helpers():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 2, 2), (3, 3, 4, 4)) == 0.0
    assert centred_box(96, 30, 40) == (33, 28, 63, 68)


def test_make_canvases_bad_input():
    digits, labels = _digits()
    with pytest.raises(ValueError, match="scale"):
        make_canvases(digits, labels, 1, scale=(4, 200))
    with pytest.raises(ValueError, match="labels"):
        make_canvases(digits, labels[:3], 1)


@pytest.mark.skipif(not CHECKPOINT.exists(), reason="train it with: hotops train localizer")
def test_checkpoint_small_and_evaluates():
    assert CHECKPOINT.stat().st_size < 2 * 2**20
    model, meta = load_localizer()
    assert meta["test_accuracy"] > 0.5 and len(meta["classes"]) == 10
    digits, labels = _digits(60)
    digits = np.stack([loc_bench.resize_bilinear(d.astype(np.float32), 28) for d in digits]).astype(np.uint8)
    images, y, boxes = make_canvases(digits, labels, 8, seed=1)
    res = loc_bench.evaluate_localization(model, images, y, boxes, workers=1)
    assert res["n"] == 8
    for key in ("saliency + GraphCut", "centred box (mean size)"):
        assert 0.0 <= res[key]["acc"] <= 1.0 and 0.0 <= res[key]["mean_iou"] <= 1.0


@pytest.mark.skipif(not CHECKPOINT.exists(), reason="train it with: hotops train localizer")
def test_cli_saliency_writes_map_and_box(tmp_path, capsys):
    from PIL import Image

    from hotops.cli import main

    digits, labels = _digits(30)
    digits = np.stack([loc_bench.resize_bilinear(d.astype(np.float32), 28) for d in digits]).astype(np.uint8)
    images, _, _ = make_canvases(digits, labels, 1, seed=5)
    path = tmp_path / "canvas.png"
    Image.fromarray((images[0] * 255).astype(np.uint8)).save(path)
    assert main(["saliency", str(path), "--target", "3", "--out", str(tmp_path / "res")]) == 0
    out = capsys.readouterr().out
    assert "box (x0, y0, x1, y1)" in out
    for suffix in ("_saliency.png", "_box.png"):
        with Image.open(tmp_path / f"res{suffix}") as im:
            assert im.size == (96, 96)
    assert main(["saliency", str(path), "--target", "12"]) == 2
    assert "out of range" in capsys.readouterr().err
    # files that cannot be read are failures (exit 1), as in every command
    assert main(["saliency", str(tmp_path / "missing.png")]) == 1
    assert main(["saliency", str(path), "--model", str(tmp_path / "none.pt"), "--out", str(tmp_path / "n")]) == 1
    assert "classifier checkpoint not found" in capsys.readouterr().err
    # a small_cifar checkpoint works too
    from hotops.models.small_cifar import CHECKPOINT as SMALL

    assert main(["saliency", str(path), "--model", str(SMALL), "--out", str(tmp_path / "sc")]) == 0
    assert (tmp_path / "sc_box.png").exists()


def test_train_localizer_rejects_bad_options():
    import argparse

    from hotops.cli.train import TRAINERS

    p = argparse.ArgumentParser()
    TRAINERS["localizer"][1](p)  # the options of `hotops train localizer`
    with pytest.raises(ValueError, match="--epochs"):
        loc_bench.run_training(p.parse_args(["--epochs", "0"]))


@pytest.mark.parametrize("src, size", [((28, 28), 28), ((28, 28), 41), ((28, 28), 60), ((9, 9), 13),
                                       ((8, 8), 28), ((13, 13), 19), ((1, 1), 5)])
def test_resize_bilinear_matches_opencv(src, size):
    """The canvases' resize is OpenCV's INTER_LINEAR on float32 (which made the committed
    classifier's training canvases) to a few float32 roundings, without OpenCV as a
    dependency (1,000 held-out canvases: same boxes and labels, pixels within 1.1e-6)."""
    cv2 = pytest.importorskip("cv2", reason="opencv-python-headless (hotops[bench]) is the reference here")
    img = np.random.default_rng(sum(src) + size).random(src).astype(np.float32)
    want = cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)
    got = loc_bench.resize_bilinear(img, size)
    assert got.dtype == np.float32 and got.shape == (size, size)
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)


def test_resize_bilinear_properties():
    img = np.random.default_rng(0).random((11, 11, 3)).astype(np.float32)
    np.testing.assert_array_equal(loc_bench.resize_bilinear(img, 11), img)  # same size: unchanged
    const = np.full((7, 7), 0.3, np.float32)
    np.testing.assert_allclose(loc_bench.resize_bilinear(const, 17), 0.3, rtol=1e-6)
    big = loc_bench.resize_bilinear(img, 30)
    assert big.shape == (30, 30, 3) and big.min() >= img.min() and big.max() <= img.max()
    with pytest.raises(ValueError, match="size must be >= 1"):
        loc_bench.resize_bilinear(img, 0)
    with pytest.raises(ValueError, match="img must be"):
        loc_bench.resize_bilinear(np.zeros(5, np.float32), 3)
