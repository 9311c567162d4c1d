"""What every part of the NMF kernels shares: the constants of scikit-learn's MU solver, the
codes the kernels branch on, the scalars of one fit (``Params``) and the objective from its
partial sums (``finish_error``).

Imported by the CPU kernels, their launchers (``cpu.py``), the numba.cuda twin (``cuda.py``)
and the package's entry points; it imports none of them, so that no two of them import each
other through the package ``__init__``.
"""
from __future__ import annotations

import numba
import numpy as np

__all__ = [
    "BETA", "DEN_ACC", "DEN_GRAM", "DEN_MAT", "DEN_VEC", "DTYPES", "EPS64", "EPSILON",
    "FASTMATH", "FROB", "IS", "KL", "Params", "beta_loss_to_float", "check_stopping", "finish_error",
    "is_host_sparse", "is_sparse", "span",
]

#: scikit-learn's ``EPSILON`` in ``_nmf.py``: float32's machine epsilon, also for float64.
EPSILON = float(np.finfo(np.float32).eps)
#: float64's machine epsilon: scikit-learn's threshold below which updated factors become 0.
EPS64 = float(np.finfo(np.float64).eps)
#: the dtypes the kernels compute in
DTYPES = (np.float32, np.float64)

# numerator weight kinds (beta-divergence family)
FROB, KL, IS, BETA = 0, 1, 2, 3
# denominator sources of the fused update
DEN_GRAM, DEN_VEC, DEN_MAT, DEN_ACC = 0, 1, 2, 3

#: Numba fastmath flags of the CPU kernels: reassociation lets LLVM vectorise the r-long dot
#: products; no 'nnan'/'arcp': NaN checks and the exact division of the update are kept.
FASTMATH = {"reassoc", "contract", "nsz"}

_BETA_NAMES = {"frobenius": 2.0, "kullback-leibler": 1.0, "itakura-saito": 0.0}


def beta_loss_to_float(beta_loss) -> float:
    """``'frobenius'`` -> 2, ``'kullback-leibler'`` -> 1, ``'itakura-saito'`` -> 0, floats as is."""
    if isinstance(beta_loss, str):
        if beta_loss not in _BETA_NAMES:
            raise ValueError(
                f"beta_loss must be one of {sorted(_BETA_NAMES)} or a float, got {beta_loss!r}"
            )
        return _BETA_NAMES[beta_loss]
    import numbers

    if isinstance(beta_loss, (bool, np.bool_)) or not isinstance(beta_loss, numbers.Real):
        raise TypeError(f"beta_loss must be a string or a real number, got {beta_loss!r}")
    beta = float(beta_loss)
    if not np.isfinite(beta):
        raise ValueError(f"beta_loss must be finite, got {beta_loss!r}")
    return beta


def check_stopping(max_iter, tol) -> tuple[int, float]:
    """scikit-learn's NMF rules for the stopping parameters: ``max_iter`` an integer >= 1
    (not a bool), ``tol`` a finite real number >= 0; typed errors naming the parameter."""
    from .._validate import check_int, check_real

    return check_int("max_iter", max_iter, min=1), check_real("tol", tol, min=0)


def is_host_sparse(x) -> bool:
    """A scipy.sparse matrix or array."""
    try:
        import scipy.sparse as sp
    except ImportError:  # pragma: no cover
        return False
    return sp.issparse(x)


def is_sparse(x) -> bool:
    """Any sparse matrix the kernels take: scipy.sparse, cupyx.scipy.sparse, or another object
    with CSR arrays (``cuda.DeviceCSR``)."""
    return (is_host_sparse(x) or type(x).__module__.startswith("cupyx.scipy.sparse")
            or hasattr(x, "indptr"))


class Params:
    """Scalars of one fit: beta, its kind, gamma(beta), eps and the zeroing thresholds.

    Fevotte & Idier (2011), Table 2: gamma(beta) = 1/(2-beta) (beta < 1), 1 (1 <= beta <= 2),
    1/(beta-1) (beta > 2). scikit-learn clamps WH below at eps in the numerator when beta < 2
    and in the denominator when beta < 1, and zeroes entries of W below float64's eps when
    beta < 1 (of H when beta <= 1)."""

    def __init__(self, beta: float, eps: float = EPSILON):
        self.beta = float(beta)
        self.kind = FROB if beta == 2 else KL if beta == 1 else IS if beta == 0 else BETA
        if beta < 1:
            self.gamma = 1.0 / (2.0 - beta)
        elif beta > 2:
            self.gamma = 1.0 / (beta - 1.0)
        else:
            self.gamma = 1.0
        self.eps = float(eps)
        self.clamp_num = bool(beta < 2)
        self.clamp_den = bool(beta < 1)
        self.zW = EPS64 if beta < 1 else 0.0
        self.zH = EPS64 if beta <= 1 else 0.0


def finish_error(p: Params, a, sum_wh, n_entries, sum_whb):
    """scikit-learn's ``_beta_divergence(..., square_root=True)`` from the partial sums
    ``a`` of the entry terms (``terms.div_terms``: t0, t1 summed over the entries),
    sum(WH) (KL), the number of entries (IS) and sum(WH^beta) (general beta)."""
    if p.kind == FROB:
        return float(np.sqrt(a[0]))
    if p.kind == KL:
        res = a[0] + sum_wh - a[1]
    elif p.kind == IS:
        res = a[0] - n_entries - a[1]
    else:
        b = p.beta
        res = (a[0] - b * a[1] + (b - 1.0) * sum_whb) / (b * (b - 1.0))
    return float(np.sqrt(2.0 * max(res, 0.0)))


@numba.njit(inline="always")
def span(t, T, m):
    """Task t's range of T near-equal ranges over m items (rows of V, entries of an array)."""
    return t * m // T, (t + 1) * m // T
