"""Non-negative matrix factorisation (Lee & Seung 2001) on hotops' kernels.

* :class:`NMF`: a scikit-learn estimator with the parameters and semantics of
  ``sklearn.decomposition.NMF(solver='mu')``, plus ``mask=`` (weighted / missing entries)
  in ``fit`` / ``fit_transform`` and ``device='auto'|'cpu'|'cuda'``.
* :func:`batched_nmf`: B independent problems (B, m, n) in one parallel kernel.

Notes
-----
Lee, D. D. & Seung, H. S. (2001). Algorithms for non-negative matrix factorization.
NIPS 13, eqs. (4)-(5). Fevotte, C. & Idier, J. (2011). Algorithms for nonnegative matrix
factorization with the beta-divergence. Neural Computation 23(9), Table 2 (gamma(beta)).
"""
from __future__ import annotations

import math
import numbers
import time
import warnings

import numpy as np

from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted, validate_data

from hotops.kernels._backend import is_cupy, is_torch

__all__ = ["NMF", "batched_nmf"]

_DEVICES = ("auto", "cpu", "cuda")
_INITS = ("random", "nndsvd", "nndsvda", "nndsvdar", "custom")
_BETA_NAMES = ("frobenius", "kullback-leibler", "itakura-saito")


class InvalidParameterError(ValueError, TypeError):
    """A constructor parameter of :class:`NMF` outside its rule. Both a ``ValueError`` and a
    ``TypeError``, as scikit-learn's own parameter errors are."""


def _integral(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def _real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


def _nonneg_finite(v) -> bool:
    return _real(v) and math.isfinite(v) and v >= 0


#: scikit-learn's parameter rules of ``NMF(solver='mu')`` (bool is no integer here), plus
#: ``device``: name -> (what the value must be, test)
_PARAMETER_RULES = {
    "n_components": ("an int >= 1, None or 'auto'",
                     lambda v: v is None or (isinstance(v, str) and v == "auto") or (_integral(v) and v >= 1)),
    "init": (f"one of {', '.join(map(repr, _INITS))} or None",
             lambda v: v is None or (isinstance(v, str) and v in _INITS)),
    "beta_loss": (f"one of {', '.join(map(repr, _BETA_NAMES))} or a finite real number",
                  lambda v: (isinstance(v, str) and v in _BETA_NAMES) or (_real(v) and math.isfinite(v))),
    "tol": ("a finite real number >= 0", _nonneg_finite),
    "max_iter": ("an int >= 1", lambda v: _integral(v) and v >= 1),
    "random_state": ("an int in [0, 2**32 - 1], a numpy.random.RandomState or None",
                     lambda v: v is None or isinstance(v, np.random.RandomState)
                     or (_integral(v) and 0 <= v <= 2**32 - 1)),
    "alpha_W": ("a finite real number >= 0", _nonneg_finite),
    "alpha_H": ("a finite real number >= 0 or 'same'",
                lambda v: (isinstance(v, str) and v == "same") or _nonneg_finite(v)),
    "l1_ratio": ("a real number in [0, 1]", lambda v: _real(v) and 0 <= v <= 1),
    "verbose": ("an int >= 0 or a bool", lambda v: isinstance(v, (bool, np.bool_)) or (_integral(v) and v >= 0)),
    "device": (f"one of {', '.join(map(repr, _DEVICES))}", lambda v: isinstance(v, str) and v in _DEVICES),
}


# --------------------------------------------------------------------------- helpers

def _cupy():
    try:
        import cupy
    except Exception as exc:  # pragma: no cover - depends on the machine
        from hotops.kernels import INSTALL_HINT

        raise RuntimeError(f"device='cuda' needs CuPy: {INSTALL_HINT} ({exc})") from None
    return cupy


def _kernels():
    from hotops.kernels import nmf

    return nmf


def _check_custom(A, shape, whom, dtype):
    """scikit-learn's ``_check_init`` (shape, non-negative, not all zeros) + dtype check."""
    if is_cupy(A):
        A_host_check = A
        xp = _cupy()
    else:
        A_host_check = np.asarray(A)
        xp = np
    if A_host_check.ndim != 2:
        raise ValueError(f"{whom} must be 2-D, got shape {A_host_check.shape}")
    for axis, name in ((0, "first"), (1, "second")):
        if A_host_check.shape[axis] != shape[axis]:
            raise ValueError(
                f"Array with wrong {name} dimension passed to {whom}. Expected {shape[axis]}, "
                f"but got {A_host_check.shape[axis]}."
            )
    _kernels().check_nonnegative(whom, A_host_check)
    if float(xp.max(A_host_check)) == 0:
        raise ValueError(f"Array passed to {whom} is full of zeros.")
    if np.dtype(A_host_check.dtype) != np.dtype(dtype):
        raise TypeError(
            f"H and W should have the same dtype as X. Got {whom} dtype = {A_host_check.dtype}"
        )


def batched_nmf(V, n_components, *, init=None, beta_loss="frobenius", tol=1e-4, max_iter=200,
                random_state=None, alpha_W=0.0, alpha_H="same", l1_ratio=0.0, mask=None,
                W=None, H=None, return_n_iter=False):
    """Factorise B independent non-negative matrices V[b] ~ W[b] H[b] in one call.

    Parameters
    ----------
    V : array (B, m, n)
        numpy, CuPy or torch (CPU or CUDA); integer input is converted to float64.
        Never modified.
    n_components : int
        r, the same for every problem.
    init : {None, 'random', 'nndsvd', 'nndsvda', 'nndsvdar', 'custom'}
        As ``hotops.NMF`` (None: 'nndsvda' if r <= min(m, n) else 'random'); 'custom' uses
        W (B, m, r) and H (B, r, n).
    beta_loss, tol, max_iter, alpha_W, alpha_H, l1_ratio
        As ``hotops.NMF``; penalties are scaled by each problem's m and n.
    mask : array (B, m, n), optional
        Weights, 0 for missing entries.
    return_n_iter : bool
        Also return the iterations each problem ran (convergence is judged per problem:
        every 10 iterations, ``(previous - error) / error_at_init < tol``).

    Returns
    -------
    W : (B, m, r), H : (B, r, n)
        Same array family and device as V (torch in, torch out; zero-copy on the way out).
    n_iter : (B,) int64, if ``return_n_iter``.

    Notes
    -----
    Lee & Seung (2001) multiplicative updates, run by one parallel task per problem on the
    CPU (each task runs scikit-learn's whole MU loop on its problem); on the GPU by batched
    cuBLAS GEMMs and elementwise kernels over the whole stack. Reaching ``max_iter`` in any
    problem warns with ``ConvergenceWarning``. This function only routes: calls with torch
    tensors go to the torch binding (``hotops.bindings.factorization.batched_nmf``), numpy
    and CuPy arrays to the array algorithm (``hotops.kernels.nmf.batched_nmf``).
    """
    if any(is_torch(a) for a in (V, mask, W, H)):
        from hotops.bindings.factorization import batched_nmf as fit
    else:
        from hotops.kernels.nmf import batched_nmf as fit
    return fit(V, n_components, init=init, beta_loss=beta_loss, tol=tol, max_iter=max_iter,
               random_state=random_state, alpha_W=alpha_W, alpha_H=alpha_H, l1_ratio=l1_ratio,
               mask=mask, W=W, H=H, return_n_iter=return_n_iter)


# --------------------------------------------------------------------------- estimator

class NMF(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Non-negative matrix factorisation by multiplicative updates on hotops' kernels.

    Same parameters and semantics as ``sklearn.decomposition.NMF(solver='mu')``; from the
    same initial W, H the iterates agree with scikit-learn's (float64: relative difference
    below 1e-8 after 200 iterations, dense and sparse, Frobenius and KL).

    Parameters
    ----------
    n_components : int, 'auto' or None
    init : {None, 'random', 'nndsvd', 'nndsvda', 'nndsvdar', 'custom'}
    beta_loss : {'frobenius', 'kullback-leibler', 'itakura-saito'} or float
    tol, max_iter, random_state, alpha_W, alpha_H, l1_ratio, verbose
        As in scikit-learn.
    device : {'auto', 'cpu', 'cuda'}
        'auto': CuPy / cupyx.scipy.sparse input runs on its GPU (and results stay there),
        anything else on the CPU. 'cuda' moves host input to the GPU and returns numpy.

    Attributes
    ----------
    components_ : array (n_components, n_features)
    n_components_, reconstruction_err_, n_iter_, n_features_in_, feature_names_in_

    Notes
    -----
    Lee & Seung (2001), eqs. (4)-(5); Fevotte & Idier (2011) for general beta. ``fit`` and
    ``fit_transform`` accept ``mask``: non-negative weights of V's shape (0 = missing),
    minimising sum_ij M_ij d_beta(V_ij | (WH)_ij); the objective, ``reconstruction_err_``
    and the stopping rule are then weighted too. ``transform`` takes no mask.
    """

    def __init__(self, n_components="auto", *, init=None, beta_loss="frobenius", tol=1e-4,
                 max_iter=200, random_state=None, alpha_W=0.0, alpha_H="same", l1_ratio=0.0,
                 verbose=0, device="auto"):
        self.n_components = n_components
        self.init = init
        self.beta_loss = beta_loss
        self.tol = tol
        self.max_iter = max_iter
        self.random_state = random_state
        self.alpha_W = alpha_W
        self.alpha_H = alpha_H
        self.l1_ratio = l1_ratio
        self.verbose = verbose
        self.device = device

    def _check_params(self) -> None:
        """:data:`_PARAMETER_RULES` on the constructor parameters; ``InvalidParameterError``
        naming the first parameter that breaks its rule."""
        for name, value in self.get_params(deep=False).items():
            what, ok = _PARAMETER_RULES[name]
            if not ok(value):
                raise InvalidParameterError(f"The {name!r} parameter of NMF must be {what}. Got {value!r} instead.")

    # -- input -----------------------------------------------------------------
    def _on_gpu(self, X) -> bool:
        if self.device == "cuda":
            return True
        if is_cupy(X):
            if self.device == "cpu":
                raise ValueError("device='cpu' but X is a CuPy array: pass X.get() or use device='auto'")
            return True
        return False

    def _validate_X(self, X, reset: bool):
        """(X ready for the kernels, host_in) ; GPU arrays are validated without a copy."""
        if self._on_gpu(X):
            return self._validate_gpu(X, reset)
        X = validate_data(self, X, reset=reset, accept_sparse=("csr", "csc"),
                          dtype=[np.float64, np.float32], ensure_all_finite=False)
        _kernels().check_nonnegative("X", X)
        return X

    def _validate_gpu(self, X, reset):
        cp = _cupy()
        if not is_cupy(X):
            import scipy.sparse as sp

            X = validate_data(self, X, reset=reset, accept_sparse=("csr", "csc"),
                              dtype=[np.float64, np.float32], ensure_all_finite=False)
            if sp.issparse(X):
                import cupyx.scipy.sparse as csp

                X = csp.csr_matrix(X)
            else:
                X = cp.asarray(X)
        else:
            if X.ndim != 2:
                raise ValueError(f"Expected 2D array, got shape {X.shape}")
            if X.dtype.kind in "iub":
                X = X.astype(cp.float64)
            elif np.dtype(X.dtype) not in (np.float32, np.float64):
                raise TypeError(f"X must have dtype float32 or float64, got {X.dtype}")
            if reset:
                self.n_features_in_ = X.shape[1]
            elif X.shape[1] != self.n_features_in_:
                raise ValueError(
                    f"X has {X.shape[1]} features, but NMF is expecting {self.n_features_in_} features as input."
                )
        _kernels().check_nonnegative("X", X)
        return X

    def _n_comp(self, X):
        nc = self.n_components
        if nc is None or nc == "auto":
            return None
        return int(nc)

    def _init_factors(self, X, W, H, r):
        m, n = X.shape
        if self.init == "custom":
            if W is None or H is None:
                raise ValueError("init='custom' needs both W and H")
            if r is None:
                r = np.asarray(H).shape[0] if not is_cupy(H) else H.shape[0]
            _check_custom(H, (r, n), "NMF (input H)", X.dtype)
            _check_custom(W, (m, r), "NMF (input W)", X.dtype)
            return self._to_device(X, W), self._to_device(X, H)
        if W is not None or H is not None:
            warnings.warn(
                "When init!='custom', provided W or H are ignored. Set  init='custom' to use "
                "them as initialization.", RuntimeWarning,
            )
        if r is None:
            r = n
        from hotops.kernels.nmf.init import initialize

        return initialize(X, r, self.init, self.random_state)

    def _to_device(self, X, A):
        if is_cupy(X):
            cp = _cupy()
            return cp.ascontiguousarray(cp.asarray(A, dtype=X.dtype))
        if is_cupy(A):
            A = A.get()
        return np.array(A, dtype=X.dtype, order="C", copy=True)

    def _check_mask(self, X, mask):
        if mask is None:
            return None
        if is_torch(mask):
            mask = mask.detach().cpu().numpy()
        shape = tuple(getattr(mask, "shape", np.shape(mask)))
        if shape != tuple(X.shape):
            raise ValueError(f"mask must have X's shape {tuple(X.shape)}, got {shape}")
        import scipy.sparse as sp

        if is_cupy(X) != is_cupy(mask) and not (self.device == "cuda" and not is_cupy(mask)):
            raise TypeError("mask and X are on different devices (one CuPy, one host array)")
        if is_cupy(X):
            cp = _cupy()
            mask = mask if is_cupy(mask) else cp.asarray(mask)
            if not hasattr(mask, "tocsr"):
                mask = mask.astype(X.dtype)
        elif not sp.issparse(mask):
            mask = np.asarray(mask)
            if mask.dtype.kind not in "biuf":
                raise TypeError(f"mask must be numeric or boolean, got dtype {mask.dtype}")
            mask = mask.astype(X.dtype)
        _kernels().check_nonnegative("mask", mask)
        return mask

    # -- fitting ---------------------------------------------------------------
    def fit(self, X, y=None, **params):
        """Learn an NMF model for X (``params``: W, H, mask, passed to fit_transform)."""
        self.fit_transform(X, **params)
        return self

    def fit_transform(self, X, y=None, W=None, H=None, mask=None):
        """Learn an NMF model for X and return W (n_samples, n_components).

        Parameters
        ----------
        X : array-like or sparse (n_samples, n_features), non-negative; CuPy stays on the GPU.
        W, H : initial factors when ``init='custom'``.
        mask : array (n_samples, n_features), optional
            Non-negative weights, 0 for missing entries (see the class Notes).
        """
        self._check_params()
        host_in = not is_cupy(X)
        X = self._validate_X(X, reset=True)
        mask = self._check_mask(X, mask)
        W, H, n_iter, err = self._fit(X, W, H, mask, update_H=True)
        if host_in and is_cupy(W):  # device='cuda' with host input: results come back
            W, H = W.get(), H.get()
        self.reconstruction_err_ = err
        self.n_components_ = H.shape[0]
        self.components_ = H
        self.n_iter_ = n_iter
        return W

    def _fit(self, X, W, H, mask, update_H):
        kn = _kernels()
        beta = kn.beta_loss_to_float(self.beta_loss)
        if self.init == "nndsvd":
            warnings.warn(
                "The multiplicative update ('mu') solver cannot update zeros present in the "
                "initialization, and so leads to poorer results when used jointly with "
                "init='nndsvd'. You may try init='nndsvda' or init='nndsvdar' instead.",
                UserWarning,
            )
        if beta <= 0 and float(X.min()) == 0:
            raise ValueError(
                "When beta_loss <= 0 and X contains zeros, the solver may diverge. Please add "
                "small values to X, or use a positive beta_loss."
            )
        m, n = X.shape
        r = self._n_comp(X)
        if update_H:
            W, H = self._init_factors(X, W, H, r)
        else:
            H = self.components_
            if is_cupy(X):
                H = _cupy().ascontiguousarray(_cupy().asarray(H))
            r = H.shape[0]
            avg = np.sqrt(float(X.sum()) / (m * n) / r)
            xp = _cupy() if is_cupy(X) else np
            W = xp.full((m, r), avg, dtype=X.dtype)
        from hotops.kernels.nmf.init import regularization

        regs = regularization(self.alpha_W, self.alpha_H, self.l1_ratio, m, n)
        start = time.time()

        def callback(it, error):
            progress = getattr(self, "_progress", None)  # hotops nmf's progress bar
            if progress is not None:
                progress(it, error)
            if self.verbose:
                print(f"Epoch {it:02d} reached after {time.time() - start:.3f} seconds, error: {error:f}")

        problem = kn.make_problem(X, mask, beta, H.shape[0])
        final = []
        n_iter, W, H = kn.run_loop(problem, W, H, max_iter=self.max_iter, tol=self.tol,
                                   l1_reg_W=regs[0], l1_reg_H=regs[1], l2_reg_W=regs[2],
                                   l2_reg_H=regs[3], update_H=update_H, callback=callback,
                                   final_error=final)
        if n_iter == self.max_iter and self.tol > 0:
            warnings.warn(
                f"Maximum number of iterations {self.max_iter} reached. Increase it to improve "
                "convergence.", ConvergenceWarning,
            )
        return W, H, n_iter, final[0]

    def transform(self, X):
        """W for new data X, with the learned components_ fixed."""
        check_is_fitted(self)
        host_in = not is_cupy(X)
        X = self._validate_X(X, reset=False)
        W, *_ = self._fit(X, None, None, None, update_H=False)
        return W.get() if host_in and is_cupy(W) else W

    def inverse_transform(self, X):
        """Data back in the original space: X @ components_."""
        check_is_fitted(self)
        return X @ self.components_

    @property
    def _n_features_out(self):
        return self.components_.shape[0]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        tags.input_tags.sparse = True
        tags.input_tags.allow_nan = False
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
