"""hotops.bindings: torch autograd Functions, functional wrappers, modules and
``torch.library`` custom ops over hotops' kernels. Importing it imports torch."""
from __future__ import annotations

from .channel_max import ChannelMaxAbs, ChannelMaxAbsReduce, channel_max_abs, channel_max_abs_argmax

__all__ = ["ChannelMaxAbs", "ChannelMaxAbsReduce", "channel_max_abs", "channel_max_abs_argmax"]
