"""Demo section: a greedy L0 attack, IHT reconstruction and the top-k CNN (Bafna et al. 2018)."""
from __future__ import annotations

import time

import numpy as np

from ._context import DemoContext


def defense_section(ctx: DemoContext) -> str:
    """Demo: greedy L0 attack on the normal CNN, IHT reconstruction, top-k CNN (committed checkpoints)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hotops.apps.defense import DEFAULT_T_DEFENSE, digits_28, format_table, greedy_l0_attack, predict
    from hotops.models.mnist_cnn import load_defense_model
    from hotops.sparse_fourier import iht

    ctx.step("loading the defence checkpoints")
    normal, meta_n = load_defense_model("normal")
    topk, meta_k = load_defense_model("topk")
    k, t_def = int(meta_k["k"]), int(meta_k.get("t_defense", DEFAULT_T_DEFENSE))
    n = 60 if ctx.quick else 500
    x, labels, source = digits_28(n)
    ctx.step("greedy L0 attack (t = 10 pixels)")
    adv = greedy_l0_attack(normal, x, labels, ts=(10,))[10]
    t_start = time.perf_counter()
    x_hat, e_hat = iht(adv, k, t_def, n_iter=10)
    iht_s = time.perf_counter() - t_start
    ctx.step("classifying and drawing")
    p_clean = predict(normal, x)
    p_adv = predict(normal, adv)
    p_def = predict(topk, x_hat)
    acc = {name: float((p == labels).mean()) for name, p in
           (("clean", p_clean), ("attacked", p_adv), ("defended", p_def))}
    show = np.flatnonzero((p_adv != labels) & (p_clean == labels))[:6]
    if show.size < 6:
        show = np.concatenate([show, np.setdiff1d(np.arange(n), show)[: 6 - show.size]])
    fig, axes = plt.subplots(3, len(show), figsize=(1.6 * len(show), 5.2), squeeze=False)
    for c, i in enumerate(show):
        for r, (img, title) in enumerate(((x[i], f"clean: {p_clean[i]}"), (adv[i], f"attacked: {p_adv[i]}"),
                                         (x_hat[i], f"IHT: {p_def[i]}"))):
            ax = axes[r, c]
            ax.imshow(img, cmap="gray", vmin=0, vmax=1)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    fig.suptitle(f"L0 attack (10 pixels) on the normal CNN; IHT (k={k}, t={t_def}) + top-k CNN", fontsize=10)
    fig.tight_layout()
    path = ctx.figure_path("defense.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    lines = [
        "Bafna, Murtagh & Vyas (NeurIPS 2018) model an attacked digit as y = x + e, x k-sparse in the "
        "2-D DCT and e a t-pixel perturbation, recover x by iterative hard thresholding "
        "(`hotops.iht`, Algorithm 1) and classify it with a CNN trained on top-k projections.",
        f"![clean, attacked and reconstructed digits]({path.name})",
        f"{n} digits from {source}; greedy JSMA-style L0 attack with 10 pixels on the normal CNN "
        f"(committed checkpoints, k = {k}, IHT t = {t_def}, 10 iterations, {1000 * iht_s:.0f} ms for IHT):",
        "",
        "| | normal CNN, clean | normal CNN, attacked | IHT + top-k CNN, attacked |",
        "| --- | ---: | ---: | ---: |",
        f"| accuracy | {100 * acc['clean']:.1f}% | {100 * acc['attacked']:.1f}% | {100 * acc['defended']:.1f}% |",
    ]
    ev = meta_k.get("evaluation")
    if ev:
        lines += ["", f"Measured by `hotops train defense` on the first {ev['n_images']} MNIST test images "
                  f"(accuracy %, IHT k={ev['k']}, t={ev['t_defense']}):", "", format_table(ev)]
    return "\n".join(lines)
