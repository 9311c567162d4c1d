"""Non-negative matrix factorisation by multiplicative updates (Lee & Seung 2001).

Arrays in, arrays out: ``multiplicative_update`` runs scikit-learn's MU loop (W first, then
H; the objective every 10 iterations; stop when ``(previous - error) / error_at_init < tol``)
on factors the caller owns, in place; ``batched_multiplicative_update`` does the same for B
independent problems in one parallel kernel. numpy / scipy.sparse go to the Numba CPU
kernels (``cpu.py``), CUDA arrays (CuPy, numba device arrays) to their numba.cuda twins
(``cuda.py``, GEMMs through CuPy's cuBLAS).

Notes
-----
Lee & Seung (2001), Theorems 1-2: for the Euclidean distance
``H <- H * (W^T V) / (W^T W H)``, ``W <- W * (V H^T) / (W H H^T)``; for the KL divergence
``H <- H * (W^T (V / WH)) / (W^T 1)``, ``W <- W * ((V / WH) H^T) / (1 H^T)``. Fevotte &
Idier (2011), Neural Computation 23(9), eq. (67)-(68) and Table 2: for the beta-divergence
the ratio ``(num / den)`` is raised to gamma(beta) = 1/(2-beta) (beta < 1), 1 (1 <= beta
<= 2), 1/(beta-1) (beta > 2), which keeps the objective non-increasing. With a weight mask
M the same majorisation gives ``num = (M * V * WH^(beta-2)) H^T`` and
``den = (M * WH^(beta-1)) H^T`` (and their W^T (.) twins); entries with M = 0 are ignored.
"""
from __future__ import annotations

import numpy as np

from .._backend import CPU, backend_of
from .._blas import single_threaded_blas
from .._validate import check_dtype

__all__ = [
    "EPSILON",
    "beta_loss_to_float",
    "check_nonnegative",
    "multiplicative_update",
    "batched_multiplicative_update",
    "objective",
]

#: scikit-learn's ``EPSILON`` in ``_nmf.py``: float32's machine epsilon, also for float64.
EPSILON = float(np.finfo(np.float32).eps)
_DTYPES = (np.float32, np.float64)
_BETA_NAMES = {"frobenius": 2.0, "kullback-leibler": 1.0, "itakura-saito": 0.0}


def beta_loss_to_float(beta_loss) -> float:
    """``'frobenius'`` -> 2, ``'kullback-leibler'`` -> 1, ``'itakura-saito'`` -> 0, floats as is."""
    if isinstance(beta_loss, str):
        if beta_loss not in _BETA_NAMES:
            raise ValueError(
                f"beta_loss must be one of {sorted(_BETA_NAMES)} or a float, got {beta_loss!r}"
            )
        return _BETA_NAMES[beta_loss]
    try:
        beta = float(beta_loss)
    except (TypeError, ValueError):
        raise TypeError(f"beta_loss must be a string or a real number, got {beta_loss!r}") from None
    if not np.isfinite(beta):
        raise ValueError(f"beta_loss must be finite, got {beta_loss!r}")
    return beta


def _is_sparse(x) -> bool:
    try:
        import scipy.sparse as sp
    except ImportError:  # pragma: no cover
        return False
    return sp.issparse(x)


def _is_cupy_sparse(x) -> bool:
    return type(x).__module__.startswith("cupyx.scipy.sparse")


#: below this many entries check_nonnegative uses numpy's min / max (no thread wake-up)
_SCAN_MIN = 1 << 18


def _scan_tasks() -> int:
    import numba

    return max(1, numba.get_num_threads())


def check_nonnegative(name: str, X) -> None:
    """``ValueError`` naming the count and the first offending index of non-finite (NaN or
    inf) entries of X, or else of its negative entries (numpy, scipy.sparse, CuPy or
    cupyx.scipy.sparse). The wording keeps scikit-learn's phrases ("NaN", "inf",
    "Negative values in data") so that its estimator checks recognise the errors."""
    sparse = _is_sparse(X) or _is_cupy_sparse(X) or hasattr(X, "indptr")
    data = X.data if sparse else X
    xp, data = _array_module(data)
    if not sparse:
        X = data
    if (isinstance(data, np.ndarray) and data.size >= _SCAN_MIN and data.dtype.kind == "f"
            and data.flags["C_CONTIGUOUS"] and data.dtype.itemsize in (4, 8)):
        # large float arrays: one parallel Numba pass counts the bad entries (2.0 -> 0.6 ms
        # for 2000 x 1500 float32 on 2 threads); the slow path below locates them
        from . import cpu

        if cpu.all_finite_nonneg(data.reshape(-1), _scan_tasks()):
            return
    elif data.size and np.dtype(data.dtype).kind in "fiu":
        # fast path, two vectorised reductions and no temporaries (the counting path below
        # makes four passes and two boolean arrays: 7.8 -> 1.1 ms on 2000 x 1500 float32):
        # NaN fails both comparisons, so only clean data returns here
        if bool(data.min() >= 0) and bool(data.max() < np.inf):
            return
    if np.dtype(data.dtype).kind not in "fc":
        bad_finite = None
        n_finite = 0
    else:
        bad_finite = ~xp.isfinite(data)
        n_finite = int(bad_finite.sum())
    if n_finite:
        bad, count = bad_finite, n_finite
        what = f"{name} contains NaN or inf: {count} non-finite entr{'y' if count == 1 else 'ies'}"
    else:
        bad = data < 0
        count = int(bad.sum())
        if count == 0:
            return
        what = (f"Negative values in data passed to {name}: {count} negative "
                f"entr{'y' if count == 1 else 'ies'}")
    if sparse:
        # the first offending entry in row-major order, whatever the storage format
        coo = X.tocoo()
        sel = np.flatnonzero(np.asarray(_host(bad if X.format == "coo" else
                                              (~xp.isfinite(coo.data) if n_finite else coo.data < 0))))
        rows = np.asarray(_host(coo.row))[sel]
        cols = np.asarray(_host(coo.col))[sel]
        e = int(np.lexsort((cols, rows))[0])
        idx = (int(rows[e]), int(cols[e]))
        value = np.asarray(_host(coo.data))[sel[e]]
    else:
        flat = int(xp.argmax(bad.ravel()))
        idx = tuple(int(i) for i in np.unravel_index(flat, X.shape))
        value = _host(X[idx])
    where = ", ".join(str(i) for i in idx)
    raise ValueError(f"{what}, the first at {name}[{where}] = {float(value)!r}")


def _array_module(a):
    """(xp, a): numpy or CuPy; other device arrays (numba's, the simulator's) are copied
    to the host for the check, since numba device arrays have no reductions."""
    if isinstance(a, np.ndarray):
        return np, a
    if type(a).__module__.startswith("cupy"):
        import cupy

        return cupy, a
    if hasattr(a, "copy_to_host"):
        return np, a.copy_to_host()
    return np, np.asarray(a)


def _host(x):
    if hasattr(x, "get"):
        return x.get()
    return x


def _check_factor(name, F, shape, dtype):
    if tuple(F.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(F.shape)}")
    if np.dtype(F.dtype) != dtype:
        raise TypeError(f"{name} must have V's dtype {dtype.name}, got {np.dtype(F.dtype).name}")
    flags = getattr(F, "flags", None)
    if flags is not None and not flags["C_CONTIGUOUS"]:
        raise ValueError(f"{name} must be C-contiguous (it is updated in place)")


def _cpu_problem(V, mask, beta, r):
    from . import cpu

    p = cpu.Params(beta, EPSILON)
    if _is_sparse(V):
        import scipy.sparse as sp

        X = V.tocsr() if V.format != "csr" else V
        if not X.has_canonical_format:  # duplicates would be fitted as separate entries
            X = X.copy() if X is V else X
            X.sum_duplicates()
        weights = None
        if mask is not None:
            Mc = sp.csr_matrix(mask) if not sp.issparse(mask) else mask.tocsr()
            Mc = Mc.astype(X.dtype)
            Mc.sum_duplicates()
            Mc.eliminate_zeros()
            rows = np.repeat(np.arange(Mc.shape[0]), np.diff(Mc.indptr))
            vals = np.asarray(X[rows, Mc.indices]).ravel().astype(X.dtype) if Mc.nnz else np.empty(0, X.dtype)
            X = sp.csr_matrix((vals, Mc.indices.copy(), Mc.indptr.copy()), shape=X.shape)
            weights = Mc.data
        return cpu.SparseProblem(X, weights, p, r)
    M = None
    if mask is not None:
        M = mask.toarray() if _is_sparse(mask) else np.asarray(mask)
        M = np.ascontiguousarray(M, dtype=V.dtype)
    return cpu.DenseProblem(V, M, p, r)


def _cuda_problem(V, mask, beta, r, stream):
    from . import cuda, cpu

    return cuda.make_problem(V, mask, cpu.Params(beta, EPSILON), r, stream)


def _validate(V, W, H, mask, beta, backend):
    if len(V.shape) != 2:
        raise ValueError(f"V must be 2-D (m, n), got shape {tuple(V.shape)}")
    dtype = check_dtype("V", V, _DTYPES)
    m, n = V.shape
    if W is None or H is None:
        raise TypeError("W and H (the initial factors) are required")
    if len(W.shape) != 2:
        raise ValueError(f"W must be 2-D (m, r), got shape {tuple(W.shape)}")
    r = W.shape[1]
    _check_factor("W", W, (m, r), dtype)
    _check_factor("H", H, (r, n), dtype)
    if mask is not None and tuple(mask.shape) != (m, n):
        raise ValueError(f"mask must have V's shape {(m, n)}, got {tuple(mask.shape)}")
    return dtype, r


def make_problem(V, mask, beta_loss, r, stream=None):
    """The per-backend problem object (``update_W``, ``update_H``, ``error``...), for drivers
    that run their own loop (``hotops.distributed``)."""
    beta = beta_loss_to_float(beta_loss)
    if _is_sparse(V) or isinstance(V, np.ndarray):
        return _cpu_problem(V, mask, beta, r)
    return _cuda_problem(V, mask, beta, r, stream)


def multiplicative_update(V, W, H, *, beta_loss="frobenius", max_iter=200, tol=1e-4,
                          l1_reg_W=0.0, l1_reg_H=0.0, l2_reg_W=0.0, l2_reg_H=0.0,
                          update_H=True, mask=None, callback=None, check_input=True,
                          stream=None):
    """Run the multiplicative-update NMF loop on V ~ W H, updating W and H in place.

    Parameters
    ----------
    V : array (m, n)
        Non-negative data: numpy (dense), scipy.sparse (CSR/CSC/COO; CSR is used), or a
        CUDA array / cupyx sparse matrix; float32 or float64. Never modified.
    W, H : arrays (m, r), (r, n)
        Initial factors on V's device, V's dtype, C-contiguous; updated in place.
    beta_loss : {'frobenius', 'kullback-leibler', 'itakura-saito'} or float
    max_iter, tol : stopping rule of scikit-learn's MU solver (error every 10 iterations).
    l1_reg_W, l1_reg_H, l2_reg_W, l2_reg_H : float
        Already scaled penalties (scikit-learn's ``_compute_regularization``).
    update_H : bool
        False keeps H fixed (``transform``).
    mask : array (m, n), optional
        Non-negative weights (0 = missing). With sparse V the mask's stored entries are the
        observed ones (V's implicit zeros there count as observed zeros).
    callback : callable, optional
        ``callback(n_iter, error)`` after each error evaluation (every 10 iterations).

    Returns
    -------
    n_iter : int
    W, H : the updated factors (the same arrays as given).

    Notes
    -----
    Lee & Seung (2001), eqs. (4) and (5); Fevotte & Idier (2011) for beta and gamma(beta).
    Identical in arithmetic order of operations (not in summation order) to
    ``sklearn.decomposition._nmf._fit_multiplicative_update``.
    """
    sparse = _is_sparse(V) or _is_cupy_sparse(V) or hasattr(V, "indptr")
    backend = backend_of(V=V.data if sparse else V, W=W, H=H)
    beta = beta_loss_to_float(beta_loss)
    _dtype, r = _validate(V, W, H, mask, beta, backend)
    if check_input:
        check_nonnegative("V", V)
        if mask is not None:
            check_nonnegative("mask", mask)
        if beta <= 0 and _has_zero(V):
            raise ValueError(
                "V contains zeros and beta_loss <= 0 (Itakura-Saito): the updates divide by "
                "zero; add a small constant to V or use beta_loss > 0"
            )
    if backend == CPU:
        problem = _cpu_problem(V, mask, beta, r)
    else:
        problem = _cuda_problem(V, mask, beta, r, stream)
    return run_loop(problem, W, H, max_iter=max_iter, tol=tol, l1_reg_W=l1_reg_W,
                    l1_reg_H=l1_reg_H, l2_reg_W=l2_reg_W, l2_reg_H=l2_reg_H,
                    update_H=update_H, callback=callback)


def _has_zero(V) -> bool:
    if _is_sparse(V) or _is_cupy_sparse(V) or hasattr(V, "indptr"):
        _xp, data = _array_module(V.data)
        return V.nnz < V.shape[0] * V.shape[1] or bool((data == 0).any())
    _xp, data = _array_module(V)
    return bool((data == 0).any())


def run_loop(problem, W, H, *, max_iter, tol, l1_reg_W, l1_reg_H, l2_reg_W, l2_reg_H,
             update_H=True, callback=None, final_error=None):
    """scikit-learn's ``_fit_multiplicative_update`` loop over a problem object.

    ``final_error``: a list that receives the objective at the returned factors."""
    with _threads_for(problem, W.shape[1]):
        return _run_loop(problem, W, H, max_iter=max_iter, tol=tol, l1_reg_W=l1_reg_W,
                         l1_reg_H=l1_reg_H, l2_reg_W=l2_reg_W, l2_reg_H=l2_reg_H,
                         update_H=update_H, callback=callback, final_error=final_error)


class _threads_for:
    """Run small CPU fits on one Numba thread (see ``config.CPU_SERIAL_WORK``); problems that
    call BLAS inside their Numba tasks (``blas_in_tasks``) get single-threaded BLAS meanwhile."""

    def __init__(self, problem, r):
        from . import config

        work = getattr(problem, "work", None)
        self.serial = work is not None and work * r < config.CPU_SERIAL_WORK
        self.saved = None
        self.blas = None
        self.one_blas = bool(getattr(problem, "blas_in_tasks", False))

    def __enter__(self):
        if self.serial:
            import numba

            self.saved = numba.get_num_threads()
            numba.set_num_threads(1)
        if self.one_blas:
            self.blas = single_threaded_blas()
            self.blas.__enter__()
        return self

    def __exit__(self, *exc):
        if self.blas is not None:
            self.blas.__exit__(*exc)
            self.blas = None
        if self.saved is not None:
            import numba

            numba.set_num_threads(self.saved)
            self.saved = None
        return False


def _run_loop(problem, W, H, *, max_iter, tol, l1_reg_W, l1_reg_H, l2_reg_W, l2_reg_H,
              update_H=True, callback=None, final_error=None):
    Wk, Hk = problem.start(W, H)
    # the initial objective, fused into the first W update where the problem can (sparse
    # KL: both evaluate W H at every non-zero)
    fused = getattr(problem, "error_then_update_W", None)
    err0 = None
    if fused is not None and max_iter >= 1:
        err0 = fused(Wk, Hk, float(l1_reg_W), float(l2_reg_W), H_fixed=not update_H)
    first_W_done = err0 is not None
    # the final objective, fused into the last H update where the problem can (sparse KL)
    fused_last = getattr(problem, "update_H_then_error", None) if final_error is not None else None
    last_err = None
    # whole iterations in one call where the problem can (dense Frobenius): up to the next
    # objective evaluation (every 10 iterations with tol > 0), else all of them; the
    # objectives come from the products of the iterations (``DenseProblem.iterate``)
    fused_iters = (update_H and max_iter >= 1 and getattr(problem, "can_iterate", False)
                   and not first_W_done)
    error_at_init = None
    if not fused_iters:
        error_at_init = np.float64(err0 if first_W_done else problem.error(Wk, Hk))
    previous_error = error_at_init

    def converged(n_iter, error):
        """scikit-learn's MU stopping rule (relative decrease since the last check < tol)."""
        nonlocal previous_error
        if callback is not None:
            callback(n_iter, float(error))
        with np.errstate(divide="ignore", invalid="ignore"):
            stop = (previous_error - error) / error_at_init < tol
        previous_error = error
        return stop

    n_iter = 0
    while fused_iters and n_iter < max_iter:
        step = max_iter - n_iter if tol <= 0 else min(max_iter - n_iter, 10 - n_iter % 10)
        check = tol > 0 and (n_iter + step) % 10 == 0
        e0, e_end = problem.iterate(Wk, Hk, step, float(l1_reg_W), float(l2_reg_W), float(l1_reg_H),
                                    float(l2_reg_H), remaining=max_iter - n_iter,
                                    want_err0=n_iter == 0,
                                    want_err=check or (final_error is not None and n_iter + step == max_iter))
        if n_iter == 0:
            error_at_init = previous_error = np.float64(e0)
        n_iter += step
        last_err = e_end
        if check and converged(n_iter, np.float64(e_end)):
            break
    for n_iter in range(1, 0 if fused_iters else max_iter + 1):
        if not (n_iter == 1 and first_W_done):
            problem.update_W(Wk, Hk, float(l1_reg_W), float(l2_reg_W), H_fixed=not update_H)
        if update_H:
            if fused_last is not None and n_iter == max_iter:
                last_err = fused_last(Wk, Hk, float(l1_reg_H), float(l2_reg_H))
            if last_err is None:
                problem.update_H(Wk, Hk, float(l1_reg_H), float(l2_reg_H))
        if tol > 0 and n_iter % 10 == 0:
            if converged(n_iter, np.float64(last_err if last_err is not None else problem.error(Wk, Hk))):
                break
    problem.release()
    if final_error is not None:
        final_error.append(float(last_err if last_err is not None else problem.error(Wk, Hk)))
    Wf, Hf = problem.factors(Wk, Hk, H)
    if Hf is not H:
        H[...] = Hf
    if Wf is not W:
        W[...] = Wf
    return n_iter, W, H


def objective(V, W, H, *, beta_loss="frobenius", mask=None) -> float:
    """scikit-learn's ``_beta_divergence(V, W, H, beta, square_root=True)`` (weighted by the
    mask when given), computed by hotops' kernels without forming WH in full."""
    beta = beta_loss_to_float(beta_loss)
    problem = make_problem(V, mask, beta, W.shape[1])
    Wk, Hk = problem.start(W, H)
    with _threads_for(problem, W.shape[1]):  # one BLAS thread where BLAS runs in Numba tasks
        return float(problem.error(Wk, Hk))


def batched_multiplicative_update(V, W, H, *, beta_loss="frobenius", max_iter=200, tol=1e-4,
                                  l1_reg_W=0.0, l1_reg_H=0.0, l2_reg_W=0.0, l2_reg_H=0.0,
                                  mask=None, check_input=True, stream=None):
    """B independent MU problems V[b] ~ W[b] H[b] in one call, each with its own stop.

    Parameters
    ----------
    V : array (B, m, n), float32/float64, numpy or CUDA
    W, H : arrays (B, m, r), (B, r, n), V's dtype and device, C-contiguous; updated in place.
    mask : array (B, m, n), optional weights.
    l1_reg_*, l2_reg_* : float, scalars or arrays (B,)
        Already scaled penalties (per problem when arrays).

    Returns
    -------
    n_iter : array (B,) int64, iterations run by each problem.
    error : array (B,) float64, final objective (square-root form) of each problem.

    Notes
    -----
    One parallel task per problem runs the whole loop of ``multiplicative_update`` (CPU); on
    the GPU, batched GEMMs (CuPy ``matmul``) and one elementwise kernel per step, with
    converged problems frozen by a per-problem flag.
    """
    backend = backend_of(V=V, W=W, H=H, mask=mask)
    if len(V.shape) != 3:
        raise ValueError(f"V must be 3-D (B, m, n), got shape {tuple(V.shape)}")
    dtype = check_dtype("V", V, _DTYPES)
    nb, m, n = V.shape
    if len(W.shape) != 3:
        raise ValueError(f"W must be 3-D (B, m, r), got shape {tuple(W.shape)}")
    r = W.shape[2]
    _check_factor("W", W, (nb, m, r), dtype)
    _check_factor("H", H, (nb, r, n), dtype)
    if mask is not None:
        if tuple(mask.shape) != (nb, m, n):
            raise ValueError(f"mask must have V's shape {(nb, m, n)}, got {tuple(mask.shape)}")
    beta = beta_loss_to_float(beta_loss)
    if check_input:
        check_nonnegative("V", V)
        if mask is not None:
            check_nonnegative("mask", mask)
        if beta <= 0 and _has_zero(V):
            raise ValueError("V contains zeros and beta_loss <= 0 (Itakura-Saito)")
    regs = [np.broadcast_to(np.asarray(x, np.float64), (nb,)) for x in (l1_reg_W, l1_reg_H, l2_reg_W, l2_reg_H)]
    if backend == CPU:
        from . import cpu

        p = cpu.Params(beta, EPSILON)
        M = np.ascontiguousarray(mask, dtype=dtype) if mask is not None else np.empty((1, 1, 1), dtype)
        X = np.ascontiguousarray(V)
        n_iter = np.empty(nb, np.int64)
        err = np.empty(nb, np.float64)
        if all(float(x.min()) == float(x.max()) for x in regs):
            cpu.batched_fit(X, M, mask is not None, W, H, p.kind, p.beta, p.gamma, int(max_iter),
                            float(tol), *(float(x[0]) for x in regs), p.eps, p.clamp_num,
                            p.clamp_den, p.zW, p.zH, n_iter, err)
        else:  # per-problem penalties: one call per distinct set (rare)
            for b in range(nb):
                cpu.batched_fit(X[b:b + 1], M[b:b + 1] if mask is not None else M, mask is not None,
                                W[b:b + 1], H[b:b + 1], p.kind, p.beta, p.gamma, int(max_iter),
                                float(tol), *(float(x[b]) for x in regs), p.eps, p.clamp_num,
                                p.clamp_den, p.zW, p.zH, n_iter[b:b + 1], err[b:b + 1])
        return n_iter, err
    from . import cuda, cpu

    return cuda.batched_fit(V, W, H, mask, cpu.Params(beta, EPSILON), int(max_iter), float(tol),
                            regs, stream)
