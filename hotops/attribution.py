"""Image-specific class saliency and class model visualisation (Simonyan et al. 2013).

* :func:`saliency`: M = max over colour channels of |dS_c/dI| (Sec. 3.1), with the
  gradient, DeconvNet or guided ReLU backward rule (Sec. 4), for one or several target
  classes per image; several targets share one forward and one batched backward.
* :func:`class_model`: argmax_I S_c(I) - lambda ||I||^2 by gradient ascent from the zero
  image, plus the training mean image (Sec. 2), batched over targets.

S_c is the unnormalised class score (the logit), not the softmax: the softmax gradient
also depends on the other classes' scores (Sec. 2).
"""
from __future__ import annotations

from hotops.kernels._validate import check_int, check_real

__all__ = ["saliency", "class_model", "SALIENCY_METHODS"]

SALIENCY_METHODS = ("gradient", "deconvnet", "guided")


def _check_model(model):
    import torch

    if not isinstance(model, torch.nn.Module) and not callable(model):
        raise TypeError(f"model must be a torch.nn.Module or a callable, got {type(model).__qualname__}")


def _check_logits(logits, n: int):
    import torch

    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != n:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__qualname__
        raise ValueError(f"model output must have shape (N, classes) = ({n}, classes), got {shape}")
    if logits.shape[1] < 1:
        raise ValueError(f"model output must have at least one class, got shape {tuple(logits.shape)}")


def _targets(target, n: int, device):
    """target -> (LongTensor (N, T), squeeze) where squeeze says the result is (N, H, W)."""
    import numpy as np
    import torch

    if isinstance(target, bool):
        raise TypeError("target must be an int, a sequence of ints or an integer tensor, got bool")
    if isinstance(target, (int, np.integer)):
        return torch.full((n, 1), int(target), dtype=torch.long, device=device), True
    if isinstance(target, torch.Tensor):
        t = target
    else:
        try:
            arr = np.asarray(target)
        except Exception as exc:  # ragged lists
            raise ValueError(f"target must be rectangular (N,) or (N, T), got {target!r}") from exc
        if arr.dtype == object:
            raise ValueError(f"target must be rectangular (N,) or (N, T), got {target!r}")
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"target must hold integers, got dtype {arr.dtype}")
        t = torch.as_tensor(arr.astype(np.int64) if arr.size else np.zeros(arr.shape, np.int64))
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"target must hold integers, got dtype {t.dtype}")
    if t.dim() == 0:
        return torch.full((n, 1), int(t), dtype=torch.long, device=device), True
    if t.dim() == 1:
        if t.shape[0] != n:
            raise ValueError(f"target must have one entry per image (N={n}), got shape {tuple(t.shape)}")
        return t.to(device=device, dtype=torch.long).view(n, 1), True
    if t.dim() == 2:
        if t.shape[0] != n or t.shape[1] < 1:
            raise ValueError(f"target of shape (N, T) must have N={n} and T >= 1, got {tuple(t.shape)}")
        return t.to(device=device, dtype=torch.long), False
    raise ValueError(f"target must be an int, (N,) or (N, T), got shape {tuple(t.shape)}")


def _check_range(targets, classes: int):
    lo, hi = int(targets.min()), int(targets.max())
    if lo < 0 or hi >= classes:
        bad = lo if lo < 0 else hi
        raise ValueError(f"target {bad} is out of range for a model with {classes} classes (0..{classes - 1})")


def _check_images(x):
    import torch

    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor (N, C, H, W), got {type(x).__module__}.{type(x).__qualname__}")
    if x.dim() != 4:
        raise ValueError(f"x must have 4 dimensions (N, C, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    if x.device.type not in ("cpu", "cuda"):
        raise TypeError(f"x must be on a CPU or CUDA device, got {x.device}")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"x must hold at least one image with at least one channel, got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        # a NaN pixel need not reach the gradient (ReLU and max-pooling drop it), so the map
        # would look finite while it is not the saliency of any image: refused instead
        raise ValueError("x must be finite: it holds NaN or inf")


def _check_model_matches(module, x) -> None:
    """TypeError naming x when a module's floating-point parameters are of another dtype or
    on another device than x (torch would fail inside the forward with a RuntimeError)."""
    if module is None:
        return
    for p in module.parameters():
        if p.is_floating_point():
            if p.device != x.device:
                raise TypeError(f"x is on {x.device} but the model's parameters are on {p.device}")
            if p.dtype != x.dtype:
                name = str(x.dtype).removeprefix("torch.")
                want = str(p.dtype).removeprefix("torch.")
                raise TypeError(f"x must have the model's dtype {want}, got {name}")
            return


def saliency(model, x, target, method: str = "gradient", *, batching: str = "vmap"):
    """Image-specific class saliency maps M = max_c |dS_c/dI| (Simonyan et al. 2013).

    Parameters
    ----------
    model : torch.nn.Module (or callable)
        Maps (N, C, H, W) images to (N, classes) class scores S (logits). Its mode is left
        as it is (call ``model.eval()`` first, as for Captum); no parameter gradient is
        computed or accumulated.
    x : tensor (N, C, H, W), floating point
        The (normalised) images. Not modified.
    target : int, sequence or integer tensor
        One class for all images (int), one per image (N,), or T per image (N, T).
    method : {'gradient', 'deconvnet', 'guided'}
        ReLU backward rule (Sec. 4): back-propagation, DeconvNet, or guided
        back-propagation. Applied to the model's ``nn.ReLU`` modules and to its
        ``F.relu``/``torch.relu`` calls (:func:`hotops.bindings.relu_rule`).
    batching : {'vmap', 'replicate', 'loop'}
        How T > 1 targets per image are computed: ``'vmap'`` (default) runs one forward of
        N rows and one vmapped backward over the T one-hot grad_outputs
        (``torch.autograd.grad(..., is_grads_batched=True)``); ``'replicate'`` runs the
        batch repeated T times (N*T rows) through one forward and one backward; ``'loop'``
        runs one forward and T backward passes over the retained graph (not a batched
        backward, but the fastest on a CPU). Same result.

    Returns
    -------
    M : tensor (N, H, W), or (N, T, H, W) for an (N, T) target; x's dtype and device,
        detached.

    Raises
    ------
    ValueError
        Target out of range or of the wrong shape, model output not (N, classes),
        unknown method. ``TypeError`` for a non-tensor x or non-integer targets.

    Notes
    -----
    Sec. 3.1, Eq. (2)-(3): w = dS_c/dI at I = I_0, M_ij = max_c |w_h(i,j,c)|; the channel
    maximum is ``hotops.bindings.channel_max_abs``. Only the input gradient is computed
    (``torch.autograd.grad`` with respect to x: no weight gradient). Images must be
    independent within the batch (BatchNorm in eval mode). With an (N, T) target the T
    backward passes are one batched backward, not a Python loop: the grad_outputs are
    one-hot (N, classes) selectors, so entry (n, t) is the gradient of S_{target[n, t]}
    at image n alone. ``'vmap'`` (the default) runs the T backward passes as one vmapped
    backward; ``'loop'`` runs them one after the other on the retained graph (less memory);
    ``'replicate'`` repeats the batch T times (T forwards, T times the activation memory).
    ``hotops/bench/test_saliency.py`` times the three against Captum's ``Saliency`` called
    once per target.
    """
    import torch

    from hotops.bindings import channel_max_abs, relu_rule

    _check_model(model)
    _check_images(x)
    if method not in SALIENCY_METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, SALIENCY_METHODS))}, got {method!r}")
    if batching not in ("replicate", "vmap", "loop"):
        raise ValueError(f"batching must be 'replicate', 'vmap' or 'loop', got {batching!r}")
    n, c, h, w = x.shape
    module = model if isinstance(model, torch.nn.Module) else None
    _check_model_matches(module, x)
    targets, squeeze = _targets(target, n, x.device)
    t = targets.shape[1]
    replicate = t > 1 and batching == "replicate"
    # rows k * N + n of the replicated batch are image n for its k-th target
    xg = (x.detach().repeat(t, 1, 1, 1) if replicate else x.detach()).requires_grad_(True)
    with torch.enable_grad(), relu_rule(module, method):
        logits = model(xg)
        _check_logits(logits, xg.shape[0])
        _check_range(targets, logits.shape[1])
        # one-hot selectors: select[k, n] picks S_{targets[n, k]} of image n
        select = torch.zeros((t, n, logits.shape[1]), dtype=logits.dtype, device=logits.device)
        select.scatter_(2, targets.t().unsqueeze(2), 1.0)
        if replicate:
            (grad,) = torch.autograd.grad(logits, xg, select.view(t * n, -1))
        elif t == 1:
            (grad,) = torch.autograd.grad(logits, xg, select[0])
        elif batching == "loop":
            grad = torch.stack([torch.autograd.grad(logits, xg, select[k], retain_graph=k + 1 < t)[0]
                                for k in range(t)])
        else:
            (grad,) = torch.autograd.grad(logits, xg, select, is_grads_batched=True)
    grad = grad.reshape(t * n, c, h, w)
    if grad.dtype in (torch.float16, torch.bfloat16) and grad.device.type == "cpu":
        # the CPU kernel reduces float32/float64; max |.| of a half tensor is exact in float32
        sal = channel_max_abs(grad.float().contiguous()).to(grad.dtype).view(t, n, h, w)
    else:
        sal = channel_max_abs(grad.contiguous()).view(t, n, h, w)
    if squeeze:
        return sal[0]
    return sal.permute(1, 0, 2, 3).contiguous()


# --------------------------------------------------------------------------- class models

def class_model(model, target, *, steps: int = 200, lr: float = 1.0, l2: float = 1e-3,
                mean_image=None, input_shape=None, progress: bool = True):
    """Class model visualisation: argmax_I S_c(I) - l2 ||I||^2 by gradient ascent from zero.

    Parameters
    ----------
    model : torch.nn.Module
        Class scores S (N, classes). Put in eval mode for the ascent (BatchNorm and dropout
        must not mix images), its mode restored afterwards; its parameters get no gradient.
    target : int or sequence of ints
        One class, or several: all are optimised together as one batch.
    steps : int
        Gradient ascent iterations.
    lr : float
        Step size: I <- I + lr * d(S_c(I) - l2 ||I||^2)/dI.
    l2 : float
        lambda of the L2 penalty (the paper gives no value).
    mean_image : tensor (C, H, W) or (C,), optional
        Added to the result (the paper adds the training mean image). In the model's input
        space, i.e. normalised like the images fed to it.
    input_shape : (C, H, W), optional
        Image shape; default from ``model.arch['input_size']`` (SimonyanNet) with C = 3.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    images : tensor (C, H, W) for an int target, (T, C, H, W) for T targets, on the model's
        device in the dtype of its (first floating-point) parameters (float32 for a model
        without any), in the model's input space (mean added if given).

    Notes
    -----
    Simonyan et al. (2013), Sec. 2, Eq. (1): arg max_I S_c(I) - lambda ||I||_2^2, found by
    back-propagation with respect to the input from the zero image, the training mean image
    added to the result. The T images are independent rows of one batch: one forward and
    one backward per step for all targets.
    """
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__qualname__}")
    steps = check_int("steps", steps, min=1)
    lr = check_real("lr", lr)
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    l2 = check_real("l2", l2, min=0)
    single = isinstance(target, (int, np.integer)) and not isinstance(target, bool)
    tlist = [int(target)] if single else [int(v) for v in np.asarray(target).reshape(-1)]
    if isinstance(target, bool) or (not single and np.asarray(target).dtype.kind not in "iu"):
        raise TypeError(f"target must be an int or a sequence of ints, got {target!r}")
    if not tlist:
        raise ValueError("target must name at least one class")
    if input_shape is None:
        arch = getattr(model, "arch", None)
        if not isinstance(arch, dict) or "input_size" not in arch:
            raise ValueError("input_shape (C, H, W) is required for a model without arch['input_size']")
        hh, ww = arch["input_size"] if not isinstance(arch["input_size"], int) else (arch["input_size"],) * 2
        input_shape = (3, int(hh), int(ww))
    if isinstance(input_shape, (str, bytes)) or not hasattr(input_shape, "__len__") or len(input_shape) != 3:
        raise ValueError(f"input_shape must be (C, H, W) with positive sizes, got {input_shape!r}")
    input_shape = tuple(check_int("input_shape", v, min=1) for v in input_shape)
    from hotops.kernels._validate import check_size

    check_size("input_shape", (len(tlist), *input_shape), np.float64, "images")
    device, dtype = torch.device("cpu"), torch.float32
    for i, param in enumerate(model.parameters()):
        if i == 0:
            device = param.device
        if param.is_floating_point():
            dtype = param.dtype
            break
    targets = torch.tensor(tlist, dtype=torch.long, device=device)
    if mean_image is not None:
        mean_image = torch.as_tensor(mean_image, dtype=dtype, device=device)
        if mean_image.dim() == 1:
            mean_image = mean_image.view(-1, 1, 1)
        try:
            torch.broadcast_shapes(mean_image.shape, tuple(input_shape))
        except RuntimeError as exc:
            raise ValueError(f"mean_image of shape {tuple(mean_image.shape)} does not broadcast to "
                             f"input_shape {tuple(input_shape)}") from exc
    image = torch.zeros((len(tlist), *input_shape), dtype=dtype, device=device)
    was_training = model.training
    model.eval()
    try:
        for step in tqdm(range(int(steps)), desc="class model", disable=not progress, leave=False):
            image.requires_grad_(True)
            with torch.enable_grad():
                logits = model(image)
                if step == 0:
                    _check_logits(logits, len(tlist))
                    _check_range(targets, logits.shape[1])
                score = logits.gather(1, targets.view(-1, 1)).sum() - l2 * (image * image).sum()
                (grad,) = torch.autograd.grad(score, image)
            image = (image.detach() + lr * grad)
    finally:
        model.train(was_training)
    image = image.detach()
    if mean_image is not None:
        image = image + mean_image
    return image[0] if single else image
