"""A weakly supervised localisation benchmark with known boxes (Simonyan et al. 2013, Sec. 3.2).

Each sample is a 96x96 colour canvas: a smooth random dark colour background (each channel in
[0, 0.45] plus a linear ramp) with pixel noise,
2-4 *distractors* (fragments of other MNIST digits, 8-13 px crops scaled up to 1.5x, in
random light colours, channels in [0.4, 1]) and one MNIST digit in a random light colour at least 0.5 (RGB distance) away
from the mean of the background under it, scaled to 28-60 px and placed at a
random position. The class is the digit; the true box is the tight box of the digit's
strokes (resized intensity >= 0.5). Training canvases use MNIST's training digits, the
held-out canvases its test digits, so no digit image is shared.

* :func:`make_canvases` generates a reproducible set (numpy, no torch).
* ``hotops train localizer`` (:func:`run_training`) trains the classifier
  (:func:`localizer_net`, a small fully convolutional net with global max pooling) on
  freshly drawn canvases every epoch, and writes ``hotops/checkpoints/localizer.pt``.
* :func:`evaluate_localization` scores IoU >= 0.5 box accuracy of three methods on held-out
  canvases: saliency + GraphCut (:func:`hotops.localize`), the box of the thresholded
  saliency map alone, and a centred box of the mean true-box size.
* :func:`demo_section` is the ``localization`` part of ``hotops demo``.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

__all__ = [
    "CANVAS", "CHECKPOINT", "make_canvases", "localizer_net", "load_localizer", "run_evaluation", "evaluate_localization",
    "threshold_box", "centred_box", "box_iou", "add_train_arguments", "run_training", "demo_section",
]

CANVAS = 96
CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "localizer.pt"
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)
ARCH = {"num_classes": 10, "widths": (32, 64, 96, 96)}
CLASSES = tuple(str(d) for d in range(10))


# --------------------------------------------------------------------------- data

def _resize(img: np.ndarray, size: int) -> np.ndarray:
    import cv2

    return cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)


def make_canvases(digits: np.ndarray, labels: np.ndarray, n: int, seed: int = 0, size: int = CANVAS,
                  scale=(28, 60), n_distractors=(2, 4), noise: float = 0.03):
    """Draw ``n`` cluttered canvases, each with one digit at a random position and scale.

    Parameters
    ----------
    digits : uint8 array (M, 28, 28)
        MNIST digits to place (and to cut distractor fragments from).
    labels : int array (M,)
    n : int
        Number of canvases.
    seed : int
        Seed of the generator: the same arguments give the same canvases.
    size : int
        Canvas side in pixels.
    scale : (int, int)
        Range of the digit's side after resizing (inclusive).
    n_distractors : (int, int)
        Range of the number of distractor fragments (inclusive).
    noise : float
        Standard deviation of the Gaussian pixel noise.

    Returns
    -------
    images : float32 (n, size, size, 3) in [0, 1]
    y : int64 (n,) the digit's class
    boxes : int64 (n, 4) the digit's tight box (x0, y0, x1, y1), x1 and y1 exclusive
    """
    digits = np.asarray(digits)
    if digits.ndim != 3 or digits.shape[0] == 0:
        raise ValueError(f"digits must have shape (M, h, w) with M >= 1, got {digits.shape}")
    if len(labels) != digits.shape[0]:
        raise ValueError(f"labels must have {digits.shape[0]} entries, got {len(labels)}")
    lo, hi = int(scale[0]), int(scale[1])
    if not 8 <= lo <= hi <= size:
        raise ValueError(f"scale must satisfy 8 <= scale[0] <= scale[1] <= size={size}, got {scale}")
    rng = np.random.default_rng(seed)
    images = np.empty((n, size, size, 3), np.float32)
    y = np.empty(n, np.int64)
    boxes = np.empty((n, 4), np.int64)
    ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    for k in range(n):
        # background: a random colour plus a linear colour ramp in a random direction
        base = rng.uniform(0.0, 0.45, 3).astype(np.float32)
        theta = rng.uniform(0, 2 * np.pi)
        grad = (np.cos(theta) * ramp[None, :] + np.sin(theta) * ramp[:, None])[..., None]
        canvas = base + 0.15 * grad * rng.uniform(-1, 1, 3).astype(np.float32)
        # distractors: fragments of other digits
        for _ in range(rng.integers(n_distractors[0], n_distractors[1] + 1)):
            src = digits[rng.integers(len(digits))].astype(np.float32) / 255.0
            c = int(rng.integers(8, 14))
            oy, ox = rng.integers(0, 28 - c + 1, 2)
            frag = src[oy:oy + c, ox:ox + c]
            s = int(round(c * rng.uniform(1.0, 1.5)))
            frag = _resize(frag, s)
            py, px = rng.integers(0, size - s + 1, 2)
            colour = rng.uniform(0.4, 1, 3).astype(np.float32)
            a = frag[..., None]
            region = canvas[py:py + s, px:px + s]
            canvas[py:py + s, px:px + s] = (1 - a) * region + a * colour
        # the object
        i = int(rng.integers(len(digits)))
        s = int(rng.integers(lo, hi + 1))
        d = _resize(digits[i].astype(np.float32) / 255.0, s)
        py, px = rng.integers(0, size - s + 1, 2)
        region = canvas[py:py + s, px:px + s]
        # a colour that stands out from the local background (distance >= 0.5 in RGB)
        local = region.reshape(-1, 3).mean(0)
        for _ in range(20):
            colour = rng.uniform(0.4, 1, 3).astype(np.float32)
            if np.linalg.norm(colour - local) >= 0.5:
                break
        a = d[..., None]
        canvas[py:py + s, px:px + s] = (1 - a) * region + a * colour
        ink = d >= 0.5
        rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
        boxes[k] = (px + cols[0], py + rows[0], px + cols[-1] + 1, py + rows[-1] + 1)
        canvas += rng.normal(0, noise, canvas.shape).astype(np.float32)
        images[k] = np.clip(canvas, 0, 1)
        y[k] = int(labels[i])
    return images, y, boxes


def _to_tensor(images):
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    mean = torch.tensor(MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(STD, dtype=torch.float32).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


# --------------------------------------------------------------------------- model

def _conv_bn_relu(c_in, c_out, k=3, stride=1):
    from torch import nn

    return [nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


def localizer_net(num_classes: int = 10, widths=(32, 64, 96, 96)):
    """The benchmark's classifier: a fully convolutional net with global max pooling.

    conv5x5/2 - maxpool2 - conv3x3 - maxpool2 - conv3x3 - conv3x3 (BatchNorm + nn.ReLU
    each) - conv1x1 to the class scores - max over positions. Any input size >= 16; the
    class score S_c is the strongest response of the class's detector anywhere in the
    image, so a single object at any position is found (a plain SimonyanNet with fully
    connected layers did not leave chance level in the same CPU budget on these canvases).
    """
    import torch
    from torch import nn

    class _GlobalMaxPool(nn.Module):
        def forward(self, x):
            return torch.amax(x, dim=(2, 3))

    w0, w1, w2, w3 = (int(w) for w in widths)
    return nn.Sequential(
        *_conv_bn_relu(3, w0, 5, 2), nn.MaxPool2d(2),
        *_conv_bn_relu(w0, w1), nn.MaxPool2d(2),
        *_conv_bn_relu(w1, w2), *_conv_bn_relu(w2, w3),
        nn.Conv2d(w3, int(num_classes), 1), _GlobalMaxPool(),
    )


def load_localizer(path=None):
    """The benchmark's classifier from its committed checkpoint.

    Returns
    -------
    model : :func:`localizer_net` in eval mode, float32
    meta : dict with ``classes``, ``mean``, ``std`` (normalisation of RGB in [0, 1]),
        ``canvas`` (side), ``test_accuracy`` (on held-out canvases) and ``train``.
    """
    import torch

    p = Path(path) if path is not None else CHECKPOINT
    if not p.exists():
        raise FileNotFoundError(f"checkpoint not found: {p} (train one with: hotops train localizer)")
    ckpt = torch.load(p, map_location="cpu", weights_only=True)
    arch = dict(ckpt["arch"])
    model = localizer_net(**arch)
    model.load_state_dict({k: (v.float() if v.is_floating_point() else v) for k, v in ckpt["state_dict"].items()})
    model.eval()
    meta = {k: ckpt[k] for k in ("classes", "mean", "std", "canvas", "test_accuracy", "train")}
    meta["classes"] = tuple(meta["classes"])
    return model, meta


def _accuracy(model, images, y, batch=500) -> float:
    import torch

    correct = 0
    with torch.no_grad():
        for s in range(0, len(y), batch):
            logits = model(_to_tensor(images[s:s + batch]))
            correct += int((logits.argmax(1).numpy() == y[s:s + batch]).sum())
    return correct / max(1, len(y))


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--train-size", type=int, default=12000, help="canvases drawn per epoch (fresh each epoch)")
    p.add_argument("--test-size", type=int, default=2000, help="held-out canvases for the recorded accuracy")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3, help="peak Adam learning rate (one-cycle)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=CHECKPOINT, metavar="CKPT")
    p.add_argument("--no-progress", action="store_true")


def run_training(args) -> int:
    """Train the benchmark's classifier and write its checkpoint (float16 weights + metadata)."""
    import torch
    import torch.nn.functional as F

    from .data import load_mnist

    for name in ("epochs", "train_size", "test_size", "batch_size", "threads"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not args.lr > 0:
        raise ValueError(f"--lr must be > 0, got {args.lr}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    mnist = load_mnist()
    x_tr, y_tr = mnist["x_train"], mnist["y_train"].astype(np.int64)
    x_te, y_te = mnist["x_test"], mnist["y_test"].astype(np.int64)
    model = localizer_net(**ARCH)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps_per_epoch = math.ceil(args.train_size / args.batch_size)
    total = steps_per_epoch * args.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=total, pct_start=0.15)
    t0 = time.perf_counter()
    step = 0
    for epoch in range(args.epochs):
        images, y, _ = make_canvases(x_tr, y_tr, args.train_size, seed=10_000 + args.seed * 100 + epoch)
        perm = np.random.default_rng(epoch).permutation(len(y))
        model.train()
        running = 0.0
        for s in range(0, len(y), args.batch_size):
            idx = perm[s:s + args.batch_size]
            xb, yb = _to_tensor(images[idx]), torch.from_numpy(y[idx])
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            running = 0.9 * running + 0.1 * loss.item() if s else loss.item()
            if not args.no_progress and step % 20 == 0:
                print(f"epoch {epoch + 1}/{args.epochs} step {step}/{total} loss {running:.3f} "
                      f"{time.perf_counter() - t0:.0f}s", flush=True)
    train_s = time.perf_counter() - t0
    model.eval()
    # the recorded accuracy is that of the weights as stored (float16)
    state16 = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    model.load_state_dict({k: (v.float() if v.is_floating_point() else v) for k, v in state16.items()})
    test_images, test_y, _ = make_canvases(x_te, y_te, args.test_size, seed=1)
    acc = _accuracy(model, test_images, test_y)
    ckpt = {
        "arch": ARCH, "state_dict": state16, "classes": CLASSES, "mean": MEAN, "std": STD,
        "canvas": CANVAS, "test_accuracy": acc,
        "train": {"epochs": args.epochs, "train_size": args.train_size, "batch_size": args.batch_size,
                  "lr": args.lr, "optimizer": "AdamW one-cycle", "seed": args.seed,
                  "seconds": round(train_s, 1), "threads": args.threads,
                  "test": f"{args.test_size} canvases of MNIST test digits, seed 1"},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB): held-out accuracy {100 * acc:.1f}% "
          f"on {args.test_size} canvases; trained {train_s:.0f} s")
    return 0


# --------------------------------------------------------------------------- evaluation

def box_iou(a, b) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1), x1/y1 exclusive."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def threshold_box(saliency, quantile: float = 0.95):
    """Baseline without GraphCut: the box of the largest 8-connected component of the pixels
    above the ``quantile`` quantile of the saliency map."""
    from .localization import largest_component_box, seed_masks

    fg, _ = seed_masks(saliency, quantile, min(0.3, quantile / 2))
    return largest_component_box(fg)[1]


def centred_box(size: int, width: float, height: float):
    """Baseline without the image: a box of the given size centred on the canvas."""
    w, h = int(round(width)), int(round(height))
    x0, y0 = (size - w) // 2, (size - h) // 2
    return (x0, y0, x0 + w, y0 + h)


def _canvas_split(n: int, seed: int, split: str = "test"):
    from .data import load_mnist

    mnist = load_mnist()
    return make_canvases(mnist[f"x_{split}"], mnist[f"y_{split}"].astype(np.int64), n, seed=seed)


def evaluate_localization(model, images, y, boxes, *, method: str = "gradient", centre_size=None,
                          threshold_quantiles=(0.95, 0.8), workers: int | None = None, batch: int = 200,
                          hard_seed_row: bool = False):
    """IoU >= 0.5 box accuracy of saliency + GraphCut and of the two baselines.

    Parameters
    ----------
    model : the classifier (eval mode)
    images, y, boxes : from :func:`make_canvases` (held-out canvases)
    method : saliency method ('gradient', 'guided', 'deconvnet')
    centre_size : (width, height) of the centred box (default: the mean true box of ``boxes``;
        pass the training set's mean for a fair baseline)
    threshold_quantiles : quantiles of the thresholded-saliency baseline rows
    hard_seed_row : also score GraphCut with the seeds clamped (``localize(hard_seeds=True)``)

    Returns
    -------
    dict: ``n``, ``classification_accuracy`` and, per method name, ``{"acc": fraction of
    IoU >= 0.5, "mean_iou": ...}``. Saliency maps are taken for the true class (the weakly
    supervised setting: the image label is known, the box is not).
    """
    from .attribution import saliency
    from .localization import localize_batch

    n = len(y)
    if centre_size is None:
        centre_size = (float(np.mean(boxes[:, 2] - boxes[:, 0])), float(np.mean(boxes[:, 3] - boxes[:, 1])))
    sal = np.empty(images.shape[:3], np.float32)
    correct = 0
    import torch

    for s in range(0, n, batch):
        x = _to_tensor(images[s:s + batch])
        with torch.no_grad():
            correct += int((model(x).argmax(1).numpy() == y[s:s + batch]).sum())
        sal[s:s + batch] = saliency(model, x, torch.from_numpy(y[s:s + batch]), method).numpy()
    results = localize_batch(list(images), list(sal), workers=workers)
    rows = {"saliency + GraphCut": [box for _, box in results]}
    if hard_seed_row:
        hard = localize_batch(list(images), list(sal), workers=workers, hard_seeds=True)
        rows["saliency + GraphCut, hard seeds"] = [box for _, box in hard]
    for q in threshold_quantiles:
        rows[f"thresholded saliency ({int(round(100 * q))}% quantile)"] = [threshold_box(m, q) for m in sal]
    rows["centred box (mean size)"] = [centred_box(images.shape[1], *centre_size)] * n
    out = {"n": n, "classification_accuracy": correct / n, "method": method,
           "centre_size": tuple(round(v, 1) for v in centre_size)}
    for name, pred in rows.items():
        ious = np.array([box_iou(p, tuple(b)) for p, b in zip(pred, boxes)])
        out[name] = {"acc": float((ious >= 0.5).mean()), "mean_iou": float(ious.mean())}
    return out


def _md_table(res) -> str:
    lines = ["| method | IoU >= 0.5 accuracy | mean IoU |", "| --- | --- | --- |"]
    for k, v in res.items():
        if isinstance(v, dict):
            lines.append(f"| {k} | {100 * v['acc']:.1f}% | {v['mean_iou']:.3f} |")
    return "\n".join(lines)


def run_evaluation(n: int = 1000, seed: int = 2, method: str = "gradient", path=None) -> dict:
    """The README table: ``n`` held-out canvases (MNIST test digits, generator seed ``seed``),
    the committed classifier, the centred box sized by the mean box of 2,000 training canvases."""
    from .data import load_mnist

    model, _meta = load_localizer(path)
    images, y, boxes = _canvas_split(n, seed)
    mnist = load_mnist()
    _, _, tr_boxes = make_canvases(mnist["x_train"], mnist["y_train"].astype(np.int64), 2000, seed=99)
    size = (float(np.mean(tr_boxes[:, 2] - tr_boxes[:, 0])), float(np.mean(tr_boxes[:, 3] - tr_boxes[:, 1])))
    return evaluate_localization(model, images, y, boxes, method=method, centre_size=size, hard_seed_row=True)


# --------------------------------------------------------------------------- demo

def demo_section(ctx) -> str:
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

    from .attribution import class_model, saliency
    from .localization import localize_batch

    ctx.step("localization: canvases")
    model, meta = load_localizer()
    dg = load_digits()
    digits = np.clip(dg.images / 16.0 * 255.0, 0, 255).astype(np.uint8)
    digits = np.stack([_resize(d.astype(np.float32), 28) for d in digits])
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
    x = _to_tensor(images[:show])
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
        _md_table(res),
    ])


if __name__ == "__main__":  # python -m hotops.loc_bench [training options]
    _p = argparse.ArgumentParser(prog="python -m hotops.loc_bench")
    add_train_arguments(_p)
    raise SystemExit(run_training(_p.parse_args()))
