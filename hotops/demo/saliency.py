"""Demo section: class saliency maps through the small CIFAR-10 net (Simonyan et al. 2013)."""
from __future__ import annotations

import numpy as np

from ._context import DemoContext, md_table, numba_threads, time_call


_SALIENCY_IMAGES = ("chelsea", "coffee", "astronaut", "rocket")
_IMAGE_SIZE = 128


def _channel_max_abs():
    """hotops' torch op; the returned label says which implementation ran."""
    from hotops.bindings import channel_max_abs

    return channel_max_abs, "hotops.bindings.channel_max_abs"


def _input_gradient(model, x, classes):
    """dS_c/dI for each row: x (R, 3, H, W) normalised, classes (R,) -> (logits, grad).

    Rows are independent (the net is in eval mode), so summing the selected logits and
    back-propagating once gives every row's own gradient.
    """
    import torch

    x = x.detach().clone().requires_grad_(True)
    logits = model(x)
    score = logits.gather(1, classes.view(-1, 1)).sum()
    (grad,) = torch.autograd.grad(score, x)
    return logits.detach(), grad


def _saliency_figure(path, rows, dpi=110):
    """rows: dicts with image (H, W, 3) in [0, 1], saliency (H, W), and titles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.ndimage import gaussian_filter

    n = len(rows)
    fig, axes = plt.subplots(n, 3, figsize=(9.0, 3.05 * n), squeeze=False)
    for r, row in enumerate(rows):
        img, sal = row["image"], row["saliency"]
        # Scale each map by its 99.5th percentile so a few extreme pixels don't wash it out.
        hi = float(np.percentile(sal, 99.5)) or 1.0
        s = np.clip(sal / hi, 0.0, 1.0)
        axes[r, 0].imshow(img)
        axes[r, 0].set_title(row["title"], fontsize=10)
        axes[r, 1].imshow(s, cmap="gray")
        axes[r, 1].set_title(row["map_title"], fontsize=10)
        # The overlay shows a lightly smoothed map (Gaussian, sigma 1.5 px) so that the
        # salient regions read at a glance; the middle column is the raw M.
        sm = gaussian_filter(s, 1.5)
        sm = np.clip(sm / (float(sm.max()) or 1.0), 0.0, 1.0)
        heat = plt.get_cmap("inferno")(sm)[..., :3]
        alpha = sm[..., None] ** 0.8
        overlay = (1 - 0.75 * alpha) * (0.35 + 0.65 * img.mean(axis=2, keepdims=True)) + 0.75 * alpha * heat
        axes[r, 2].imshow(np.clip(overlay, 0, 1))
        axes[r, 2].set_title("overlay (smoothed map)", fontsize=10)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("Image-specific class saliency, $M_{ij} = \\max_c |w_{h(i,j,c)}|$ "
                 "(Simonyan et al. 2013)", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def saliency_section(ctx: DemoContext) -> str:
    """Class saliency maps through the small CIFAR-10 net.

    Simonyan, Vedaldi & Zisserman, "Deep Inside Convolutional Networks" (2013), Sec. 3.1:
    for a class score S_c and image I, w = dS_c/dI; the saliency map of a colour image is
    M_ij = max_c |w_h(i,j,c)|, computed here by ``hotops.bindings.channel_max_abs`` and
    timed against ``g.abs().amax(1)`` (same result) and ``g.clone()`` (a pure memory copy
    of the input, the floor for any op that reads g once).
    """
    import torch

    from hotops.data import sample_images

    op, op_name = _channel_max_abs()
    model, meta = ctx.small_cifar()
    classes = list(meta["classes"])
    mean = torch.tensor(meta["mean"], dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(meta["std"], dtype=torch.float32).view(1, 3, 1, 1)

    ctx.step("saliency: sample images")
    imgs = sample_images(_SALIENCY_IMAGES, size=_IMAGE_SIZE)
    names = list(imgs)
    batch = torch.from_numpy(np.stack([imgs[k] for k in names])).permute(0, 3, 1, 2).contiguous()
    x = (batch - mean) / std

    ctx.step("saliency: gradients")
    with torch.no_grad():
        probs = torch.softmax(model(x), dim=1)
    top = probs.argmax(1)
    # One row per image for its top class, plus chelsea (a cat) for CIFAR's 'cat' class
    # when that is not already its top class.
    row_img, row_cls = list(range(len(names))), top.tolist()
    cat = classes.index("cat") if "cat" in classes else None
    if "chelsea" in names and cat is not None:
        i = names.index("chelsea")
        if row_cls[i] != cat:
            row_img.insert(i + 1, i)
            row_cls.insert(i + 1, cat)
    _, grad = _input_gradient(model, x[row_img], torch.tensor(row_cls))

    ctx.step("saliency: channel-max reduction")
    sal = op(grad)  # (R, H, W): M_ij = max_c |w_h(i,j,c)|, Simonyan et al. (2013)
    ref = grad.abs().amax(1)
    max_err = float((sal - ref).abs().max())

    ctx.step("saliency: figure")
    rows, table = [], []
    for r, (i, c) in enumerate(zip(row_img, row_cls)):
        p_top, p_c = float(probs[i, top[i]]), float(probs[i, c])
        is_top = c == int(top[i])
        rows.append({
            "image": imgs[names[i]],
            "saliency": sal[r].numpy(),
            "title": f"{names[i]}: {classes[int(top[i])]} (p={p_top:.2f})",
            "map_title": f"saliency of '{classes[c]}'" + ("" if is_top else f" (p={p_c:.2f})"),
        })
        table.append((names[i], f"{classes[int(top[i])]} ({p_top:.2f})",
                      classes[c] + (" (top)" if is_top else ""), f"{float(sal[r].max()):.3g}"))
    fig_path = ctx.figure_path("saliency.png")
    _saliency_figure(fig_path, rows)

    ctx.step("saliency: timing")
    timing_md = _saliency_timing(ctx, model, x, op)

    acc = meta.get("test_accuracy")
    acc_txt = f"{100 * acc:.1f}% CIFAR-10 test accuracy" if acc is not None else "accuracy not recorded"
    return "\n\n".join([
        "Simonyan, Vedaldi & Zisserman, *Deep Inside Convolutional Networks* (2013), Sec. 3.1: "
        "the saliency of pixel (i, j) for class c is M_ij = max_c |w_h(i,j,c)|, the largest "
        "magnitude over colour channels of the gradient w = dS_c/dI of the class score.",
        f"Network: `SmallCifarNet` from the committed checkpoint ({acc_txt}; "
        f"{sum(p.numel() for p in model.parameters()):,} parameters), fed scikit-image sample "
        f"photos centre-cropped and resized to {_IMAGE_SIZE}x{_IMAGE_SIZE} (it was trained on "
        "32x32 CIFAR images; global average pooling lets it run on any size). "
        f"Reduction: `{op_name}`; largest difference from `g.abs().amax(1)`: {max_err:.1e}.",
        f"![saliency maps]({fig_path.name})",
        md_table(("image", "predicted (p)", "saliency of class", "max M"), table),
        timing_md,
    ])


def _saliency_timing(ctx: DemoContext, model, x, op) -> str:
    import torch

    n = 8 if ctx.quick else 32
    repeats = 10 if ctx.quick else 50
    # A real gradient batch: the sample images, flipped and rolled to make n distinct inputs.
    reps = []
    for k in range(n):
        v = x[k % len(x)]
        if (k // len(x)) % 2:
            v = v.flip(-1)
        reps.append(v.roll(shifts=(3 * k, 5 * k), dims=(1, 2)))
    xb = torch.stack(reps)
    with torch.no_grad():
        cls = model(xb).argmax(1)
    _, g = _input_gradient(model, xb, cls)
    g = g.contiguous()
    contenders = [
        ("hotops `channel_max_abs(g)`", lambda: op(g)),
        ("torch `g.abs().amax(1)`", lambda: g.abs().amax(1)),
        ("torch `g.clone()` (memory-copy floor)", lambda: g.clone()),
    ]
    results = [(name, time_call(fn, repeats)) for name, fn in contenders]
    base = results[1][1]["median"]
    rows = []
    for name, r in results:
        rows.append((name, f"{1e3 * r['median']:.3f}", f"{1e3 * r['min']:.3f}",
                     f"{base / r['median']:.2f}x", f"{1e3 * r['first']:.1f}"))
    shape = "x".join(str(s) for s in g.shape)
    return "\n\n".join([
        f"Timing on one gradient batch g of shape ({shape}), {str(g.dtype).replace('torch.', '')}, "
        f"{g.numel() * g.element_size() / 2**20:.1f} MiB, measured in this run on the CPU: median and "
        f"minimum of {repeats} calls after warm-up; speed-up is relative to `g.abs().amax(1)`. "
        f"torch threads: {torch.get_num_threads()}, numba threads: {numba_threads()}.",
        md_table(("op", "median ms", "min ms", "speed-up vs amax", "first call ms"), rows),
    ])
