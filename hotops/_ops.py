"""Public array-agnostic entry points: numpy, CuPy (or any CUDA array) and torch tensors.

torch tensors are routed through ``hotops.bindings`` (autograd, custom ops); everything else
straight to ``hotops.kernels``. torch is never imported unless a tensor is passed.
"""
from __future__ import annotations


def _is_torch_tensor(x) -> bool:
    module = type(x).__module__
    if not (module == "torch" or module.startswith("torch.")):
        return False
    import torch

    return isinstance(x, torch.Tensor)


def channel_max_abs(g, *, return_argmax: bool = False):
    """Saliency reduction M[n, i, j] = max_c |g[n, c, i, j]| of an (N, C, H, W) gradient.

    Simonyan, Vedaldi & Zisserman (2013), "Deep Inside Convolutional Networks", Sec. 3.1:
    M_ij = max_c |w_h(i,j,c)| with w = dS_c/dI the gradient of the class score.

    Parameters
    ----------
    g : numpy array, CUDA array (CuPy...) or torch tensor, shape (N, C, H, W)
        Floating point (float16 on CUDA only). Non-contiguous input is read in place.
    return_argmax : bool
        Also return the winning channel per pixel (int32).

    Returns
    -------
    Same kind of array as ``g``, shape (N, H, W) (and the argmax if requested). For torch
    tensors the result is differentiable (see ``hotops.bindings.ChannelMaxAbs``) unless
    ``return_argmax`` is set.
    """
    if _is_torch_tensor(g):
        from hotops import bindings

        if return_argmax:
            return bindings.channel_max_abs_argmax(g)
        return bindings.channel_max_abs(g)
    from hotops.kernels import channel_max

    return channel_max.channel_max_abs(g, return_argmax=return_argmax)
