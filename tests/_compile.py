"""A recording torch.compile backend for the tests of the custom ops (a plain module that
test files import): it runs each captured graph as AOT autograd's eager backend does and
keeps the Dynamo graphs, so that tests can count graphs and the hotops nodes in them."""
from __future__ import annotations

import torch


class GraphRecorder:
    """``torch.compile(fn, backend=GraphRecorder())``; ``.graphs`` are the Dynamo graphs.

    The graphs are compiled with ``aot_eager`` (AOT autograd, functionalisation and the
    compiled backward, without code generation), so the custom ops' fake implementations
    and autograd formulas are exercised as under inductor.
    """

    def __init__(self):
        self.graphs: list[torch.fx.GraphModule] = []

    def __call__(self, gm: torch.fx.GraphModule, example_inputs):
        self.graphs.append(gm)
        from torch._dynamo.backends.common import aot_autograd
        from torch._functorch.aot_autograd import make_boxed_func

        def boxed(g, _inputs):
            return make_boxed_func(g.forward)

        return aot_autograd(fw_compiler=boxed, bw_compiler=boxed)(gm, example_inputs)

    def calls(self, name: str) -> int:
        """Call nodes of ``torch.ops.hotops.<name>`` over all graphs."""
        n = 0
        for gm in self.graphs:
            for node in gm.graph.nodes:
                if node.op == "call_function" and _op_name(node.target) == f"hotops::{name}":
                    n += 1
        return n

    def targets(self) -> list[str]:
        return [str(node.target) for gm in self.graphs for node in gm.graph.nodes if node.op == "call_function"]


def _op_name(target) -> str:
    if isinstance(target, (torch._ops.OpOverload, torch._ops.OpOverloadPacket)):
        return target._qualified_op_name if hasattr(target, "_qualified_op_name") else target.name()
    return ""
