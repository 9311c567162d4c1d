"""hotops.bindings: torch autograd Functions, functional wrappers, modules and
``torch.library`` custom ops over hotops' kernels. Importing it imports torch."""
from __future__ import annotations

from .channel_max import ChannelMaxAbs, ChannelMaxAbsReduce, channel_max_abs, channel_max_abs_argmax
from .clip import clip_grad_adjustable_
from .resize import Imresize, ImresizeFunction, imresize, imresize_transpose

__all__ = [
    "ChannelMaxAbs",
    "ChannelMaxAbsReduce",
    "channel_max_abs",
    "channel_max_abs_argmax",
    "clip_grad_adjustable_",
    "Imresize",
    "ImresizeFunction",
    "imresize",
    "imresize_transpose",
]

# Each further op adds its own import line and its own ``__all__ +=`` line below.
from .relu_rules import RELU_RULES, DeconvReLU, GuidedReLU, relu_rule
__all__ += ["DeconvReLU", "GuidedReLU", "relu_rule", "RELU_RULES"]
from .reversible import ReversibleBlock, ReversibleSequence, saved_tensor_bytes
__all__ += ["ReversibleBlock", "ReversibleSequence", "saved_tensor_bytes"]
from .topk_threshold import IHTDefense, SparseProjection, iht, patchwise_iht, sparse_project, sparse_project_with_mask
__all__ += ["IHTDefense", "SparseProjection", "iht", "patchwise_iht", "sparse_project", "sparse_project_with_mask"]
from .factorization import nmf
__all__ += ["nmf"]
