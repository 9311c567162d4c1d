"""NMF on a dask.distributed cluster: ``hotops.distributed.nmf``.

V is a row-chunked ``dask.array`` (chunks along rows only; column chunks are merged). W is
row-partitioned like V and stays on the workers; H (r x n) is replicated: sent with every
task. One multiplicative-update iteration (Lee & Seung 2001) is

1. per chunk c, on its worker: W_c <- W_c * (num / den)^gamma with the same Numba kernels
   as ``hotops.NMF`` (``kernels.nmf.cpu.DenseProblem``: X_c H^T and W_c (H H^T) for
   Frobenius, (X_c / W_c H) H^T and the row sums of H for KL), then the chunk's share of
   the H update:
   W_c^T X_c and W_c^T W_c (Frobenius), W_c^T (X_c / W_c H) and the column sums of W_c (KL),
   W_c^T (X_c (W_c H)^(beta-2)) and W_c^T (W_c H)^(beta-1) (general beta);
2. on the client: those r x n and r x r partials are summed over the chunks (the reduction
   of W^T V and W^T W) and H is updated by the fused column kernel
   (``kernels.nmf.dense.update_cols``).

The objective (every 10 iterations, scikit-learn's stopping rule) is reduced the same way.
The result equals single-machine ``hotops.NMF`` from the same start up to the order of the
floating-point sums (float64: relative difference ~1e-15).

Fault tolerance: every ``checkpoint_every`` iterations the client gathers the W chunks (m x
r values: small next to V). If a worker dies, the futures that lived on it are lost; the
fit restarts from the last checkpoint on the surviving and restarted workers (V's chunks
are recomputed from their graph by dask) and replays the same iterations, so the result is
the same as without the failure.
"""
from __future__ import annotations

import logging
import math
import numbers
import operator
import warnings

import numpy as np

__all__ = ["nmf"]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- worker side

def _chunk_step(X_c, W_c, H, beta, regs_W, want_partials=True):
    """Update W_c (a copy) and return it with this chunk's share of the H update."""
    from hotops.kernels.nmf.common import FROB, KL, Params
    from hotops.kernels.nmf.cpu import DenseProblem, threads_for

    p = Params(beta)
    X_c = np.ascontiguousarray(X_c)
    W_c = np.array(W_c, copy=True)
    prob = DenseProblem(X_c, None, p, W_c.shape[1])
    with threads_for(prob, W_c.shape[1]):
        prob.update_W(W_c, H, regs_W[0], regs_W[1])
    if not want_partials:
        return W_c, None
    if p.kind == FROB:
        parts = (W_c.T @ X_c, W_c.T @ W_c)
    else:
        prob._weights(W_c, H)
        num = W_c.T @ prob.A
        if p.kind == KL:
            parts = (num, W_c.sum(axis=0))
        else:
            parts = (num, W_c.T @ prob.B)
    return W_c, parts


def _chunk_error(X_c, W_c, H, beta):
    """This chunk's partial sums of the objective: (4 sums, column sums of W_c)."""
    from hotops.kernels.nmf.common import Params
    from hotops.kernels.nmf.divergence import dense_div

    p = Params(beta)
    X_c = np.ascontiguousarray(X_c)
    WH = W_c @ H
    tot = dense_div(X_c, WH, np.empty((1, 1), X_c.dtype), False, p.kind, p.beta, p.eps).sum(axis=0)
    return tot, W_c.sum(axis=0)


# --------------------------------------------------------------------------- client side

class _Lost(Exception):
    """A worker died and futures were lost: restart from the checkpoint."""


def _result(futures, client):
    try:
        return client.gather(futures)
    except (ValueError, TypeError, ArithmeticError):
        raise
    except Exception as exc:  # KilledWorker, CancelledError, lost dependencies, comm errors
        raise _Lost(str(exc)) from exc


def _init(V, r, init, random_state, m, n, dtype, client):
    from sklearn.utils import check_random_state

    from hotops.kernels.nmf.init import nndsvd, resolve_init

    init = resolve_init(init, r, m, n)
    mean = float(V.mean().compute())
    if init == "random":
        avg = np.sqrt(mean / r)
        rng = check_random_state(random_state)
        H = np.abs(avg * rng.standard_normal(size=(r, n)).astype(dtype, copy=False))
        W = np.abs(avg * rng.standard_normal(size=(m, r)).astype(dtype, copy=False))
        return W, H
    import dask.array as da

    U, S, Vt = da.linalg.svd(V)
    U, S, Vt = (np.asarray(a) for a in client.compute([U[:, :r], S[:r], Vt[:r]], sync=True))
    W, H = nndsvd(np, np.empty((1, m, n), dtype), U[None], S[None], Vt[None], r, init,
                   check_random_state(random_state), [mean])
    return np.ascontiguousarray(W[0], dtype), np.ascontiguousarray(H[0], dtype)


def nmf(V, n_components, *, client=None, init=None, beta_loss="frobenius", tol=1e-4,
        max_iter=200, random_state=None, alpha_W=0.0, alpha_H="same", l1_ratio=0.0,
        W=None, H=None, checkpoint_every=10, max_restarts=5, callback=None,
        return_n_iter=False):
    """Factorise a row-chunked dask array V ~ W H on a dask.distributed cluster.

    Parameters
    ----------
    V : dask.array.Array (m, n), dense chunks, non-negative, float32/float64
        Chunked along rows (column chunks are merged into one).
    n_components : int
    client : distributed.Client, optional
        Default: the current client (``distributed.get_client()``).
    init : {None, 'random', 'nndsvd', 'nndsvda', 'nndsvdar', 'custom'}
        'random' draws the same numbers as scikit-learn / ``hotops.NMF`` for the same
        ``random_state``; NNDSVD uses dask's tall-skinny SVD (exact, where scikit-learn uses
        a randomized SVD); 'custom' uses W (m, r) and H (r, n).
    beta_loss, tol, max_iter, alpha_W, alpha_H, l1_ratio
        As ``hotops.NMF`` (scikit-learn's MU semantics).
    checkpoint_every : int
        Iterations between gathers of W to the client (the restart point after a failure).
    max_restarts : int
        Worker failures tolerated before giving up (RuntimeError).
    callback : callable, optional
        ``callback(n_iter, error)`` at every objective evaluation (every 10 iterations).

    Returns
    -------
    W : ndarray (m, r), H : ndarray (r, n) ; n_iter if ``return_n_iter``.

    Notes
    -----
    Lee & Seung (2001) eqs. (4)-(5); the reductions are sum_c W_c^T V_c and sum_c W_c^T W_c
    (Frobenius) or sum_c W_c^T (V_c / W_c H) and sum_c 1^T W_c (KL). No mask support here.
    """
    import dask.array as da
    from sklearn.exceptions import ConvergenceWarning

    from hotops.kernels._validate import check_int
    from hotops.kernels.nmf import beta_loss_to_float, check_nonnegative, check_stopping
    from hotops.kernels.nmf.common import DEN_GRAM, DEN_MAT, DEN_VEC, FROB, KL, Params, finish_error
    from hotops.kernels.nmf.dense import update_cols
    from hotops.kernels.nmf.init import regularization

    if not isinstance(V, da.Array):
        raise TypeError(f"V must be a dask.array.Array, got {type(V).__module__}.{type(V).__qualname__}")
    if V.ndim != 2:
        raise ValueError(f"V must be 2-D (m, n), got shape {V.shape}")
    if V.dtype.kind in "iub":
        V = V.astype(np.float64)
    if np.dtype(V.dtype) not in (np.float32, np.float64):
        raise TypeError(f"V must have dtype float32 or float64, got {V.dtype}")
    if isinstance(n_components, bool) or not isinstance(n_components, numbers.Integral) or n_components < 1:
        raise ValueError(f"n_components must be a positive integer, got {n_components!r}")
    if not isinstance(checkpoint_every, numbers.Integral) or checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be a positive integer, got {checkpoint_every!r}")
    max_restarts = check_int("max_restarts", max_restarts, min=0)
    max_iter, tol = check_stopping(max_iter, tol)
    r = int(n_components)
    m, n = V.shape
    if m == 0 or n == 0 or any(math.isnan(s) for s in (m, n)):
        raise ValueError(f"V must be non-empty with known sizes, got shape {V.shape}")
    dtype = np.dtype(V.dtype)
    beta = beta_loss_to_float(beta_loss)
    l1W, l1H, l2W, l2H = regularization(alpha_W, alpha_H, l1_ratio, m, n)
    if client is None:
        from distributed import get_client

        client = get_client()
    if len(V.chunks[1]) > 1:
        V = V.rechunk({1: -1})
    # validate (one pass over V on the cluster: counts of bad entries per chunk)
    bad = da.map_blocks(lambda b: np.array([[int((~np.isfinite(b) | (b < 0)).sum())]]), V,
                        dtype=np.int64, chunks=(1, 1)).sum().compute()
    if bad:
        check_nonnegative("V", V.compute())  # the error path only: name the first bad entry
    if beta <= 0 and float(V.min().compute()) == 0:
        raise ValueError("V contains zeros and beta_loss <= 0 (Itakura-Saito)")
    if init == "custom":
        if W is None or H is None:
            raise ValueError("init='custom' needs both W and H")
        W = np.array(W, dtype=dtype, order="C", copy=True)
        H = np.array(H, dtype=dtype, order="C", copy=True)
        if W.shape != (m, r) or H.shape != (r, n):
            raise ValueError(f"W and H must have shapes {(m, r)} and {(r, n)}, got {W.shape} and {H.shape}")
        check_nonnegative("W", W)
        check_nonnegative("H", H)
    else:
        W, H = _init(V, r, init, random_state, m, n, dtype, client)
    p = Params(beta)

    bounds = np.cumsum((0,) + V.chunks[0])
    X_fut = client.compute(list(V.to_delayed().ravel()))

    def scatter_W(Wh):
        return [client.scatter(np.ascontiguousarray(Wh[a:b]), hash=False)
                for a, b in zip(bounds[:-1], bounds[1:])]

    def error(W_fut, H):
        parts = _result([client.submit(_chunk_error, x, w, H, beta, pure=False)
                         for x, w in zip(X_fut, W_fut)], client)
        tot = np.sum([t for t, _ in parts], axis=0)
        sum_wh = float(np.dot(np.sum([s for _, s in parts], axis=0), H.sum(axis=1))) if p.kind == KL else 0.0
        return np.float64(finish_error(p, tot, sum_wh, m * n, tot[2]))

    restarts = 0
    # checkpoint: (iteration, W on the client, H, previous error, error at init)
    ckpt = None
    while True:
        try:
            if ckpt is None:
                W_fut = scatter_W(W)
                H_cur = H.copy()
                error_at_init = error(W_fut, H_cur)
                previous_error = error_at_init
                start = 1
                ckpt = (0, W.copy(), H_cur.copy(), previous_error, error_at_init)
            else:
                it0, Wc, Hc, previous_error, error_at_init = ckpt
                W_fut = scatter_W(Wc)
                H_cur = Hc.copy()
                start = it0 + 1
            n_iter = start - 1
            for n_iter in range(start, max_iter + 1):
                steps = [client.submit(_chunk_step, x, w, H_cur, beta, (l1W, l2W), pure=False)
                         for x, w in zip(X_fut, W_fut)]
                W_fut = [client.submit(operator.getitem, s, 0, pure=False) for s in steps]
                parts = _result([client.submit(operator.getitem, s, 1, pure=False) for s in steps], client)
                del steps
                num = np.sum([q[0] for q in parts], axis=0)
                second = np.sum([q[1] for q in parts], axis=0)
                s0 = np.empty(0, dtype)
                D0 = np.empty((0, 0), dtype)
                block = 256
                if p.kind == FROB:
                    update_cols(H_cur, num, second, s0, D0, DEN_GRAM, l1H, l2H, p.gamma, p.zH, p.eps, block)
                elif p.kind == KL:
                    second = second.astype(dtype)
                    second[second == 0] = 1.0
                    update_cols(H_cur, num, D0, second, D0, DEN_VEC, l1H, l2H, p.gamma, p.zH, p.eps, block)
                else:
                    update_cols(H_cur, num, D0, s0, second, DEN_MAT, l1H, l2H, p.gamma, p.zH, p.eps, block)
                stop = False
                if tol > 0 and n_iter % 10 == 0:
                    err = error(W_fut, H_cur)
                    if callback is not None:
                        callback(n_iter, float(err))
                    with np.errstate(divide="ignore", invalid="ignore"):
                        stop = bool((previous_error - err) / error_at_init < tol)
                    if not stop:
                        previous_error = err
                if stop:
                    break
                if n_iter % checkpoint_every == 0:
                    Wh = np.concatenate(_result(W_fut, client), axis=0)
                    ckpt = (n_iter, Wh, H_cur.copy(), previous_error, error_at_init)
            W_out = np.concatenate(_result(W_fut, client), axis=0)
            break
        except _Lost as exc:
            restarts += 1
            log.warning("hotops.distributed.nmf: lost futures (%s); restarting from the checkpoint "
                        "at iteration %d", exc, ckpt[0] if ckpt else 0)
            if restarts > max_restarts:
                raise RuntimeError(f"hotops.distributed.nmf: gave up after {max_restarts} worker failures ({exc})") from exc
            X_fut = client.compute(list(V.to_delayed().ravel()))
    if n_iter == max_iter and tol > 0:
        warnings.warn(f"Maximum number of iterations {max_iter} reached. Increase it to improve "
                      "convergence.", ConvergenceWarning)
    out = (W_out, H_cur)
    return out + (n_iter,) if return_n_iter else out
