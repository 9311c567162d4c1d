"""Public array-agnostic entry points: numpy, CuPy (or any CUDA array) and torch tensors.

torch tensors are routed through ``hotops.bindings`` (autograd, custom ops); everything else
straight to ``hotops.kernels``. torch is never imported unless a tensor is passed.
"""
from __future__ import annotations

from hotops.kernels._backend import is_torch as _is_torch_tensor


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


def imresize(x, scale=None, output_shape=None, antialias: bool = True):
    """MATLAB-exact bicubic resize (``imresize(x, ..., 'bicubic')``) of an image or a batch.

    Keys (1981) cubic convolution with a = -0.5; when shrinking with ``antialias`` the kernel
    is widened by 1/scale (MATLAB's behaviour), borders are mirrored and weights normalised.
    This is the resize the VDSR protocol (Kim, Lee & Lee, CVPR 2016) depends on.

    Layouts differ by array type, following each library's convention: numpy and CUDA
    arrays may be (H, W), (H, W, C) or (N, C, H, W); torch tensors are resized on their
    last two axes (a 3-D tensor is (C, H, W)) and are differentiable.
    """
    if _is_torch_tensor(x):
        from hotops.bindings import resize

        return resize.imresize(x, scale=scale, output_shape=output_shape, antialias=antialias)
    from hotops.kernels import resize

    return resize.imresize(x, scale=scale, output_shape=output_shape, antialias=antialias)


def clip_grad_adjustable_(grads, theta, lr):
    """VDSR's adjustable gradient clipping, in place: every element to [-theta/lr, theta/lr].

    Kim, Lee & Lee (CVPR 2016), Sec. 3.1. ``grads`` is a tensor, an iterable of parameters
    or tensors (their ``.grad`` is clipped when they are parameters), or a sequence of
    numpy/CUDA arrays. One fused pass over all of them; returns the fraction clipped.
    """
    if _is_torch_tensor(grads):
        from hotops.bindings import clip

        return clip.clip_grad_adjustable_(grads, theta, lr)
    items = list(grads) if not hasattr(grads, "shape") else [grads]
    if items and any(_is_torch_tensor(g) for g in items):
        from hotops.bindings import clip

        return clip.clip_grad_adjustable_(items, theta, lr)
    from hotops.kernels import clip

    return clip.clip_grad_adjustable_(items, theta, lr)
