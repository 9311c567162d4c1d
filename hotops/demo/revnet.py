"""Demo section: saved-activation bytes against depth for five coupling implementations, and
a gradient check of the reversible stage (Gomez et al. 2017)."""
from __future__ import annotations

from ._context import DemoContext, md_table


def revnet_section(ctx: DemoContext) -> str:
    """Saved-activation bytes against depth for five implementations + a gradient check."""
    import torch

    from hotops.apps.revnet_train import saved_bytes_vs_depth

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        depths = [1, 2, 4, 8, 16] if ctx.quick else [1, 2, 4, 8, 16, 32, 64]
        ctx.step("saved bytes vs depth")
        mem = saved_bytes_vs_depth(depths, channels=8 if ctx.quick else 16, size=16, batch=4 if ctx.quick else 8)
        ctx.step("gradient check")
        check = _gradient_check()
        ctx.step("plot")
        path = ctx.figure_path("revnet_memory.png")
        _plot_memory(mem, path)
    finally:
        torch.set_num_threads(threads)
    rows = [[name] + [f"{mem[name][d] / 1024:.0f}" for d in depths] for name in mem]
    md = [
        "Gomez et al. (2017): a reversible block's input is recomputed from its output in backward, "
        "so a stage of n blocks keeps one activation instead of n. Bytes saved for backward by a "
        "stage of n coupling blocks (BN-ReLU-conv3x3 as F and G), counted with "
        "`torch.autograd.graph.saved_tensors_hooks` plus the tensors custom autograd Functions keep "
        "as context attributes (memcnn's outputs, revlib's RNG states; parameters excluded), in KiB:",
        "",
        md_table(["method"] + [f"n={d}" for d in depths], rows),
        "",
        f"![saved activation memory]({path.name})",
        "",
        f"Gradient check, RevNet-style stage of {check['depth']} blocks with BatchNorm and dropout, float64: "
        f"largest relative difference of input and parameter gradients against plain autograd "
        f"{check['max_rel_err']:.1e}; BatchNorm running statistics equal: {check['bn_equal']}.",
    ]
    return "\n".join(md)


def _gradient_check(depth: int = 6) -> dict:
    import copy

    import torch
    from torch import nn

    from hotops.bindings import ReversibleBlock, ReversibleSequence

    torch.manual_seed(0)

    def fn():
        return nn.Sequential(nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.Dropout(0.1))

    seq = ReversibleSequence(*[ReversibleBlock(fn(), fn()) for _ in range(depth)]).double()
    ref = copy.deepcopy(seq)
    x = torch.randn(4, 8, 8, 8, dtype=torch.float64)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    torch.manual_seed(1)
    (seq(xa) ** 2).mean().backward()
    torch.manual_seed(1)
    (ref.forward_stored(xb) ** 2).mean().backward()
    err = 0.0
    for a, b in zip(list(seq.parameters()) + [xa], list(ref.parameters()) + [xb]):
        err = max(err, float((a.grad - b.grad).abs().max()) / (float(b.grad.abs().max()) or 1.0))
    bn = all(torch.allclose(a, b, rtol=1e-12, atol=1e-14) for a, b in zip(seq.buffers(), ref.buffers()))
    return {"depth": depth, "max_rel_err": err, "bn_equal": bn}


def _plot_memory(mem: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    styles = {"hotops": dict(lw=3.5, alpha=0.55, zorder=1), "memcnn": dict(ls="--"), "revlib": dict(ls=":")}
    for name, by_depth in mem.items():
        d = sorted(by_depth)
        ax.plot(d, [by_depth[k] / 1024 for k in d], marker="o", label=name, **styles.get(name, {}))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("reversible blocks in the stage")
    ax.set_ylabel("bytes saved for backward (KiB)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
