"""The per-entry arithmetic of the multiplicative updates and of the objective, written once.

Lee & Seung (2001), eqs. (4)-(5), generalised to the beta-divergence by Fevotte & Idier
(2011), eqs. (67)-(68): an update multiplies each factor entry f by
``(num / den)^gamma(beta)``, where the numerator sums ``x * WH^(beta-2)`` and the
denominator ``WH^(beta-1)`` (times the other factor) over the entries of V. The functions
below are that arithmetic for one entry, in scikit-learn's order of operations:

* ``num_weight`` / ``den_weight``: the two weights of one entry of V;
* ``finish``: f * (num / den')^gamma with the penalties, eps for a zero denominator and the
  zeroing threshold;
* ``div_terms``: one entry's share of scikit-learn's ``_beta_divergence``.

They are plain Python functions: Numba CPU ``@njit`` functions cannot be called from
``@cuda.jit`` kernels, so each target compiles the same source. The CPU kernels use the
``*_cpu`` versions below (``numba.njit(inline="always")``: inlined into each kernel and
compiled with its flags); ``cuda.py`` compiles them with ``cuda.jit(device=True)``.
``finish1`` is the CPU kernels' select-only form of ``finish`` for gamma = 1.
"""
from __future__ import annotations

import math

import numba

from .common import FROB, IS, KL

__all__ = ["den_weight", "div_terms", "finish", "finish1", "num_weight"]


def num_weight(x, wh, kind, beta, eps, clamp_num):
    """x * WH^(beta - 2), WH clamped below at eps when beta < 2 (scikit-learn's rule)."""
    if kind == FROB:
        return x
    whc = wh
    if clamp_num and whc < eps:
        whc = eps
    if kind == KL:
        return x / whc
    if kind == IS:
        inv = 1.0 / whc
        return inv * inv * x
    return whc ** (beta - 2.0) * x


def den_weight(wh, kind, beta, eps, clamp_den):
    """WH^(beta - 1), WH clamped below at eps when beta < 1."""
    if kind == FROB:
        return wh
    if kind == KL:
        return 1.0
    whd = wh
    if clamp_den and whd < eps:
        whd = eps
    if kind == IS:
        return 1.0 / whd
    return whd ** (beta - 1.0)


def finish(f, num, den, l1, l2, gamma, zthr, eps):
    """f * (num / (den + l1 + l2 f))^gamma, eps for a zero denominator, 0 below zthr."""
    d = den
    if l1 > 0:
        d += l1
    if l2 > 0:
        d += l2 * f
    if d == 0:
        d = eps
    q = num / d
    if gamma != 1.0:
        q = q ** gamma
    v = f * q
    if v < zthr:
        v = 0.0
    return v


def div_terms(x, wh, kind, beta, eps):
    """Per-entry parts of scikit-learn's ``_beta_divergence``: returns (t0, t1, t2, full),
    where ``full`` is the whole entry divergence (weighted objectives sum M * full) and the
    unweighted ones sum t0, t1, t2 and finish with ``common.finish_error``."""
    if kind == FROB:
        d = x - wh
        return d * d, 0.0, 0.0, 0.5 * d * d
    whc = wh if wh >= eps else eps
    if kind == KL:
        if x > eps:
            lg = x * math.log(x / whc)
            return lg, x, 0.0, lg - x + wh
        return 0.0, 0.0, 0.0, wh
    if kind == IS:
        if x > eps:
            div = x / whc
            lg = math.log(div)
            return div, lg, 0.0, div - lg - 1.0
        return 0.0, 0.0, 0.0, -1.0
    whb = wh ** beta
    if x > eps:
        xb = x ** beta
        xw = x * whc ** (beta - 1.0)
        return xb, xw, whb, (xb - beta * xw + (beta - 1.0) * whb) / (beta * (beta - 1.0))
    return 0.0, 0.0, whb, (beta - 1.0) * whb / (beta * (beta - 1.0))


# the CPU kernels' versions: inlined into each kernel (and compiled with its fastmath flags)
num_weight_cpu = numba.njit(inline="always")(num_weight)
den_weight_cpu = numba.njit(inline="always")(den_weight)
finish_cpu = numba.njit(inline="always")(finish)
div_terms_cpu = numba.njit(inline="always")(div_terms)


@numba.njit(inline="always")
def finish1(f, num, den, l1, l2, zthr, eps):
    """``finish`` for gamma = 1 (Frobenius, KL) written with selects only, so that the
    loops calling it vectorise."""
    d = den + l1 if l1 > 0 else den
    d = d + l2 * f if l2 > 0 else d
    d = eps if d == 0 else d
    v = f * (num / d)
    return 0.0 if v < zthr else v
