"""Demo section: saliency maps, GraphCut boxes and class models of the localisation
benchmark's classifier (Simonyan et al. 2013)."""
from __future__ import annotations

import time

import numpy as np

from ._context import DemoContext


def localization_section(ctx: DemoContext) -> str:
    """Saliency maps, GraphCut boxes and class models of the localisation benchmark's classifier.

    Simonyan, Vedaldi & Zisserman (2013): Sec. 3.1 (saliency), Sec. 3.2 (GraphCut
    localisation), Sec. 2 (class models). Uses the committed checkpoint and generated
    canvases (digits drawn from scikit-learn's bundled 8x8 digits, so no data folder is needed).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    from sklearn.datasets import load_digits

    from hotops.apps.loc_bench import (CANVAS, box_iou, canvases_to_tensor, evaluate_localization, format_table,
                                       make_canvases, resize_bilinear)
    from hotops.attribution import class_model, saliency
    from hotops.localization import localize_batch
    from hotops.models.localizer import load_localizer

    ctx.step("localization: canvases")
    model, meta = load_localizer()
    dg = load_digits()
    digits = np.clip(dg.images / 16.0 * 255.0, 0, 255).astype(np.uint8)
    digits = np.stack([resize_bilinear(d.astype(np.float32), 28) for d in digits])
    # contrast stretch: the upsampled 8x8 digits are blurry; MNIST strokes have sharp edges
    digits = np.clip((digits - 80.0) * 2.5, 0, 255).astype(np.uint8)
    n = 16 if ctx.quick else 200
    images, y, boxes = make_canvases(digits, dg.target.astype(np.int64), n, seed=7)

    ctx.step("localization: saliency and GraphCut")
    t0 = time.perf_counter()
    res = evaluate_localization(model, images, y, boxes, workers=2,
                                centre_size=(float(np.mean(boxes[:, 2] - boxes[:, 0])),
                                             float(np.mean(boxes[:, 3] - boxes[:, 1]))))
    eval_s = time.perf_counter() - t0
    show = 4
    x = canvases_to_tensor(images[:show])
    sal_g = saliency(model, x, torch.from_numpy(y[:show]), "gradient").numpy()
    sal_gb = saliency(model, x, torch.from_numpy(y[:show]), "guided").numpy()
    locs = localize_batch(list(images[:show]), list(sal_g), workers=2)

    ctx.step("localization: class models")
    steps = 30 if ctx.quick else 200
    cm = class_model(model, list(range(10)), steps=steps, lr=0.5, l2=1e-2, input_shape=(3, CANVAS, CANVAS),
                     progress=False)
    std = torch.tensor(meta["std"]).view(1, 3, 1, 1)
    mean = torch.tensor(meta["mean"]).view(1, 3, 1, 1)
    cm_rgb = (cm * std + mean).permute(0, 2, 3, 1).numpy()

    ctx.step("localization: figure")
    fig, axes = plt.subplots(show + 1, 5, figsize=(11, 2.3 * (show + 1)), squeeze=False)
    for r in range(show):
        x0, y0, x1, y1 = boxes[r]
        gx0, gy0, gx1, gy1 = locs[r][1]
        ax = axes[r]
        ax[0].imshow(images[r])
        ax[0].add_patch(plt.Rectangle((x0 - .5, y0 - .5), x1 - x0, y1 - y0, fill=False, color="lime", lw=1.5))
        ax[0].set_title(f"digit {y[r]} (true box)", fontsize=9)
        for a, m, t in ((ax[1], sal_g[r], "gradient saliency"), (ax[2], sal_gb[r], "guided saliency")):
            a.imshow(m / (np.percentile(m, 99.5) or 1.0), cmap="gray", vmin=0, vmax=1)
            a.set_title(t, fontsize=9)
        ax[3].imshow(locs[r][0], cmap="gray")
        ax[3].set_title("GraphCut mask (largest comp.)", fontsize=9)
        ax[4].imshow(images[r])
        ax[4].add_patch(plt.Rectangle((gx0 - .5, gy0 - .5), gx1 - gx0, gy1 - gy0, fill=False, color="red", lw=1.5))
        ax[4].set_title(f"box IoU {box_iou(locs[r][1], tuple(boxes[r])):.2f}", fontsize=9)
    for c in range(5):
        img = cm_rgb[c * 2]
        lo, hi = np.percentile(img, [1, 99])
        axes[show, c].imshow(np.clip((img - lo) / max(hi - lo, 1e-8), 0, 1))
        axes[show, c].set_title(f"class model '{c * 2}'", fontsize=9)
    for a in axes.flat:
        a.set_xticks([])
        a.set_yticks([])
    fig.tight_layout()
    path = ctx.figure_path("localization.png")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return "\n\n".join([
        "Simonyan, Vedaldi & Zisserman (2013), Sec. 3.2: saliency seeds (above the 95% / below "
        "the 30% quantile) fit foreground/background GMM colour models, a GraphCut segments "
        "the image, the largest connected component gives the box. Network: the committed "
        f"localisation-benchmark classifier ({100 * meta['test_accuracy']:.1f}% on held-out MNIST "
        "canvases); here on canvases made from scikit-learn's 8x8 digits (upsampled and "
        f"contrast-stretched: a different digit style), {n} canvases, {eval_s:.1f} s; class models: {steps} gradient-ascent steps "
        "from the zero image, all 10 classes in one batch.",
        f"![saliency, GraphCut and class models]({path.name})",
        f"Classification accuracy on these canvases: {100 * res['classification_accuracy']:.1f}%.",
        format_table(res),
    ])
