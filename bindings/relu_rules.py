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
_MISSING = object()

# Scoping. A rule belongs to the thread that opened the block: each thread keeps a stack of
# its open blocks, and every patched entry point (the functional relus, the nn.ReLU modules
# of the models in use) asks that stack which rule, if any, applies to the calling thread,
# so another thread running the same model or calling F.relu at the same time gets the
# ordinary relu. The patches themselves are process-wide and reference counted: installed
# when the first block that needs them opens, removed when the last one closes.
_LOCAL = threading.local()
_LOCK = threading.Lock()
_functional_users = 0
_saved_functions: list[tuple[object, str, object]] = []
_patched_modules: dict[int, list] = {}  # id(module) -> [module, users, had_override, old]


def _stack() -> list:
    stack = getattr(_LOCAL, "stack", None)
    if stack is None:
        stack = _LOCAL.stack = []
    return stack


def _functional_rule():
    """The Function of this thread's innermost open block that patches the functional relus."""
    for fn, functional, _modules in reversed(getattr(_LOCAL, "stack", ())):
        if functional:
            return fn
    return None


def _module_rule(module):
    """The Function of this thread's innermost open block that covers ``module``."""
    key = id(module)
    for fn, _functional, modules in reversed(getattr(_LOCAL, "stack", ())):
        if key in modules:
            return fn
    return None


def _check_rule(rule) -> str:
    if rule not in RELU_RULES:
        raise ValueError(f"rule must be one of {', '.join(map(repr, RELU_RULES))}, got {rule!r}")
    return rule


def _install_functional() -> None:
    """Replace the functional relus by dispatchers (called under ``_LOCK``)."""
    originals = {}
    targets = ((F, "relu"), (F, "relu_"), (torch, "relu"), (torch, "relu_"), (torch.Tensor, "relu"),
               (torch.Tensor, "relu_"))
    for owner, name in targets:
        originals[(owner, name)] = getattr(owner, name)
        _saved_functions.append((owner, name, owner.__dict__.get(name, _MISSING)))

    f_relu, f_relu_ = originals[(F, "relu")], originals[(F, "relu_")]
    t_relu, t_relu_ = originals[(torch, "relu")], originals[(torch, "relu_")]
    m_relu, m_relu_ = originals[(torch.Tensor, "relu")], originals[(torch.Tensor, "relu_")]

    def relu(input: Tensor, inplace: bool = False) -> Tensor:  # F.relu
        fn = _functional_rule()
        if fn is None:
            return f_relu(input, inplace=inplace)
        out = fn.apply(input)
        return input.copy_(out) if inplace else out

    def dispatch_plain(original):
        def relu_plain(input: Tensor) -> Tensor:  # torch.relu, Tensor.relu
            fn = _functional_rule()
            return original(input) if fn is None else fn.apply(input)
        return relu_plain

    def dispatch_inplace(original):
        def relu_inplace(input: Tensor) -> Tensor:  # torch.relu_, F.relu_, Tensor.relu_
            fn = _functional_rule()
            if fn is None:
                return original(input)
            input.copy_(fn.apply(input))
            return input
        return relu_inplace

    new = {(F, "relu"): relu, (F, "relu_"): dispatch_inplace(f_relu_),
           (torch, "relu"): dispatch_plain(t_relu), (torch, "relu_"): dispatch_inplace(t_relu_),
           (torch.Tensor, "relu"): dispatch_plain(m_relu), (torch.Tensor, "relu_"): dispatch_inplace(m_relu_)}
    for (owner, name), fn in new.items():
        setattr(owner, name, fn)


def _remove_functional() -> None:
    for owner, name, old in reversed(_saved_functions):
        if old is _MISSING:  # inherited (Tensor.relu lives on torch._C.TensorBase)
            delattr(owner, name)
        else:
            setattr(owner, name, old)
    _saved_functions.clear()


def _patch_module(m: nn.Module) -> None:
    """Route ``m``'s forward through a dispatcher (called under ``_LOCK``)."""
    entry = _patched_modules.get(id(m))
    if entry is not None:
        entry[1] += 1
        return
    had = "forward" in m.__dict__
    old = m.__dict__.get("forward")
    previous = old if had else type(m).forward.__get__(m)

    def forward(input: Tensor) -> Tensor:
        fn = _module_rule(m)
        return previous(input) if fn is None else fn.apply(input)

    _patched_modules[id(m)] = [m, 1, had, old]
    m.forward = forward


def _unpatch_module(m: nn.Module) -> None:
    entry = _patched_modules[id(m)]
    entry[1] -= 1
    if entry[1]:
        return
    del _patched_modules[id(m)]
    if entry[2]:
        m.forward = entry[3]
    else:
        m.__dict__.pop("forward", None)


@contextlib.contextmanager
def relu_rule(model: nn.Module | None, rule: str, *, functional: bool = True):
    """Apply a ReLU backward rule inside a ``with`` block, for the calling thread.

    Parameters
    ----------
    model : nn.Module or None
        Every ``nn.ReLU`` module in ``model.modules()`` runs through the rule's Function.
        ``None``: only the functional calls are covered.
    rule : {'gradient', 'deconvnet', 'guided'}
        ``'gradient'`` changes nothing (the ordinary back-propagation).
    functional : bool
        Also cover ``torch.nn.functional.relu``/``relu_``, ``torch.relu``/``relu_`` and
        ``torch.Tensor.relu``/``relu_`` calls made inside the block.

    Notes
    -----
    The rule applies to the thread that opened the block and nowhere else: other threads
    calling ``F.relu`` or running the same model meanwhile get the ordinary relu (and their
    own rule, if they opened a block). Blocks nest; the innermost block that covers a call
    decides. Restoration happens in a ``finally`` clause, so an exception inside the block
    leaves the model and torch as they were. Threads started inside the block do not
    inherit the rule. Code that bound ``relu`` at import time (``from
    torch.nn.functional import relu``) and ``torch.clamp``-style ReLUs are not seen.
    ``nn.ReLU(inplace=True)`` modules return a new tensor under a rule (the forward value is
    the same).
    """
    global _functional_users
    _check_rule(rule)
    if model is not None and not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module or None, got {type(model).__qualname__}")
    if rule == "gradient":
        yield model
        return
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)] if model is not None else []
    entry = (_FUNCTIONS[rule], bool(functional), frozenset(id(m) for m in relus))
    with _LOCK:
        for m in relus:
            _patch_module(m)
        if functional:
            if _functional_users == 0:
                _install_functional()
            _functional_users += 1
    stack = _stack()
    stack.append(entry)
    try:
        yield model
    finally:
        stack.pop()
        with _LOCK:
            if functional:
                _functional_users -= 1
                if _functional_users == 0:
                    _remove_functional()
            for m in reversed(relus):
                _unpatch_module(m)
