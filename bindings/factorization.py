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

Under ``torch.compile`` / ``torch.export`` the factorisation is one ``torch.library``
custom op with a fake implementation (W, H and the iteration count have shapes known
before it runs; only the count's value depends on the data):

* ``torch.ops.hotops.nmf(V, n_components, init, beta_loss, tol, max_iter, random_state,
  alpha_W, alpha_H, l1_ratio, mask, W, H) -> (W, H, n_iter)`` for dense V, (m, n) or
  (B, m, n); ``n_iter`` is a CPU int64 tensor, 0-d or (B,);
* ``torch.ops.hotops.nmf_csr(crow_indices, col_indices, values, n_rows, n_cols, ...)``
  for a CSR matrix given by its three buffers. A sparse tensor cannot be an operator
  argument under torch.compile (Dynamo refuses sparse tensors), so compiled code passes
  the buffers, through :func:`nmf_csr`.

Eagerly the kernels are called directly (no dispatcher); the ops run the same code.
"""
from __future__ import annotations

import numbers
import warnings
from typing import Optional

import numpy as np
import torch

from hotops.kernels import nmf as _kernel
from hotops.kernels.nmf.init import initialize, regularization

from ._interop import check_tensor, from_kernel, stream_of, to_kernel

__all__ = ["batched_nmf", "nmf", "nmf_csr"]

_DTYPES = (torch.float32, torch.float64)


def _check_real(name: str, t) -> None:
    """``TypeError`` for complex tensors / arrays: NMF factorises non-negative reals, and a
    conversion would drop the imaginary part without a word."""
    if (t.is_complex() if isinstance(t, torch.Tensor) else np.iscomplexobj(t)):
        dtype = str(getattr(t, "dtype", None) or np.asarray(t).dtype).replace("torch.", "")
        raise TypeError(f"{name} must be real (NMF factorises non-negative real matrices), got {dtype}")


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
    for name, A in (("V", V), ("mask", mask), ("W", W), ("H", H)):
        if isinstance(A, torch.Tensor):
            _check_real(name, A)
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
        CPU or CUDA, float32 or float64 (integer and bool tensors are converted to float64;
        complex tensors raise ``TypeError``).
    n_components : int
    init, beta_loss, tol, max_iter, random_state, alpha_W, alpha_H, l1_ratio
        As ``hotops.NMF`` (scikit-learn's MU semantics).
    mask : Tensor or array of V's shape, optional
        Non-negative weights, 0 for missing entries.
    W, H : initial factors for ``init='custom'``.

    Returns
    -------
    W : Tensor (m, r) or (B, m, r); H : Tensor (r, n) or (B, r, n), on V's device and dtype.
    n_iter : int (or (B,) array) if ``return_n_iter``; inside ``torch.compile`` a CPU int64
        tensor, 0-d (or (B,)).

    Notes
    -----
    Lee & Seung (2001) eqs. (4)-(5); Fevotte & Idier (2011) for beta-divergences.

    Inside ``torch.compile`` / ``torch.export`` dense V is factorised by the custom op
    ``torch.ops.hotops.nmf`` (one node). Arguments that the op's schema cannot carry (a
    ``numpy.random.RandomState`` as ``random_state``, numpy arrays as mask, W or H) run the
    eager code instead, behind a graph break.
    """
    V = _checked_V(V)
    if torch.compiler.is_compiling():
        return _nmf_compiled(V, n_components, init, beta_loss, tol, max_iter, random_state, alpha_W, alpha_H,
                             l1_ratio, mask, W, H, return_n_iter)
    return _fit(V, n_components, init=init, beta_loss=beta_loss, tol=tol, max_iter=max_iter,
                random_state=random_state, alpha_W=alpha_W, alpha_H=alpha_H, l1_ratio=l1_ratio, mask=mask, W=W,
                H=H, return_n_iter=return_n_iter)


def _checked_V(V) -> torch.Tensor:
    check_tensor("V", V)
    if V.device.type not in ("cpu", "cuda"):
        raise TypeError(f"V must be on a CPU or CUDA device, got {V.device}")
    _check_real("V", V)
    if not V.is_floating_point():
        V = V.to(torch.float64)
    check_tensor("V", V, dtypes=_DTYPES)
    return V


def _check_n_components(n_components) -> int:
    if isinstance(n_components, bool) or not isinstance(n_components, numbers.Integral) or n_components < 1:
        raise ValueError(f"n_components must be a positive integer, got {n_components!r}")
    return int(n_components)


def _fit(V: torch.Tensor, n_components, *, init, beta_loss, tol, max_iter, random_state, alpha_W, alpha_H,
         l1_ratio, mask, W, H, return_n_iter):
    """The eager factorisation of a checked float V (dense 2-D or 3-D, sparse 2-D)."""
    r = _check_n_components(n_components)
    Mk = None
    if mask is not None:
        _check_real("mask", mask)
        if isinstance(mask, torch.Tensor):
            if mask.device != V.device:
                raise TypeError(f"arguments are on different devices: V on {V.device}, mask on {mask.device}")
            Mk = to_kernel(mask.detach().to(V.dtype).contiguous())
        else:
            Mk = np.asarray(mask)
    for name, F in (("W", W), ("H", H)):
        if F is not None:
            _check_real(name, F)
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


@torch.no_grad()
def nmf_csr(crow_indices: torch.Tensor, col_indices: torch.Tensor, values: torch.Tensor, shape, n_components: int,
            **kwargs):
    """:func:`nmf` of the CSR matrix with these buffers and ``shape`` (m, n).

    The form of the sparse factorisation that works inside ``torch.compile`` (where a sparse
    tensor cannot be an argument): there it is the custom op ``torch.ops.hotops.nmf_csr``.
    Eagerly it is ``nmf(torch.sparse_csr_tensor(crow_indices, col_indices, values, shape))``
    (no copy). Keyword arguments as :func:`nmf`.
    """
    for name, t in (("crow_indices", crow_indices), ("col_indices", col_indices), ("values", values)):
        check_tensor(name, t)
    if not isinstance(shape, (tuple, list, torch.Size)) or len(shape) != 2:
        raise TypeError(f"shape must be a pair (n_rows, n_cols), got {shape!r}")
    _check_csr(crow_indices, col_indices, values, shape[0], shape[1])
    if not torch.compiler.is_compiling():
        V = torch.sparse_csr_tensor(crow_indices, col_indices, values, tuple(shape))
        return nmf(V, n_components, **kwargs)
    return_n_iter = kwargs.pop("return_n_iter", False)
    args = _op_arguments(n_components, **kwargs)
    if args is None:
        return _nmf_eager(torch.sparse_csr_tensor(crow_indices, col_indices, values, tuple(shape)), n_components,
                          return_n_iter=return_n_iter, **kwargs)
    out = torch.ops.hotops.nmf_csr(crow_indices, col_indices, _checked_V(values), shape[0], shape[1], *args)
    return out if return_n_iter else out[:2]


def _check_csr(crow, col, values, n_rows, n_cols) -> None:
    """What the CSR op's output shapes and the kernels rely on, without reading data."""
    for name, v in (("n_rows", n_rows), ("n_cols", n_cols)):
        if isinstance(v, bool) or not isinstance(v, (int, torch.SymInt)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    _check_real("values", values)
    for name, t in (("crow_indices", crow), ("col_indices", col)):
        if t.dtype not in (torch.int32, torch.int64) or t.dim() != 1:
            raise TypeError(f"{name} must be a 1-D int32/int64 tensor, got {t.dtype} of shape {tuple(t.shape)}")
    if values.dim() != 1 or col.shape[0] != values.shape[0]:
        raise ValueError(f"col_indices and values must be 1-D of one length, got {tuple(col.shape)} and "
                         f"{tuple(values.shape)}")
    if crow.shape[0] != n_rows + 1:
        raise ValueError(f"crow_indices must have n_rows + 1 = {n_rows + 1} entries, got {crow.shape[0]}")
    if not (crow.device == col.device == values.device):
        raise TypeError(f"arguments are on different devices: crow_indices on {crow.device}, col_indices on "
                        f"{col.device}, values on {values.device}")


# --------------------------------------------------------------------------- custom ops

_REAL = (int, float)


def _op_arguments(n_components, *, init=None, beta_loss="frobenius", tol=1e-4, max_iter=200, random_state=None,
                  alpha_W=0.0, alpha_H="same", l1_ratio=0.0, mask=None, W=None, H=None):
    """The ops' arguments after V: (n_components, init, beta, tol, max_iter, random_state,
    alpha_W, alpha_H, l1_ratio, mask, W, H), or None when one has no schema form (the eager
    code then runs them and raises its own errors on bad values)."""
    if isinstance(beta_loss, str) and beta_loss in ("frobenius", "kullback-leibler", "itakura-saito"):
        beta_loss = _kernel.beta_loss_to_float(beta_loss)
    if isinstance(alpha_H, str) and alpha_H == "same":
        alpha_H = None
    ok = (
        type(n_components) is int and (init is None or isinstance(init, str))
        and all(type(v) in _REAL for v in (beta_loss, tol, alpha_W, l1_ratio))
        and type(max_iter) is int and (random_state is None or type(random_state) is int)
        and (alpha_H is None or type(alpha_H) in _REAL)
        and all(t is None or isinstance(t, torch.Tensor) for t in (mask, W, H))
    )
    if not ok:
        return None
    return (n_components, init, float(beta_loss), float(tol), max_iter, random_state, float(alpha_W),
            None if alpha_H is None else float(alpha_H), float(l1_ratio), mask, W, H)


def _nmf_compiled(V, n_components, init, beta_loss, tol, max_iter, random_state, alpha_W, alpha_H, l1_ratio, mask,
                  W, H, return_n_iter):
    kw = dict(init=init, beta_loss=beta_loss, tol=tol, max_iter=max_iter, random_state=random_state,
              alpha_W=alpha_W, alpha_H=alpha_H, l1_ratio=l1_ratio, mask=mask, W=W, H=H)
    args = _op_arguments(n_components, **kw) if V.layout == torch.strided else None
    if args is None:
        return _nmf_eager(V, n_components, return_n_iter=return_n_iter, **kw)
    out = torch.ops.hotops.nmf(V.detach(), *args)
    return out if return_n_iter else out[:2]


def _nmf_eager_impl(V, n_components, **kwargs):
    return _fit(V, n_components, **kwargs)


# the eager code behind a graph break, for arguments the ops' schemas cannot carry
_nmf_eager = torch.compiler.disable(_nmf_eager_impl, reason="NMF arguments without a custom-op schema form")


def _op_fit(V: torch.Tensor, n_components, init, beta_loss, tol, max_iter, random_state, alpha_W, alpha_H, l1_ratio,
            mask, W, H):
    W_, H_, n_iter = _fit(V, n_components, init=init, beta_loss=beta_loss, tol=tol, max_iter=max_iter,
                          random_state=random_state, alpha_W=alpha_W, alpha_H="same" if alpha_H is None else alpha_H,
                          l1_ratio=l1_ratio, mask=mask, W=W, H=H, return_n_iter=True)
    n_iter = torch.from_numpy(np.array(n_iter, dtype=np.int64))  # a fresh 0-d or (B,) tensor
    return W_.contiguous(), H_.contiguous(), n_iter


def _fake_outputs(V, m, n, r, batch=None):
    lead = () if batch is None else (batch,)
    return (V.new_empty((*lead, m, r)), V.new_empty((*lead, r, n)), torch.empty(lead, dtype=torch.int64))


def _fake_factor_checks(V, m, n, r, lead, mask, W, H, init) -> None:
    if mask is not None and tuple(mask.shape) != (*lead, m, n):
        raise ValueError(f"mask must have V's shape {(*lead, m, n)}, got {tuple(mask.shape)}")
    if init == "custom":
        if W is None or H is None:
            raise ValueError("init='custom' needs both W and H")
        for name, F, shape in (("W", W, (*lead, m, r)), ("H", H, (*lead, r, n))):
            if tuple(F.shape) != shape:
                raise ValueError(f"{name} must have shape {shape}, got {tuple(F.shape)}")


@torch.library.custom_op("hotops::nmf", mutates_args=())
def _nmf_op(V: torch.Tensor, n_components: int, init: Optional[str], beta_loss: float, tol: float, max_iter: int,
            random_state: Optional[int], alpha_W: float, alpha_H: Optional[float], l1_ratio: float,
            mask: Optional[torch.Tensor], W: Optional[torch.Tensor],
            H: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Dense NMF of V (m, n) or (B, m, n): (W, H, n_iter); ``alpha_H`` None is 'same'."""
    if V.layout != torch.strided:
        raise TypeError(f"V must be dense here (hotops::nmf_csr takes CSR buffers), got layout {V.layout}")
    return _op_fit(_checked_V(V), n_components, init, beta_loss, tol, max_iter, random_state, alpha_W, alpha_H,
                   l1_ratio, mask, W, H)


@_nmf_op.register_fake
def _(V, n_components, init, beta_loss, tol, max_iter, random_state, alpha_W, alpha_H, l1_ratio, mask, W, H):
    V = _checked_V(V)
    r = _check_n_components(n_components)
    if V.dim() not in (2, 3):
        raise ValueError(f"V must be 2-D (m, n) or 3-D dense (B, m, n), got shape {tuple(V.shape)}")
    *lead, m, n = V.shape
    _fake_factor_checks(V, m, n, r, tuple(lead), mask, W, H, init)
    return _fake_outputs(V, m, n, r, lead[0] if lead else None)


@torch.library.custom_op("hotops::nmf_csr", mutates_args=())
def _nmf_csr_op(crow_indices: torch.Tensor, col_indices: torch.Tensor, values: torch.Tensor, n_rows: int,
                n_cols: int, n_components: int, init: Optional[str], beta_loss: float, tol: float, max_iter: int,
                random_state: Optional[int], alpha_W: float, alpha_H: Optional[float], l1_ratio: float,
                mask: Optional[torch.Tensor], W: Optional[torch.Tensor],
                H: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """NMF of the (n_rows, n_cols) CSR matrix with these buffers: (W, H, n_iter)."""
    _check_csr(crow_indices, col_indices, values, n_rows, n_cols)
    V = torch.sparse_csr_tensor(crow_indices, col_indices, _checked_V(values), (n_rows, n_cols))
    return _op_fit(V, n_components, init, beta_loss, tol, max_iter, random_state, alpha_W, alpha_H, l1_ratio, mask,
                   W, H)


@_nmf_csr_op.register_fake
def _(crow_indices, col_indices, values, n_rows, n_cols, n_components, init, beta_loss, tol, max_iter, random_state,
      alpha_W, alpha_H, l1_ratio, mask, W, H):
    _check_csr(crow_indices, col_indices, values, n_rows, n_cols)
    values = _checked_V(values)
    r = _check_n_components(n_components)
    _fake_factor_checks(values, n_rows, n_cols, r, (), mask, W, H, init)
    return _fake_outputs(values, n_rows, n_cols, r)
