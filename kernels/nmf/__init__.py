"""Non-negative matrix factorisation by multiplicative updates (Lee & Seung 2001).

Arrays in, arrays out: ``multiplicative_update`` runs scikit-learn's MU loop (W first, then
H; the objective every 10 iterations; stop when ``(previous - error) / error_at_init < tol``)
on factors the caller owns, in place; ``batched_multiplicative_update`` does the same for B
independent problems in one parallel kernel, and ``batched_nmf`` is the whole batched
algorithm for numpy / CuPy stacks (checks, initial factors, penalties, the kernel, the
convergence warning). numpy / scipy.sparse go to the Numba CPU kernels (launched by
``cpu.py``), CUDA arrays (CuPy, numba device arrays) to their numba.cuda twins (``cuda.py``,
GEMMs through CuPy's cuBLAS).

The room: ``common.py`` (constants, ``Params``, the objective's last step), ``terms.py``
(the per-entry arithmetic, written once for both targets), ``checks.py``
(``check_nonnegative``), ``dense.py`` / ``sparse.py`` / ``divergence.py`` / ``batched.py``
(the Numba CPU kernels), ``cpu.py`` (their launchers), ``cuda.py`` (the GPU twin),
``init.py`` (initial factors), ``config.py`` (launch settings).

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

import numbers
import warnings

import numpy as np

from .._backend import CPU, backend_of, is_cupy, is_torch
from .._validate import check_dtype, check_size, check_writeable
from .checks import array_module, check_nonnegative
from .common import DTYPES, EPSILON, Params, beta_loss_to_float, check_stopping, is_host_sparse, is_sparse

__all__ = [
    "EPSILON",
    "Params",
    "batched_multiplicative_update",
    "batched_nmf",
    "beta_loss_to_float",
    "check_nonnegative",
    "check_stopping",
    "make_problem",
    "multiplicative_update",
    "objective",
    "run_loop",
]


def _check_factor(name, F, shape, dtype, in_place=True):
    if not hasattr(F, "shape") or not hasattr(F, "dtype"):
        raise TypeError(f"{name} must be an array, got {type(F).__module__}.{type(F).__qualname__}")
    if len(F.shape) != len(shape):
        raise ValueError(f"{name} must have {len(shape)} dimensions, got shape {tuple(F.shape)}")
    if tuple(F.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(F.shape)}")
    if np.dtype(F.dtype) != dtype:
        raise TypeError(f"{name} must have V's dtype {dtype.name}, got {np.dtype(F.dtype).name}")
    if not in_place:
        return
    flags = getattr(F, "flags", None)
    if flags is not None and not flags["C_CONTIGUOUS"]:
        raise ValueError(f"{name} must be C-contiguous (it is updated in place)")
    check_writeable(name, F)


def _cpu_problem(V, mask, beta, r):
    from . import cpu

    return cpu.cpu_problem(V, mask, beta, r)


def _cuda_problem(V, mask, beta, r, stream):
    from . import cuda

    return cuda.make_problem(V, mask, Params(beta), r, stream)


def _check_V(V):
    """V as the problems take it: 2-D, float32/float64, non-empty; (dtype, m, n)."""
    if not hasattr(V, "shape") or not hasattr(V, "dtype"):
        raise TypeError(f"V must be an array or a sparse matrix, got {type(V).__module__}.{type(V).__qualname__}")
    if len(V.shape) != 2:
        raise ValueError(f"V must be 2-D (m, n), got shape {tuple(V.shape)}")
    dtype = check_dtype("V", V, DTYPES)
    m, n = V.shape
    if m == 0 or n == 0:
        raise ValueError(f"V must be non-empty, got shape {tuple(V.shape)}")
    return dtype, m, n


def _validate(V, W, H, mask, beta, backend):
    dtype, m, n = _check_V(V)
    if W is None or H is None:
        raise TypeError("W and H (the initial factors) are required")
    if len(W.shape) != 2:
        raise ValueError(f"W must be 2-D (m, r), got shape {tuple(W.shape)}")
    r = W.shape[1]
    _check_factor("W", W, (m, r), dtype)
    _check_factor("H", H, (r, n), dtype)
    _check_mask_shape(mask, (m, n))
    return dtype, r


def _check_mask_shape(mask, shape):
    if mask is not None and tuple(mask.shape) != tuple(shape):
        raise ValueError(f"mask must have V's shape {tuple(shape)}, got {tuple(mask.shape)}")


def make_problem(V, mask, beta_loss, r, stream=None):
    """The per-backend problem object (``update_W``, ``update_H``, ``error``...), for drivers
    that run their own loop (``hotops.distributed``)."""
    beta = beta_loss_to_float(beta_loss)
    _check_V(V)
    _check_mask_shape(mask, V.shape)
    from .._validate import check_int

    r = check_int("r", r, min=1)
    if is_host_sparse(V) or isinstance(V, np.ndarray):
        return _cpu_problem(V, mask, beta, r)
    backend_of(V=V.data if is_sparse(V) else V)  # TypeError for torch tensors and other objects
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
    backend = backend_of(V=V.data if is_sparse(V) else V, W=W, H=H)
    beta = beta_loss_to_float(beta_loss)
    max_iter, tol = check_stopping(max_iter, tol)
    _dtype, r = _validate(V, W, H, mask, beta, backend)
    if check_input:
        check_nonnegative("V", V)
        if mask is not None:
            check_nonnegative("mask", mask)
        check_nonnegative("W", W)
        check_nonnegative("H", H)
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
    if is_sparse(V):
        _xp, data = array_module(V.data)
        return V.nnz < V.shape[0] * V.shape[1] or bool((data == 0).any())
    _xp, data = array_module(V)
    return bool((data == 0).any())


def run_loop(problem, W, H, *, max_iter, tol, l1_reg_W, l1_reg_H, l2_reg_W, l2_reg_H,
             update_H=True, callback=None, final_error=None):
    """scikit-learn's ``_fit_multiplicative_update`` loop over a problem object.

    W (m, r) and H (r, n) are the problem's factors (its V's dtype, C-contiguous, writeable;
    updated in place). ``final_error``: a list that receives the objective at the returned
    factors."""
    from .cpu import threads_for

    max_iter, tol = check_stopping(max_iter, tol)
    if len(getattr(W, "shape", ())) != 2:
        raise ValueError(f"W must be 2-D (m, r), got {getattr(W, 'shape', type(W).__qualname__)}")
    dtype = check_dtype("W", W, DTYPES)
    shape = getattr(problem, "shape", None) or getattr(getattr(problem, "X", None), "shape", None)
    m, n = tuple(shape) if shape is not None else (W.shape[0], getattr(H, "shape", (0, 0))[-1])
    _check_factor("W", W, (m, W.shape[1]), dtype)
    _check_factor("H", H, (W.shape[1], n), dtype, in_place=update_H)  # only read with update_H=False
    with threads_for(problem, W.shape[1]):
        return _run_loop(problem, W, H, max_iter=max_iter, tol=tol, l1_reg_W=l1_reg_W,
                         l1_reg_H=l1_reg_H, l2_reg_W=l2_reg_W, l2_reg_H=l2_reg_H,
                         update_H=update_H, callback=callback, final_error=final_error)


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
    backend_of(V=V.data if is_sparse(V) else V, W=W, H=H)
    dtype, m, n = _check_V(V)
    if len(getattr(W, "shape", ())) != 2:
        raise ValueError(f"W must be 2-D (m, r), got shape {tuple(W.shape)}")
    _check_factor("W", W, (m, W.shape[1]), dtype, in_place=False)
    _check_factor("H", H, (W.shape[1], n), dtype, in_place=False)
    if isinstance(W, np.ndarray):
        W, H = np.ascontiguousarray(W), np.ascontiguousarray(H)
    problem = make_problem(V, mask, beta, W.shape[1])
    Wk, Hk = problem.start(W, H)
    from .cpu import threads_for

    with threads_for(problem, W.shape[1]):  # one BLAS thread where BLAS runs in Numba tasks
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
    max_iter, tol = check_stopping(max_iter, tol)
    if len(V.shape) != 3:
        raise ValueError(f"V must be 3-D (B, m, n), got shape {tuple(V.shape)}")
    dtype = check_dtype("V", V, DTYPES)
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
    if nb == 0 or m == 0 or n == 0:
        raise ValueError(f"V must be non-empty, got shape {tuple(V.shape)}")
    if check_input:
        check_nonnegative("V", V)
        if mask is not None:
            check_nonnegative("mask", mask)
        check_nonnegative("W", W)
        check_nonnegative("H", H)
        if beta <= 0 and _has_zero(V):
            raise ValueError("V contains zeros and beta_loss <= 0 (Itakura-Saito)")
    if isinstance(V, np.ndarray) and not V.flags.writeable:  # Numba's kernels are typed for writeable arrays
        V = V.copy()
    if isinstance(mask, np.ndarray) and not mask.flags.writeable:
        mask = mask.copy()
    regs = [np.broadcast_to(np.asarray(x, np.float64), (nb,)) for x in (l1_reg_W, l1_reg_H, l2_reg_W, l2_reg_H)]
    p = Params(beta)
    if backend == CPU:
        from . import cpu

        return cpu.batched_fit(V, W, H, mask, p, max_iter, tol, regs)
    from . import cuda

    return cuda.batched_fit(V, W, H, mask, p, int(max_iter), float(tol), regs, stream)


def _as_stack(name, A):
    """A numpy or CuPy array as the batched kernels take it: C-contiguous, integer and
    boolean input as float64; other numpy dtypes than float32 / float64 are refused."""
    if is_torch(A):
        raise TypeError(f"{name} is a torch tensor: torch input goes through hotops.batched_nmf "
                        "or hotops.bindings.nmf")
    if is_cupy(A):
        import cupy

        if A.dtype.kind in "iub":
            A = A.astype(cupy.float64)
        return cupy.ascontiguousarray(A)
    A = np.asarray(A)
    if A.dtype.kind in "iub":
        A = A.astype(np.float64)
    elif A.dtype not in DTYPES:
        raise TypeError(f"{name} must have a float32/float64 (or integer) dtype, got {A.dtype}")
    return np.ascontiguousarray(A)


def batched_nmf(V, n_components, *, init=None, beta_loss="frobenius", tol=1e-4, max_iter=200,
                random_state=None, alpha_W=0.0, alpha_H="same", l1_ratio=0.0, mask=None,
                W=None, H=None, return_n_iter=False):
    """Factorise B independent non-negative matrices V[b] ~ W[b] H[b] in one call.

    The array algorithm behind ``hotops.batched_nmf``: validation, initial factors,
    penalties, ``batched_multiplicative_update`` and the convergence warning.

    Parameters
    ----------
    V : array (B, m, n)
        numpy or CuPy; integer input is converted to float64. Never modified.
    n_components : int
        r, the same for every problem.
    init : {None, 'random', 'nndsvd', 'nndsvda', 'nndsvdar', 'custom'}
        As ``hotops.NMF`` (None: 'nndsvda' if r <= min(m, n) else 'random'); 'custom' uses
        W (B, m, r) and H (B, r, n).
    beta_loss, tol, max_iter, alpha_W, alpha_H, l1_ratio
        As ``hotops.NMF``; penalties are scaled by each problem's m and n.
    mask : array (B, m, n), optional
        Weights, 0 for missing entries; on V's device.
    return_n_iter : bool
        Also return the iterations each problem ran (convergence is judged per problem:
        every 10 iterations, ``(previous - error) / error_at_init < tol``).

    Returns
    -------
    W : (B, m, r), H : (B, r, n)
        New arrays of V's family (numpy or CuPy), device and dtype.
    n_iter : (B,) int64, if ``return_n_iter``.

    Warns
    -----
    ConvergenceWarning
        When ``tol > 0`` and some problem ran ``max_iter`` iterations.

    Notes
    -----
    Lee & Seung (2001) multiplicative updates, run by one parallel task per problem on the
    CPU (each task runs scikit-learn's whole MU loop on its problem); on the GPU by batched
    cuBLAS GEMMs and elementwise kernels over the whole stack.

    Examples
    --------
    >>> import numpy as np
    >>> from hotops.kernels.nmf import batched_nmf
    >>> V = np.random.default_rng(0).poisson(2.0, (4, 10, 8)).astype(float)
    >>> W, H = batched_nmf(V, 2, max_iter=50, tol=0)
    >>> W.shape, H.shape
    ((4, 10, 2), (4, 2, 8))
    """
    from .init import initialize_batched, regularization

    max_iter, tol = check_stopping(max_iter, tol)
    Vk = _as_stack("V", V)
    if len(Vk.shape) != 3:
        raise ValueError(f"V must be 3-D (B, m, n), got shape {tuple(Vk.shape)}")
    nb, m, n = Vk.shape
    if nb == 0 or m == 0 or n == 0:
        raise ValueError(f"V must be non-empty, got shape {tuple(Vk.shape)}")
    if isinstance(n_components, bool) or not isinstance(n_components, numbers.Integral) or n_components < 1:
        raise ValueError(f"n_components must be a positive integer, got {n_components!r}")
    r = int(n_components)
    check_size("n_components", (nb, max(m, n), r), Vk.dtype, "factors")
    beta = beta_loss_to_float(beta_loss)
    regs = regularization(alpha_W, alpha_H, l1_ratio, m, n)
    check_nonnegative("V", Vk)
    if beta <= 0 and float(Vk.min()) == 0:
        raise ValueError(
            "When beta_loss <= 0 and V contains zeros, the solver may diverge. Please add "
            "small values to V, or use a positive beta_loss."
        )
    if is_cupy(Vk):
        import cupy as xp
    else:
        xp = np
    Mk = None
    if mask is not None:
        Mk = _as_stack("mask", mask)
        if is_cupy(Mk) != is_cupy(Vk):
            raise TypeError("mask and V are on different devices")
        Mk = Mk.astype(Vk.dtype)
        if tuple(Mk.shape) != (nb, m, n):
            raise ValueError(f"mask must have V's shape {(nb, m, n)}, got {tuple(Mk.shape)}")
        check_nonnegative("mask", Mk)
    if init == "custom":
        if W is None or H is None:
            raise ValueError("init='custom' needs both W and H")
        Wk = xp.array(_as_stack("W", W), dtype=Vk.dtype, order="C", copy=True)
        Hk = xp.array(_as_stack("H", H), dtype=Vk.dtype, order="C", copy=True)
        for name, F, shape in (("W", Wk, (nb, m, r)), ("H", Hk, (nb, r, n))):
            if tuple(F.shape) != shape:
                raise ValueError(f"{name} must have shape {shape}, got {tuple(F.shape)}")
            check_nonnegative(name, F)
    else:
        if W is not None or H is not None:
            warnings.warn("When init!='custom', provided W or H are ignored.", RuntimeWarning)
        Wk, Hk = initialize_batched(Vk, r, init, random_state)
    n_iter, _err = batched_multiplicative_update(
        Vk, Wk, Hk, beta_loss=beta, max_iter=max_iter, tol=tol, l1_reg_W=regs[0],
        l1_reg_H=regs[1], l2_reg_W=regs[2], l2_reg_H=regs[3], mask=Mk, check_input=False,
    )
    hit = int((n_iter == max_iter).sum()) if tol > 0 else 0
    if hit:
        from sklearn.exceptions import ConvergenceWarning

        warnings.warn(
            f"Maximum number of iterations {max_iter} reached in {hit} of {nb} problems. "
            "Increase it to improve convergence.", ConvergenceWarning,
        )
    return (Wk, Hk, n_iter) if return_n_iter else (Wk, Hk)
