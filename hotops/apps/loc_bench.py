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
  (:func:`hotops.models.localizer.localizer_net`, a small fully convolutional net with
  global max pooling) on freshly drawn canvases every epoch, and writes its checkpoint.
* :func:`evaluate_localization` scores IoU >= 0.5 box accuracy of three methods on held-out
  canvases: saliency + GraphCut (:func:`hotops.localize`), the box of the thresholded
  saliency map alone, and a centred box of the mean true-box size.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np

from hotops.models.localizer import ARCH, MEAN, STD, load_localizer, localizer_net

__all__ = [
    "CANVAS", "make_canvases", "resize_bilinear", "canvases_to_tensor", "run_evaluation",
    "evaluate_localization", "format_table", "threshold_box", "centred_box", "box_iou", "run_training",
]

_log = logging.getLogger(__name__)

CANVAS = 96
CLASSES = tuple(str(d) for d in range(10))


# --------------------------------------------------------------------------- data

def _bilinear_taps(n_src: int, n_dst: int):
    """Source indices and float32 weights of each output sample along one axis."""
    f = ((np.arange(n_dst, dtype=np.float64) + 0.5) * (n_src / n_dst) - 0.5).astype(np.float32)
    s = np.floor(f).astype(np.int64)
    f = f - s.astype(np.float32)
    f[s < 0] = 0
    s[s < 0] = 0
    f[s >= n_src - 1] = 0
    s[s >= n_src - 1] = n_src - 1
    return s, np.minimum(s + 1, n_src - 1), (np.float32(1) - f).astype(np.float32), f


def resize_bilinear(img: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of a float image (H, W) or (H, W, C) to (size, size), float32.

    Half-pixel centres, source position u = (x + 0.5) * (n_src / n_dst) - 0.5 with weights
    rounded to float32 and clamped at the borders, rows first then columns: OpenCV's
    ``cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)`` on float32 input
    (which made the canvases the committed classifier was trained on) to within 2e-6,
    without OpenCV as a dependency. Not antialiased: meant for enlarging.
    """
    img = np.asarray(img, dtype=np.float32)
    if img.ndim not in (2, 3) or min(img.shape[:2]) < 1:
        raise ValueError(f"img must be (H, W) or (H, W, C) with H, W >= 1, got shape {img.shape}")
    size = int(size)
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    h, w = img.shape[:2]
    x0, x1, ax0, ax1 = _bilinear_taps(w, size)
    y0, y1, ay0, ay1 = _bilinear_taps(h, size)
    shape = (1, -1) + (1,) * (img.ndim - 2)
    rows = img[:, x0] * ax0.reshape(shape) + img[:, x1] * ax1.reshape(shape)
    shape = (-1,) + (1,) * (img.ndim - 1)
    out = rows[y0] * ay0.reshape(shape) + rows[y1] * ay1.reshape(shape)
    return out.astype(np.float32, copy=False)


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
            frag = resize_bilinear(frag, s)
            py, px = rng.integers(0, size - s + 1, 2)
            colour = rng.uniform(0.4, 1, 3).astype(np.float32)
            a = frag[..., None]
            region = canvas[py:py + s, px:px + s]
            canvas[py:py + s, px:px + s] = (1 - a) * region + a * colour
        # the object
        i = int(rng.integers(len(digits)))
        s = int(rng.integers(lo, hi + 1))
        d = resize_bilinear(digits[i].astype(np.float32) / 255.0, s)
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


def canvases_to_tensor(images):
    """Canvases (N, H, W, 3) in [0, 1] as the classifier's normalised NCHW float32 input."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    mean = torch.tensor(MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(STD, dtype=torch.float32).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


def _accuracy(model, images, y, batch=500) -> float:
    import torch

    correct = 0
    with torch.no_grad():
        for s in range(0, len(y), batch):
            logits = model(canvases_to_tensor(images[s:s + batch]))
            correct += int((logits.argmax(1).numpy() == y[s:s + batch]).sum())
    return correct / max(1, len(y))


def run_training(args) -> int:
    """Train the benchmark's classifier and write its checkpoint (float16 weights + metadata)."""
    import torch
    import torch.nn.functional as F

    from hotops.data import load_mnist

    from hotops.models._paths import plain, save_checkpoint

    from ._training import check_count, check_positive

    for name in ("epochs", "train_size", "test_size", "batch_size", "threads"):
        check_count(f"--{name.replace('_', '-')}", getattr(args, name))
    check_positive("--lr", args.lr)
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
            xb, yb = canvases_to_tensor(images[idx]), torch.from_numpy(y[idx])
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            running = 0.9 * running + 0.1 * loss.item() if s else loss.item()
            if not args.no_progress and step % 20 == 0:
                _log.info("epoch %d/%d step %d/%d loss %.3f %.0fs", epoch + 1, args.epochs, step, total,
                          running, time.perf_counter() - t0)
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
    save_checkpoint(plain(ckpt), args.out)
    _log.info("wrote %s (%.2f MB): held-out accuracy %.1f%% on %d canvases; trained %.0f s", args.out,
              Path(args.out).stat().st_size / 1e6, 100 * acc, args.test_size, train_s)
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
    from hotops.localization import largest_component_box, seed_masks

    fg, _ = seed_masks(saliency, quantile, min(0.3, quantile / 2))
    return largest_component_box(fg)[1]


def centred_box(size: int, width: float, height: float):
    """Baseline without the image: a box of the given size centred on the canvas."""
    w, h = int(round(width)), int(round(height))
    x0, y0 = (size - w) // 2, (size - h) // 2
    return (x0, y0, x0 + w, y0 + h)


def _canvas_split(n: int, seed: int, split: str = "test"):
    from hotops.data import load_mnist

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
    from hotops.attribution import saliency
    from hotops.localization import localize_batch

    n = len(y)
    if centre_size is None:
        centre_size = (float(np.mean(boxes[:, 2] - boxes[:, 0])), float(np.mean(boxes[:, 3] - boxes[:, 1])))
    sal = np.empty(images.shape[:3], np.float32)
    correct = 0
    import torch

    for s in range(0, n, batch):
        x = canvases_to_tensor(images[s:s + batch])
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


def format_table(res) -> str:
    lines = ["| method | IoU >= 0.5 accuracy | mean IoU |", "| --- | --- | --- |"]
    for k, v in res.items():
        if isinstance(v, dict):
            lines.append(f"| {k} | {100 * v['acc']:.1f}% | {v['mean_iou']:.3f} |")
    return "\n".join(lines)


def run_evaluation(n: int = 1000, seed: int = 2, method: str = "gradient", path=None) -> dict:
    """The README table: ``n`` held-out canvases (MNIST test digits, generator seed ``seed``),
    the committed classifier, the centred box sized by the mean box of 2,000 training canvases."""
    from hotops.data import load_mnist

    model, _meta = load_localizer(path)
    images, y, boxes = _canvas_split(n, seed)
    mnist = load_mnist()
    _, _, tr_boxes = make_canvases(mnist["x_train"], mnist["y_train"].astype(np.int64), 2000, seed=99)
    size = (float(np.mean(tr_boxes[:, 2] - tr_boxes[:, 0])), float(np.mean(tr_boxes[:, 3] - tr_boxes[:, 1])))
    return evaluate_localization(model, images, y, boxes, method=method, centre_size=size, hard_seed_row=True)
