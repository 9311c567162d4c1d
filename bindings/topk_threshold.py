"""torch binding of the sparse Fourier projection and of the IHT defence (Bafna et al. 2018).

ops -> functional -> module:

* ``torch.ops.hotops.sparse_project(x, k, transform, axes) -> (y, mask)`` and
  ``torch.ops.hotops.sparse_project_masked(g, mask, transform, axes) -> F^-1 M F g``:
  ``torch.library`` custom ops with fake kernels (``torch.compile`` keeps each as one opaque
  node) and an autograd formula on the first.
* ``SparseProjection``: the same as a ``torch.autograd.Function``.
* ``sparse_project(x, k, transform, axes)``: functional (differentiable);
  ``IHTDefense(classifier, k, t, n_iter)``: ``nn.Module`` that reconstructs its input by IHT
  (Algorithm 1) and classifies the reconstruction.
* ``iht(y, k, t, ...)`` / ``patchwise_iht(y, k, t, patch, ...)``: Algorithms 1 and 2 on
  tensors, without autograd (the results come back as tensors over the kernels' outputs).

Gradient: y = F^-1 M F x with F orthonormal and the support M fixed by the forward is an
orthogonal projection, so dL/dx = F^T M F dL/dy (F^T = F^-1): the backward applies the same
projection with the saved mask (a bool tensor, 1 byte per coefficient; for the DFT of
real input only the rfftn half spectrum is kept).

Tensors are handed to the kernels without copies (``_interop.to_kernel``): numpy views on
CPU (scipy.fft + the Numba select), CuPy views on CUDA (cuFFT + the numba.cuda select, on
torch's current stream). Validation is split once: this module checks what is about the
tensor (type, dtype, device, rank, the axes the op's schema and backward carry); the kernel
(``hotops.kernels.topk_threshold``) checks the rest (transform, k, t, n_iter, tol, finiteness).
"""
from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from hotops.kernels import topk_threshold as _op
from hotops.kernels._validate import check_axes, check_int

from ._interop import check_tensor, from_kernel, stream_of, to_kernel

__all__ = ["SparseProjection", "sparse_project", "sparse_project_with_mask", "IHTDefense", "iht", "patchwise_iht"]

_DTYPES = (torch.float32, torch.float64)
#: what IHT takes: real floats, and integers (converted to float64 by the kernel, DCT only)
_IHT_DTYPES = _DTYPES + (torch.bool, torch.uint8, torch.int32, torch.int64)
# Half precisions (autocast) are projected in float32 and rounded back: the transforms
# have no half-precision kernels on the CPU.
_HALF = (torch.float16, torch.bfloat16)


def _check_x(x) -> None:
    """The tensor checks (type, dtype, device, rank); the kernel checks the other arguments."""
    check_tensor("x", x, dtypes=_DTYPES + _HALF)
    if x.device.type not in ("cpu", "cuda"):
        raise TypeError(f"x must be on a CPU or CUDA device, got {x.device}")
    if x.dim() == 0:
        raise ValueError("x must have at least one dimension, got a 0-d tensor")


def _norm_axes(axes, ndim: int) -> list[int]:
    return list(check_axes(axes, ndim, "a tensor"))


def _mask_shape(shape, transform: str, axes) -> list[int]:
    """Shape of the support: x's shape with ``axes`` moved last (rfftn half for 'fft')."""
    lead = []
    for i in range(len(shape)):
        if i not in axes:
            lead.append(shape[i])
    sizes = []
    for a in axes:
        sizes.append(shape[a])
    if transform == "fft":
        sizes[-1] = sizes[-1] // 2 + 1
    return lead + sizes


@contextlib.contextmanager
def _on_stream(x: Tensor):
    """Run CuPy work on torch's current stream (no-op on CPU)."""
    if x.device.type != "cuda":
        yield
        return
    import cupy

    with cupy.cuda.ExternalStream(stream_of(x)):
        yield


def _forward_impl(x: Tensor, k: int, transform: str, axes) -> tuple[Tensor, Tensor]:
    xin = x.float() if x.dtype in _HALF else x
    with _on_stream(x):
        y, mask = _op.sparse_project(to_kernel(xin), k, transform, tuple(axes), return_mask=True)
    return from_kernel(y, x.device).to(x.dtype), from_kernel(mask, x.device)


def _masked_impl(g: Tensor, mask: Tensor, transform: str, axes) -> Tensor:
    gin = g.float() if g.dtype in _HALF else g
    with _on_stream(g):
        y = _op.project_with_mask(to_kernel(gin.contiguous()), to_kernel(mask), transform, tuple(axes))
    return from_kernel(y, g.device).to(g.dtype)


@torch.library.custom_op("hotops::sparse_project", mutates_args=())
def _sparse_project_op(x: Tensor, k: int, transform: str, axes: list[int]) -> tuple[Tensor, Tensor]:
    _check_x(x)
    return _forward_impl(x, k, transform, _norm_axes(axes, x.dim()))


@_sparse_project_op.register_fake
def _(x: Tensor, k: int, transform: str, axes: list[int]) -> tuple[Tensor, Tensor]:
    # no kernel runs on fake tensors: check here what the output shapes depend on
    _check_x(x)
    ax = _norm_axes(axes, x.dim())
    transform = _op.check_transform(transform)
    return torch.empty_like(x, memory_format=torch.contiguous_format), x.new_empty(
        _mask_shape(x.shape, transform, ax), dtype=torch.bool)


@torch.library.custom_op("hotops::sparse_project_masked", mutates_args=())
def _sparse_project_masked_op(g: Tensor, mask: Tensor, transform: str, axes: list[int]) -> Tensor:
    return _masked_impl(g, mask, transform, _norm_axes(axes, g.dim()))


@_sparse_project_masked_op.register_fake
def _(g: Tensor, mask: Tensor, transform: str, axes: list[int]) -> Tensor:
    return torch.empty_like(g, memory_format=torch.contiguous_format)


def _setup_context(ctx, inputs, output) -> None:
    _x, _k, transform, axes = inputs
    _y, mask = output
    ctx.save_for_backward(mask)
    ctx.transform = transform
    ctx.axes = axes


def _backward(ctx, grad_y: Tensor, _grad_mask):
    (mask,) = ctx.saved_tensors
    if not ctx.needs_input_grad[0]:
        return None, None, None, None
    return torch.ops.hotops.sparse_project_masked(grad_y, mask, ctx.transform, ctx.axes), None, None, None


_sparse_project_op.register_autograd(_backward, setup_context=_setup_context)


class SparseProjection(torch.autograd.Function):
    """y = F^-1 H_k(F x): the top-k projection in the orthonormal DCT or DFT, differentiable.

    Notes
    -----
    Bafna, Murtagh & Vyas (2018), Algorithm 1, step x^p = H_k(F(y - e^p)). With the support
    M chosen by the forward, y = F^-1 M F x is an orthogonal projection, so the backward is
    the same projection F^T M F applied to dL/dy (the saved bool mask). The support is
    piecewise constant in x, so this is the exact gradient wherever the k-th and (k+1)-th
    magnitudes differ.
    """

    @staticmethod
    def forward(ctx, x: Tensor, k: int, transform: str = "dct", axes=(-2, -1)) -> Tensor:
        _check_x(x)
        ax = _norm_axes(axes, x.dim())
        y, mask = _forward_impl(x, k, transform, ax)
        ctx.save_for_backward(mask)
        ctx.transform = transform
        ctx.axes = ax
        ctx.mark_non_differentiable(mask)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y: Tensor):
        (mask,) = ctx.saved_tensors
        return _masked_impl(grad_y, mask, ctx.transform, ctx.axes), None, None, None


def sparse_project(x: Tensor, k: int, transform: str = "dct", axes=(-2, -1)) -> Tensor:
    """Differentiable top-k projection of x over ``axes`` (batched over the other axes).

    See :func:`hotops.sparse_project` for k's convention with the DFT (conjugate pairs
    count 2 and are kept together). CPU and CUDA tensors, float32/float64; float16 and
    bfloat16 (autocast) are projected in float32 and rounded back once.
    """
    if torch.compiler.is_compiling():  # the op's schema takes the axes as a list of ints
        _check_x(x)
        return torch.ops.hotops.sparse_project(x, check_int("k", k), transform, _norm_axes(axes, x.dim()))[0]
    return SparseProjection.apply(x, k, transform, axes)  # (its forward checks x and the axes)


def sparse_project_with_mask(x: Tensor, k: int, transform: str = "dct", axes=(-2, -1)) -> tuple[Tensor, Tensor]:
    """(y, mask) through the custom op: y differentiable, mask the chosen support (bool)."""
    _check_x(x)
    # the op's schema takes a Python int: numpy integers are converted, other values refused
    return torch.ops.hotops.sparse_project(x, check_int("k", k), transform, _norm_axes(axes, x.dim()))


class IHTDefense(nn.Module):
    """Classify the IHT reconstruction of the input: ``classifier(IHT_k,t(y))``.

    Parameters
    ----------
    classifier : nn.Module
        Takes the reconstruction (same shape as the input); ideally trained on top-k
        projections ``sparse_project(x, k)`` (Bafna et al. 2018, Sec. 5).
    k, t : int
        Transform coefficients and corrupted pixels per sample (see :func:`hotops.iht`).
    n_iter : int
        IHT iterations (each sample stops early once converged, ``tol``).
    transform : {'dct', 'fft'}
    axes : the transformed axes (default the last two: one sample per image and channel).
    straight_through : bool
        Gradient w.r.t. the input: by default none flows through the reconstruction (it is
        computed without autograd). With ``straight_through=True`` the backward treats IHT as
        the identity (BPDA), for adaptive attacks on the defended model.
    """

    def __init__(self, classifier: nn.Module, k: int, t: int, n_iter: int = 10, transform: str = "dct",
                 axes=(-2, -1), tol: float = 1e-6, straight_through: bool = False):
        super().__init__()
        if not isinstance(classifier, nn.Module):
            raise TypeError(f"classifier must be an nn.Module, got {type(classifier).__qualname__}")
        # checked when the module is built, so that a bad setting fails before any batch runs
        transform = _op.check_transform(transform)
        k, t, n_iter = (check_int(name, v, min=1) for name, v in (("k", k), ("t", t), ("n_iter", n_iter)))
        self.classifier = classifier
        self.k, self.t, self.n_iter = k, t, n_iter
        self.transform, self.axes, self.tol = transform, tuple(axes), float(tol)
        self.straight_through = bool(straight_through)

    def extra_repr(self) -> str:
        return f"k={self.k}, t={self.t}, n_iter={self.n_iter}, transform={self.transform!r}"

    def reconstruct(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """(x_hat, e_hat) of Algorithm 1 for the batch y, without autograd."""
        check_tensor("y", y, dtypes=_DTYPES)
        return _on_kernel(_op.iht, y, self.k, self.t, n_iter=self.n_iter, tol=self.tol, transform=self.transform,
                          axes=self.axes)

    def forward(self, y: Tensor) -> Tensor:
        x_hat, _ = self.reconstruct(y)
        if self.straight_through and y.requires_grad:
            x_hat = y + (x_hat - y).detach()
        return self.classifier(x_hat)


# --------------------------------------------------------------------------- IHT on tensors

def _on_kernel(fn, y: Tensor, *args, **kwargs) -> tuple[Tensor, ...]:
    """fn (a kernel entry) on a zero-copy view of y, on torch's current stream; its array
    results back as tensors over the same memory (the iteration counts: CPU int64)."""
    with _on_stream(y):
        res = fn(to_kernel(y), *args, **kwargs)
    return tuple(from_kernel(r, y.device) for r in res)


def iht(y: Tensor, k: int, t: int, n_iter: int = 20, tol: float = 1e-6, transform: str = "dct", axes=(-2, -1), *,
        return_iterations: bool = False, workers=None) -> tuple[Tensor, ...]:
    """Algorithm 1 (IHT) of Bafna et al. (2018) on a tensor, without autograd.

    y is read without a copy (CPU: a numpy view; CUDA: a CuPy view, on torch's current
    stream) and ``hotops.kernels.topk_threshold.iht`` runs on it; (x_hat, e_hat) come back
    as tensors on y's device (and the iterations per sample, a CPU int64 tensor, when
    ``return_iterations``). Arguments as in :func:`hotops.iht`.
    """
    check_tensor("y", y, dtypes=_IHT_DTYPES)
    return _on_kernel(_op.iht, y, k, t, n_iter, tol, transform, axes, return_iterations=return_iterations,
                      workers=workers)


def patchwise_iht(y: Tensor, k: int, t: int, patch=(7, 7), n_iter: int = 20, tol: float = 1e-6,
                  transform: str = "dct", *, workers=None) -> tuple[Tensor, Tensor]:
    """Algorithm 2 (IHT on non-overlapping patches) of Bafna et al. (2018) on a tensor,
    without autograd; as :func:`iht`, arguments as in :func:`hotops.patchwise_iht`."""
    check_tensor("y", y, dtypes=_IHT_DTYPES)
    return _on_kernel(_op.patchwise_iht, y, k, t, patch, n_iter, tol, transform, workers=workers)
