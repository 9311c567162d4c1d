"""torch binding of NMF by multiplicative updates (Lee & Seung 2001).

``nmf(V, n_components, ...)`` takes a CPU or CUDA tensor, dense (2-D, or 3-D for a batch of
problems) or sparse (COO / CSR, 2-D), and returns ``(W, H)`` tensors on V's device.
``batched_nmf`` is the 3-D case (also ``hotops.batched_nmf``'s for tensor arguments): it
hands zero-copy views to ``hotops.kernels.nmf.batched_nmf``, which validates them and runs
the whole batched algorithm.

Zero-copy at the boundary: dense CPU tensors are read through ``Tensor.numpy()`` views and
CUDA tensors through DLPack (CuPy); CSR tensors hand their ``crow_indices``,
``col_indices`` and ``values`` to scipy / cupyx without copying; W and H are allocated by
the kernels and come back through ``torch.from_numpy`` / DLPack without copying. A COO
tensor is coalesced and converted to CSR first (one conversion, as any CSR consumer must).
NMF is fitted, not differentiated: the result carries no autograd history.
"""
from __future__ import annotations

import numbers
import warnings

import numpy as np
import torch

from hotops.kernels import nmf as _kernel
from hotops.kernels.nmf.init import initialize, regularization

from ._interop import check_tensor, from_kernel, stream_of, to_kernel

__all__ = ["batched_nmf", "nmf"]

_DTYPES = (torch.float32, torch.float64)


def _csr_view(V: torch.Tensor):
    """scipy / cupyx CSR over a torch sparse tensor's buffers (COO is converted first)."""
    if V.layout == torch.sparse_coo:
        V = V.coalesce().to_sparse_csr()
    if V.layout != torch.sparse_csr:
        raise TypeError(f"V must be dense, sparse COO or sparse CSR, got layout {V.layout}")
    crow, col, val = V.crow_indices(), V.col_indices(), V.values()
    if V.device.type == "cpu":
        import scipy.sparse as sp

        return sp.csr_matrix((to_kernel(val), to_kernel(col), to_kernel(crow)), shape=tuple(V.shape))
    import cupyx.scipy.sparse as csp

    return csp.csr_matrix((to_kernel(val), to_kernel(col), to_kernel(crow)), shape=tuple(V.shape))


def _as_kernel_factor(A, like_kernel, name, shape, dtype):
    if isinstance(A, torch.Tensor):
        A = to_kernel(A.detach())
    host = isinstance(getattr(like_kernel, "data", like_kernel) if hasattr(like_kernel, "indptr") else like_kernel,
                      np.ndarray)
    if host:
        xp = np
    else:
        import cupy as xp
    A = xp.array(A, dtype=dtype, order="C", copy=True)
    if tuple(A.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(A.shape)}")
    _kernel.check_nonnegative(name, A)
    return A


def _stack_view(A):
    """A (B, m, n) tensor as a kernel array, zero-copy when it is contiguous and of a float
    dtype (other dtypes are converted to float64 first); anything else is left as it is."""
    if not isinstance(A, torch.Tensor):
        return A
    if A.dtype not in _DTYPES:
        A = A.double()
    return to_kernel(A.contiguous())


@torch.no_grad()
def batched_nmf(V, n_components: int, *, init=None, beta_loss="frobenius", tol=1e-4,
                max_iter=200, random_state=None, alpha_W=0.0, alpha_H="same", l1_ratio=0.0,
                mask=None, W=None, H=None, return_n_iter=False):
    """B independent factorisations V[b] ~ W[b] H[b] of a (B, m, n) stack with torch tensors
    among the arguments: the torch side of ``hotops.batched_nmf`` and of ``nmf`` for 3-D V.

    Tensors (V, mask, W, H; CPU or CUDA) are handed to ``hotops.kernels.nmf.batched_nmf``
    as zero-copy views (float dtypes other than float32 / float64, integer and boolean
    tensors as float64 copies), other arguments as they are; the kernel validates them all.
    W and H come back as tensors over the kernel's arrays when V is a tensor (V's device and
    dtype), as the kernel's arrays otherwise; ``n_iter`` ((B,) int64 numpy) if
    ``return_n_iter``. Parameters as ``hotops.batched_nmf``.
    """
    out = _kernel.batched_nmf(
        _stack_view(V), n_components, init=init, beta_loss=beta_loss, tol=tol, max_iter=max_iter,
        random_state=random_state, alpha_W=alpha_W, alpha_H=alpha_H, l1_ratio=l1_ratio,
        mask=_stack_view(mask), W=_stack_view(W), H=_stack_view(H), return_n_iter=True,
    )
    Wk, Hk, n_iter = out
    if isinstance(V, torch.Tensor):
        Wk, Hk = from_kernel(Wk), from_kernel(Hk)
    return (Wk, Hk, n_iter) if return_n_iter else (Wk, Hk)


@torch.no_grad()
def nmf(V: torch.Tensor, n_components: int, *, init=None, beta_loss="frobenius", tol=1e-4,
        max_iter=200, random_state=None, alpha_W=0.0, alpha_H="same", l1_ratio=0.0,
        mask=None, W=None, H=None, return_n_iter=False):
    """Factorise a non-negative tensor V ~ W H by multiplicative updates.

    Parameters
    ----------
    V : Tensor (m, n), dense / sparse COO / sparse CSR, or dense (B, m, n) for B problems
        CPU or CUDA, float32 or float64 (integer tensors are converted to float64).
    n_components : int
    init, beta_loss, tol, max_iter, random_state, alpha_W, alpha_H, l1_ratio
        As ``hotops.NMF`` (scikit-learn's MU semantics).
    mask : Tensor or array of V's shape, optional
        Non-negative weights, 0 for missing entries.
    W, H : initial factors for ``init='custom'``.

    Returns
    -------
    W : Tensor (m, r) or (B, m, r); H : Tensor (r, n) or (B, r, n), on V's device and dtype.
    n_iter : int (or (B,) array) if ``return_n_iter``.

    Notes
    -----
    Lee & Seung (2001) eqs. (4)-(5); Fevotte & Idier (2011) for beta-divergences.
    """
    check_tensor("V", V)
    if V.device.type not in ("cpu", "cuda"):
        raise TypeError(f"V must be on a CPU or CUDA device, got {V.device}")
    if not V.is_floating_point():
        V = V.to(torch.float64)
    check_tensor("V", V, dtypes=_DTYPES)
    if isinstance(n_components, bool) or not isinstance(n_components, numbers.Integral) or n_components < 1:
        raise ValueError(f"n_components must be a positive integer, got {n_components!r}")
    r = int(n_components)
    Mk = None
    if mask is not None:
        if isinstance(mask, torch.Tensor):
            if mask.device != V.device:
                raise TypeError(f"arguments are on different devices: V on {V.device}, mask on {mask.device}")
            Mk = to_kernel(mask.detach().to(V.dtype).contiguous())
        else:
            Mk = np.asarray(mask)
    if V.dim() == 3 and V.layout == torch.strided:
        return batched_nmf(V, r, init=init, beta_loss=beta_loss, tol=tol, max_iter=max_iter,
                           random_state=random_state, alpha_W=alpha_W, alpha_H=alpha_H,
                           l1_ratio=l1_ratio, mask=Mk, W=W, H=H, return_n_iter=return_n_iter)
    if V.dim() != 2:
        raise ValueError(f"V must be 2-D (m, n) or 3-D dense (B, m, n), got shape {tuple(V.shape)}")
    Vk = to_kernel(V.contiguous()) if V.layout == torch.strided else _csr_view(V)
    m, n = V.shape
    dtype = np.dtype(str(V.dtype).replace("torch.", ""))
    _kernel.check_nonnegative("V", Vk)
    beta = _kernel.beta_loss_to_float(beta_loss)
    if init == "custom":
        if W is None or H is None:
            raise ValueError("init='custom' needs both W and H")
        Wk = _as_kernel_factor(W, Vk, "W", (m, r), dtype)
        Hk = _as_kernel_factor(H, Vk, "H", (r, n), dtype)
    else:
        if W is not None or H is not None:
            warnings.warn("When init!='custom', provided W or H are ignored.", RuntimeWarning)
        Wk, Hk = initialize(Vk, r, init, random_state)
    regs = regularization(alpha_W, alpha_H, l1_ratio, m, n)
    n_iter, Wk, Hk = _kernel.multiplicative_update(
        Vk, Wk, Hk, beta_loss=beta, max_iter=max_iter, tol=tol, l1_reg_W=regs[0],
        l1_reg_H=regs[1], l2_reg_W=regs[2], l2_reg_H=regs[3], mask=Mk, stream=stream_of(V),
    )
    if n_iter == max_iter and tol > 0:
        from sklearn.exceptions import ConvergenceWarning

        warnings.warn(f"Maximum number of iterations {max_iter} reached. Increase it to improve "
                      "convergence.", ConvergenceWarning)
    out = (from_kernel(Wk), from_kernel(Hk))
    return out + (n_iter,) if return_n_iter else out
