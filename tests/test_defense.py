"""hotops.apps.defense: choice of k, the L0 attacks, the committed checkpoints, the CLI trainer."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.fft as sfft
import torch

from _support import needs_data
from hotops import cli
from hotops.apps import defense
from hotops.cli.train import TRAINERS
from hotops.models.mnist_cnn import MnistCNN, defense_checkpoint, load_defense_model


def test_choose_k_finds_the_planted_sparsity(rng):
    n, k = 50, 12
    C = np.zeros((n, 28 * 28))
    for i in range(n):
        C[i, rng.choice(28 * 28, k, replace=False)] = rng.uniform(1, 2, k)
    x = sfft.idctn(C.reshape(n, 28, 28), norm="ortho", axes=(1, 2))
    got, info = defense.choose_k(x, energy=0.999999)
    assert got == k
    assert info[k]["median"] >= 0.999999
    assert defense.choose_k(x, energy=0.5)[0] < k
    with pytest.raises(ValueError, match="energy must be in"):
        defense.choose_k(x, energy=0)


def test_random_pixel_attack_changes_exactly_t_pixels(rng):
    x = rng.random((20, 28, 28)).astype(np.float32)
    before = x.copy()
    for t in (0, 1, 17):
        adv = defense.random_pixel_attack(x, t, seed=3)
        changed = (adv != x).reshape(20, -1).sum(1)
        assert (changed == t).all()
        assert np.isin(adv[adv != x], (0.0, 1.0)).all()
    np.testing.assert_array_equal(x, before)
    with pytest.raises(ValueError, match="t must be"):
        defense.random_pixel_attack(x, 785)


def _linear_model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))


def test_greedy_attack_budget_and_success(rng):
    model = _linear_model()
    x = rng.random((40, 28, 28)).astype(np.float32)
    with torch.no_grad():
        labels = model(torch.from_numpy(x)).argmax(1).numpy()  # all correct at the start
    advs = defense.greedy_l0_attack(model, x, labels, ts=(1, 3, 30), batch_size=16)
    prev_acc = 1.0
    for t, adv in advs.items():
        changed = (adv != x).reshape(40, -1).sum(1)
        assert (changed <= t).all()
        assert np.isin(adv[adv != x], (0.0, 1.0)).all()
        with torch.no_grad():
            acc = float((model(torch.from_numpy(adv)).argmax(1).numpy() == labels).mean())
        assert acc <= prev_acc
        prev_acc = acc
    # against a linear model the first-order greedy step is exact: 30 pixels fool it far more
    # often than 30 random flips do
    rand = defense.random_pixel_attack(x, 30, seed=0)
    with torch.no_grad():
        acc_rand = float((model(torch.from_numpy(rand)).argmax(1).numpy() == labels).mean())
    assert prev_acc < acc_rand
    with pytest.raises(ValueError, match="increasing"):
        defense.greedy_l0_attack(model, x, labels, ts=(3, 2))


def test_mnist_cnn_shapes():
    m = MnistCNN()
    assert m(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert m(torch.zeros(2, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match="x must have shape"):
        m(torch.zeros(2, 3, 28, 28))


def test_committed_checkpoints_are_small_and_load():
    for kind in ("normal", "topk"):
        path = defense_checkpoint(kind)
        assert path.exists(), path
        assert path.stat().st_size < 1_000_000
        model, meta = load_defense_model(kind)
        assert meta["kind"] == kind and 1 <= meta["k"] <= 784
        assert meta["test_accuracy"] > 0.95
    with pytest.raises(ValueError, match="kind must be one of"):
        defense_checkpoint("robust")


@needs_data("mnist.npz")
def test_checkpoints_classify_mnist():
    from hotops.data import load_mnist

    d = load_mnist()
    x, y = d["x_test"][:300].astype(np.float32) / 255, d["y_test"][:300]
    normal, _ = load_defense_model("normal")
    topk, meta = load_defense_model("topk")
    assert (defense.predict(normal, x) == y).mean() > 0.95
    assert (defense.predict(topk, defense.project_images(x, meta["k"])) == y).mean() > 0.93


def test_cli_train_defense_options(capsys):
    parser = cli.build_parser(["train", "defense"])
    args = parser.parse_args(["train", "defense", "--epochs", "3", "--out", "/tmp/x"])
    assert args.epochs == 3 and str(args.out) == "/tmp/x"
    assert cli.main(["train", "defense", "--epochs", "0"]) == 2
    assert "--epochs and --batch-size must be >= 1" in capsys.readouterr().err
    assert cli.main(["train", "defense", "--energy", "1.5"]) == 2


@needs_data("mnist.npz")
def test_run_training_smoke(tmp_path):
    import argparse

    p = argparse.ArgumentParser()
    TRAINERS["defense"][1](p)  # the options of `hotops train defense`
    args = p.parse_args(["--limit", "128", "--epochs", "1", "--eval-images", "8", "--out", str(tmp_path),
                         "--batch-size", "64"])
    res = defense.run_training(args)
    assert (tmp_path / "defense_normal.pt").exists() and (tmp_path / "defense_topk.pt").exists()
    ev = res["evaluation"]
    assert ev["n_images"] == 8 and set(ev["rows"]) and all(0 <= v <= 1 for r in ev["rows"].values()
                                                            for v in r.values())
    model, meta = load_defense_model(path=tmp_path / "defense_topk.pt")
    assert meta["k"] == res["k"]
