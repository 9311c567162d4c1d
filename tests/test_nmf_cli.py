"""``hotops nmf DATA --rank R``: files in, W and H out, bad usage exits 2."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import hotops
from hotops import cli


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.poisson(1.5, (40, 30)).astype(np.float64)
    np.save(tmp_path / "X.npy", X)
    sp.save_npz(tmp_path / "Xs.npz", sp.csr_matrix(X))
    np.savez(tmp_path / "two.npz", a=X, b=X)
    return tmp_path, X


def test_dense_and_sparse_files(data, capsys):
    tmp, X = data
    out = tmp / "wh.npz"
    assert cli.main(["nmf", str(tmp / "X.npy"), "--rank", "3", "--beta", "kullback-leibler",
                     "--max-iter", "50", "--out", str(out)]) == 0
    text = capsys.readouterr()
    assert "-> " in text.out and "iterations" in text.out
    assert "objective=" in text.err  # the tqdm bar shows the objective
    with np.load(out) as z:
        W, H = z["W"], z["H"]
    est = hotops.NMF(3, beta_loss="kullback-leibler", max_iter=50, random_state=0)
    with pytest.warns(Warning):
        We = est.fit_transform(X)
    assert np.allclose(W, We, rtol=1e-10) and np.allclose(H, est.components_, rtol=1e-10)
    assert cli.main(["nmf", str(tmp / "Xs.npz"), "--rank", "3", "--no-progress"]) == 0
    assert (tmp / "Xs_nmf.npz").exists()
    assert cli.main(["nmf", str(tmp / "two.npz"), "--rank", "2", "--key", "b", "--no-progress",
                     "--beta", "1.5", "--max-iter", "20"]) == 0


@pytest.mark.parametrize("args, expect", [
    (["missing.npy", "--rank", "2"], "does not exist"),
    (["X.npy", "--rank", "0"], "--rank must be >= 1"),
    (["X.npy", "--rank", "2", "--beta", "euclid"], "--beta must be"),
    (["two.npz", "--rank", "2"], "choose one with --key"),
    (["X.npy", "--rank", "50", "--init", "nndsvda"], "n_components <= min"),
])
def test_bad_usage(data, capsys, args, expect):
    tmp, _ = data
    argv = ["nmf", str(tmp / args[0]), *args[1:], "--no-progress"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert expect in err and "Traceback" not in err
