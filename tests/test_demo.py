"""The demo's network checkpoint and ``hotops demo``."""
from __future__ import annotations

import numpy as np
import pytest

from hotops.data import data_available
from hotops.models.small_cifar import CHECKPOINT

torch = pytest.importorskip("torch")


def test_checkpoint_is_small_and_loads():
    from hotops.models import SmallCifarNet, load_small_cifar

    assert CHECKPOINT.exists(), "train it with: hotops train small-cifar"
    assert CHECKPOINT.stat().st_size < 2 * 2**20
    model, meta = load_small_cifar()
    assert isinstance(model, SmallCifarNet) and not model.training
    assert len(meta["classes"]) == 10 and meta["classes"][3] == "cat"
    assert len(meta["mean"]) == 3 and len(meta["std"]) == 3
    assert meta["test_accuracy"] > 0.5  # chance is 0.1
    assert all(p.dtype == torch.float32 for p in model.parameters())
    with torch.no_grad():  # global average pooling: any input size
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
        assert model(torch.zeros(1, 3, 128, 96)).shape == (1, 10)


def test_untrained_model():
    from hotops.models import load_small_cifar

    model, meta = load_small_cifar(pretrained=False)
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.slow
@pytest.mark.skipif(not data_available("cifar10_jpeg.npz"), reason="shared data folder not found")
def test_recorded_accuracy_is_reproducible(tmp_path):
    """The accuracy stored in the checkpoint is what the stored weights score."""
    from hotops.data import load_cifar10
    from hotops.models import load_small_cifar
    from hotops.apps.train_small import evaluate

    x, y = load_cifar10("test", cache=tmp_path, progress=False)
    model, meta = load_small_cifar()
    mean = torch.tensor(meta["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(meta["std"]).view(1, 3, 1, 1)
    acc = evaluate(model, x, y, mean, std)
    assert abs(acc - meta["test_accuracy"]) < 0.003


@pytest.mark.skipif(not data_available("cifar10_jpeg.npz"), reason="shared data folder not found")
def test_train_small_cifar_smoke(tmp_path, capsys):
    """``hotops train small-cifar`` on a few images writes a loadable checkpoint."""
    from hotops.cli import main
    from hotops.models import load_small_cifar

    out = tmp_path / "s.pt"
    assert main(["train", "small-cifar", "--limit", "128", "--batch-size", "64", "--epochs", "1",
                 "--threads", "1", "--out", str(out)]) == 0
    model, meta = load_small_cifar(path=out)
    assert len(meta["classes"]) == 10 and 0.0 <= meta["test_accuracy"] <= 1.0
    assert main(["train", "small-cifar", "--epochs", "0"]) == 2
    assert "--epochs must be >= 1" in capsys.readouterr().err


def test_demo_cli_quick(tmp_path, monkeypatch, capsys):
    """``hotops demo --quick`` runs without the shared data and writes the report + figure."""
    from hotops.cli import main

    monkeypatch.setenv("HOTOPS_DATA", str(tmp_path / "no-data-here"))
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--no-progress", "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "saliency.png" in report
    assert "## Machine" in report and "torch threads" in report and "numba threads" in report
    assert "`g.abs().amax(1)`" in report and "`g.clone()`" in report
    assert "Simonyan" in report
    png = out / "saliency.png"
    assert png.stat().st_size > 10_000
    from PIL import Image

    with Image.open(png) as im:
        assert im.size[0] > 500 and im.size[1] > 500
    assert "report:" in capsys.readouterr().out


def test_demo_needs_no_opencv(tmp_path, monkeypatch):
    """OpenCV is an extra (the GrabCut baseline of the benchmarks), not a dependency: the
    localisation section, which draws the benchmark's canvases, runs without it."""
    import sys

    from hotops.demo import run_demo

    monkeypatch.setitem(sys.modules, "cv2", None)  # `import cv2` raises ImportError
    monkeypatch.setenv("HOTOPS_DATA", str(tmp_path / "no-data-here"))
    res = run_demo(tmp_path / "d", quick=True, sections=["localization"], progress=False)
    assert (tmp_path / "d" / "localization.png").exists() and res["sections"] == ["localization"]


def test_demo_unknown_section(tmp_path):
    from hotops.demo import run_demo

    with pytest.raises(ValueError, match="unknown demo sections"):
        run_demo(tmp_path, sections=["nope"], progress=False)


def test_time_call():
    from hotops.demo import time_call

    r = time_call(lambda: sum(range(100)), repeats=5)
    assert r["repeats"] == 5 and 0 <= r["min"] <= r["median"]
