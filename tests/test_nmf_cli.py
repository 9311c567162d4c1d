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
    (["X.npy", "--rank", "0"], "--rank/-r: must be an integer >= 1"),
    (["X.npy", "--rank", "1e9"], "--rank/-r: must be an integer >= 1, got '1e9'"),
    (["X.npy", "--rank", "2", "--beta", "euclid"], "--beta must be"),
    (["X.npy", "--rank", "2", "--beta", "nan"], "--beta must be"),
    (["X.npy", "--rank", "2", "--tol", "inf"], "--tol: must be a finite number"),
    (["X.npy", "--rank", "2", "--alpha-H", "nan"], "--alpha-H must be 'same' or a finite number"),
    (["two.npz", "--rank", "2"], "choose one with --key"),
    (["X.npy", "--rank", "50", "--init", "nndsvda"], "n_components <= min"),
    (["X.npy", "--rank", "999999999999"], "more than this machine's memory allows"),
    (["strings.npy", "--rank", "2"], "DATA must hold numbers"),
])
def test_bad_usage(data, capsys, args, expect):
    tmp, _ = data
    np.save(tmp / "strings.npy", np.array([["a", "b"], ["c", "d"]]))
    argv = ["nmf", str(tmp / args[0]), *args[1:], "--no-progress"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert expect in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("hotops nmf: error: ")  # the last line says it all


def test_unreadable_inputs_fail_with_one_line(data, capsys):
    """Files that cannot be read as a matrix: exit 1, one line, nothing unpickled."""
    tmp, _ = data
    np.save(tmp / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    (tmp / "text.npy").write_text("1 2 3\n4 5 6\n")
    (tmp / "broken.npz").write_bytes(b"PK\x03\x04 not really a zip")
    cases = {"missing.npy": "does not exist", "objects.npy": "cannot read", "text.npy": "cannot read",
             "broken.npz": "cannot read"}
    for name, expect in cases.items():
        assert cli.main(["nmf", str(tmp / name), "--rank", "2", "--no-progress"]) == 1, name
        err = capsys.readouterr().err
        assert expect in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not list(tmp.glob("*_nmf.npz"))


def test_out_is_written_exactly_and_never_silently_replaced(data, capsys):
    tmp, X = data
    out = tmp / "result"  # no .npz suffix: numpy would have written result.npz
    argv = ["nmf", str(tmp / "X.npy"), "--rank", "2", "--max-iter", "20", "--no-progress", "--out", str(out)]
    assert cli.main(argv) == 0
    assert out.is_file() and not (tmp / "result.npz").exists()
    assert f"-> {out};" in capsys.readouterr().out
    with np.load(out) as z:
        assert z["W"].shape == (40, 2) and z["H"].shape == (2, 30)
    before = out.read_bytes()
    assert cli.main(argv) == 2  # exists
    err = capsys.readouterr().err
    assert "exists; pass --force" in err and out.read_bytes() == before
    assert cli.main([*argv, "--force", "--seed", "3"]) == 0
    assert out.read_bytes() != before
    assert not [p for p in tmp.iterdir() if p.name.endswith(".tmp")]  # no temporary file left


def test_out_never_overwrites_an_input(data, capsys):
    tmp, _ = data
    before = (tmp / "X.npy").read_bytes()
    for extra in ([], ["--force"]):
        assert cli.main(["nmf", str(tmp / "X.npy"), "--rank", "2", "--no-progress", "--out", str(tmp / "X.npy"),
                         *extra]) == 2
        assert "refusing to write over an input" in capsys.readouterr().err
    np.save(tmp / "M.npy", np.ones((40, 30)))
    assert cli.main(["nmf", str(tmp / "X.npy"), "--rank", "2", "--no-progress", "--mask", str(tmp / "M.npy"),
                     "--out", str(tmp / "M.npy"), "--force"]) == 2
    assert (tmp / "X.npy").read_bytes() == before


def test_stdin_and_stdout(data):
    """``nmf -`` reads a .npy (or .npz) from standard input; ``--out -`` writes the .npz to stdout."""
    import io
    import subprocess
    import sys

    tmp, X = data
    npy = (tmp / "X.npy").read_bytes()
    run = subprocess.run([sys.executable, "-m", "hotops", "nmf", "-", "--rank", "2", "--max-iter", "20",
                          "--no-progress", "--out", "-"], input=npy, capture_output=True, timeout=300)
    assert run.returncode == 0, run.stderr.decode()
    with np.load(io.BytesIO(run.stdout)) as z:
        assert z["W"].shape == (40, 2)
    assert b"-> standard output" in run.stderr
    bad = subprocess.run([sys.executable, "-m", "hotops", "nmf", "-", "--rank", "2"], input=npy,
                         capture_output=True, timeout=300)
    assert bad.returncode == 2 and b"give --out" in bad.stderr and b"Traceback" not in bad.stderr
