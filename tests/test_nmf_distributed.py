"""hotops.distributed.nmf on a real LocalCluster (2 worker processes on loopback)."""
from __future__ import annotations

import os
import signal
import warnings

import numpy as np
import pytest

import hotops

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                               host="127.0.0.1", dashboard_address=None, memory_limit="1GiB")
        c = Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


def _data(seed=0, m=90, n=40):
    rng = np.random.default_rng(seed)
    return rng.poisson(2.0, (m, n)).astype(np.float64) * (rng.random((m, n)) < 0.6)


@pytest.mark.parametrize("beta", ["frobenius", "kullback-leibler"])
def test_equals_single_machine(client, beta):
    from hotops.distributed import nmf

    X = _data()
    V = da.from_array(X, chunks=(35, 40))  # uneven row chunks: 35, 35, 20
    W, H, it = nmf(V, 4, client=client, init="random", random_state=0, beta_loss=beta,
                   max_iter=30, tol=1e-3, alpha_W=0.01, return_n_iter=True)
    est = hotops.NMF(4, init="random", random_state=0, beta_loss=beta, max_iter=30, tol=1e-3, alpha_W=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Ws = est.fit_transform(X)
    assert it == est.n_iter_
    assert np.abs(W - Ws).max() <= 1e-8 * np.abs(Ws).max()
    assert np.abs(H - est.components_).max() <= 1e-8 * np.abs(est.components_).max()


def test_survives_killed_worker(client, caplog):
    from hotops.distributed import nmf

    X = _data(1)
    V = da.from_array(X, chunks=(30, 40))
    pids = list(client.run(os.getpid).values())
    killed = []

    def kill_one(it, err):
        if it == 20 and not killed:
            os.kill(pids[0], signal.SIGKILL)  # a worker process dies mid-fit
            killed.append(it)

    W, H = nmf(V, 3, client=client, init="random", random_state=1, beta_loss="kullback-leibler",
               max_iter=40, tol=1e-12, callback=kill_one)
    assert killed
    # the lost W chunks were recovered by replaying from the client-side checkpoint
    assert any("restarting from the checkpoint at iteration 10" in r.getMessage() for r in caplog.records)
    est = hotops.NMF(3, init="random", random_state=1, beta_loss="kullback-leibler", max_iter=40, tol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Ws = est.fit_transform(X)
    assert np.abs(W - Ws).max() <= 1e-8 * np.abs(Ws).max()
    assert np.abs(H - est.components_).max() <= 1e-8 * np.abs(est.components_).max()


def test_bad_input(client):
    from hotops.distributed import nmf

    X = _data()
    X[5, 7] = -1.0
    with pytest.raises(ValueError, match=r"the first at V\[5, 7\]"):
        nmf(da.from_array(X, chunks=(30, 40)), 2, client=client)
    with pytest.raises(TypeError, match="dask.array"):
        nmf(X, 2, client=client)


def test_refused_before_any_work():
    # checked before a client is looked up: no cluster is needed to refuse these
    from hotops.distributed import nmf

    with pytest.raises(ValueError, match=r"V must be non-empty.*\(0, 5\)"):
        nmf(da.zeros((0, 5)), 2)  # was: an all-NaN H
    for kw, match in [(dict(max_iter=0), "max_iter must be >= 1"), (dict(tol=float("nan")), "tol must be a finite"),
                      (dict(alpha_W=-1.0), "alpha_W must be finite and >= 0"), (dict(l1_ratio=2.0), "l1_ratio")]:
        with pytest.raises(ValueError, match=match):
            nmf(da.ones((4, 5)), 2, **kw)
    with pytest.raises(TypeError, match="max_iter must be an integer"):
        nmf(da.ones((4, 5)), 2, max_iter=10.0)
