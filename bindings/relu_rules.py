"""ReLU backward rules of the gradient, DeconvNet and guided backpropagation (torch).

Simonyan, Vedaldi & Zisserman (2013), Sec. 4: DeconvNet reconstruction (Zeiler & Fergus
2013) equals the gradient dS_c/dI computed with a different backward rule at each ReLU.
With X_{n+1} = max(X_n, 0) and R the signal coming back from the layer above:

* gradient (back-propagation):  R_n = R_{n+1} * [X_n > 0]
* DeconvNet:                    R_n = R_{n+1} * [R_{n+1} > 0]        (ignores the forward sign)
* guided backpropagation        R_n = R_{n+1} * [X_n > 0] * [R_{n+1} > 0]
  (Springenberg et al. 2015): both masks.

Everything else (convolutions, pooling, linear layers) keeps its ordinary backward, which
is what makes the DeconvNet "the gradient with another ReLU rule" (the paper's Eq. 5-6).

* :class:`DeconvReLU`, :class:`GuidedReLU`: ``torch.autograd.Function`` s whose forward is
  ``relu(x)`` and whose backward is the rule above.
* :func:`relu_rule` (context manager): applies a rule to a model's ``nn.ReLU`` modules
  *and* to ``F.relu`` / ``torch.relu`` / ``Tensor.relu`` calls made inside the block
  (Captum's ``GuidedBackprop``/``Deconvolution`` only hook ``nn.ReLU`` modules), and
  restores everything on exit, also when the block raises.
"""
from __future__ import annotations

import contextlib
import threading

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

__all__ = ["DeconvReLU", "GuidedReLU", "relu_rule", "RELU_RULES"]

RELU_RULES = ("gradient", "deconvnet", "guided")


class DeconvReLU(torch.autograd.Function):
    """relu(x) forward; DeconvNet backward R_n = relu(R_{n+1}) (the forward sign is ignored).

    Notes
    -----
    Zeiler & Fergus (2013) / Simonyan et al. (2013), Sec. 4: the DeconvNet passes the
    reconstruction signal through a ReLU of its own instead of the forward switch
    ``[X_n > 0]``. The backward is not the derivative of the forward (by design), so
    ``gradcheck`` does not apply; tests compare with the formula.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return x.clamp_min(0)  # not torch.relu: that name is patched inside relu_rule

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad.clamp(min=0)


class GuidedReLU(torch.autograd.Function):
    """relu(x) forward; guided backward R_n = R_{n+1} [X_n > 0] [R_{n+1} > 0].

    Notes
    -----
    Springenberg et al. (2015), guided backpropagation: the product of the gradient's
    forward switch and the DeconvNet's backward ReLU. The output y = relu(x) is saved
    (y > 0 exactly where x > 0); it is usually kept alive by the next layer anyway.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        y = x.clamp_min(0)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        return torch.where((y > 0) & (grad > 0), grad, torch.zeros((), dtype=grad.dtype, device=grad.device))


_FUNCTIONS = {"deconvnet": DeconvReLU, "guided": GuidedReLU}
_PATCH_LOCK = threading.RLock()
_MISSING = object()


def _check_rule(rule) -> str:
    if rule not in RELU_RULES:
        raise ValueError(f"rule must be one of {', '.join(map(repr, RELU_RULES))}, got {rule!r}")
    return rule


def _functional(fn):
    """relu replacements with torch's signatures, routing through ``fn.apply``."""

    def relu(input: Tensor, inplace: bool = False) -> Tensor:  # F.relu
        out = fn.apply(input)
        if inplace:
            return input.copy_(out)
        return out

    def relu_plain(input: Tensor) -> Tensor:  # torch.relu, Tensor.relu
        return fn.apply(input)

    def relu_inplace(input: Tensor) -> Tensor:  # torch.relu_, F.relu_, Tensor.relu_
        input.copy_(fn.apply(input))
        return input

    return relu, relu_plain, relu_inplace


@contextlib.contextmanager
def relu_rule(model: nn.Module | None, rule: str, *, functional: bool = True):
    """Apply a ReLU backward rule inside a ``with`` block.

    Parameters
    ----------
    model : nn.Module or None
        Every ``nn.ReLU`` module in ``model.modules()`` runs through the rule's Function.
        ``None``: only the functional calls are patched.
    rule : {'gradient', 'deconvnet', 'guided'}
        ``'gradient'`` changes nothing (the ordinary back-propagation).
    functional : bool
        Also patch ``torch.nn.functional.relu``/``relu_``, ``torch.relu``/``relu_`` and
        ``torch.Tensor.relu``/``relu_`` for the duration of the block.

    Notes
    -----
    Restoration: the modules' instance-level ``forward`` overrides are removed and the
    patched functions put back in a ``finally`` clause, so an exception inside the block
    leaves the model and torch as they were. The functional patch is process-wide while the
    block runs (another thread calling ``F.relu`` then gets the rule too); blocks may nest.
    Code that bound ``relu`` at import time (``from torch.nn.functional import relu``) and
    ``torch.clamp``-style ReLUs are not seen. ``nn.ReLU(inplace=True)`` modules return a
    new tensor under a rule (the forward value is the same).
    """
    _check_rule(rule)
    if model is not None and not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module or None, got {type(model).__qualname__}")
    if rule == "gradient":
        yield model
        return
    fn = _FUNCTIONS[rule]
    relu, relu_plain, relu_inplace = _functional(fn)
    patched_modules: list[tuple[nn.Module, bool, object]] = []
    saved_functions: list[tuple[object, str, object]] = []
    with _PATCH_LOCK:
        try:
            if model is not None:
                for m in model.modules():
                    if isinstance(m, nn.ReLU):
                        had = "forward" in m.__dict__
                        patched_modules.append((m, had, m.__dict__.get("forward")))
                        m.forward = relu_plain
            if functional:
                for owner, name, new in (
                    (F, "relu", relu), (F, "relu_", relu_inplace),
                    (torch, "relu", relu_plain), (torch, "relu_", relu_inplace),
                    (torch.Tensor, "relu", relu_plain), (torch.Tensor, "relu_", relu_inplace),
                ):
                    saved_functions.append((owner, name, owner.__dict__.get(name, _MISSING)))
                    setattr(owner, name, new)
            yield model
        finally:
            for owner, name, old in reversed(saved_functions):
                if old is _MISSING:  # inherited (Tensor.relu lives on torch._C.TensorBase)
                    delattr(owner, name)
                else:
                    setattr(owner, name, old)
            for m, had, old in reversed(patched_modules):
                if had:
                    m.forward = old
                else:
                    m.__dict__.pop("forward", None)
