"""Train the demo's small CIFAR-10 net and write its checkpoint.

    hotops train small-cifar --epochs 7

Reads CIFAR-10 from the shared data folder (``hotops.data``), trains ``SmallCifarNet``
with random crops (4-pixel reflect padding) and horizontal flips, SGD with Nesterov
momentum, a one-cycle learning-rate schedule and label smoothing, then measures the
accuracy of the weights *as stored* (rounded to float16) on the 10,000 test images and
writes them, with the class names, the input normalisation and that accuracy, to
``--out`` (the committed ``hotops/checkpoints/small_cifar.pt`` was written this way).
"""
from __future__ import annotations

import datetime
import logging
import math
import platform
import time
from pathlib import Path

import numpy as np

from hotops.models._paths import plain, save_checkpoint
from hotops.models.small_cifar import CIFAR10_MEAN, CIFAR10_STD

from ._cpu_state import flushing_denormals

_log = logging.getLogger(__name__)


def _augment(xb, rng):
    """Random crop (pad 4, reflect) + horizontal flip of a uint8 (B, 3, 32, 32) batch."""
    import torch
    import torch.nn.functional as F

    b, _, h, w = xb.shape
    padded = F.pad(xb.float(), (4, 4, 4, 4), mode="reflect")
    dy = rng.integers(0, 9, size=b)
    dx = rng.integers(0, 9, size=b)
    flip = rng.random(b) < 0.5
    out = torch.empty((b, 3, h, w), dtype=torch.float32)
    for i in range(b):
        crop = padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        out[i] = crop.flip(-1) if flip[i] else crop
    return out


def _normalise(x, mean, std):
    return (x / 255.0 - mean) / std


def evaluate(model, images, labels, mean, std, batch_size=500):
    """Top-1 accuracy of ``model`` on uint8 NHWC ``images``."""
    import torch

    model.eval()
    correct = 0
    with torch.inference_mode():
        for s in range(0, len(images), batch_size):
            xb = torch.from_numpy(images[s:s + batch_size]).permute(0, 3, 1, 2).float()
            xb = _normalise(xb, mean, std).contiguous(memory_format=torch.channels_last)
            pred = model(xb).argmax(1).numpy()
            correct += int((pred == labels[s:s + batch_size]).sum())
    return correct / len(images)


def train(args) -> dict:
    import torch
    from tqdm.auto import tqdm

    from hotops.data import cifar10_classes, load_cifar10
    from hotops.models.small_cifar import SmallCifarNet

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    x_train, y_train = load_cifar10("train")
    x_test, y_test = load_cifar10("test")
    classes = cifar10_classes()
    if args.limit:
        idx = rng.permutation(len(x_train))[: args.limit]
        x_train, y_train = x_train[idx], y_train[idx]
    x_train_t = torch.from_numpy(x_train).permute(0, 3, 1, 2).contiguous()  # uint8 NCHW
    y_train_t = torch.from_numpy(y_train.astype(np.int64))
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)

    model = SmallCifarNet(widths=args.widths, residual=args.residual).to(memory_format=torch.channels_last)
    decay, no_decay = [], []
    for name, prm in model.named_parameters():
        (no_decay if prm.ndim <= 1 else decay).append(prm)
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr, momentum=0.9, nesterov=True,
    )
    n = len(x_train_t)
    steps_per_epoch = n // args.batch_size  # drop the last partial batch
    total = steps_per_epoch * args.epochs
    warm = max(1, int(0.2 * total))

    def one_cycle(step):  # linear warm-up to the peak, then linear decay to zero
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (total - step) / (total - warm))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, one_cycle)

    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    t0 = time.perf_counter()
    step = 0
    history = []
    for epoch in range(args.epochs):
        model.train()
        perm = torch.from_numpy(rng.permutation(n))
        seen = correct = 0
        loss_sum = 0.0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{args.epochs}", unit="batch", mininterval=1.0)
        for b in bar:
            idx = perm[b * args.batch_size:(b + 1) * args.batch_size]
            xb = _normalise(_augment(x_train_t[idx], rng), mean, std).contiguous(memory_format=torch.channels_last)
            yb = y_train_t[idx]
            logits = model(xb)
            loss = loss_fn(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            seen += len(yb)
            correct += int((logits.argmax(1) == yb).sum())
            loss_sum += float(loss.detach()) * len(yb)
            if b % 10 == 0:
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}", lr=f"{sched.get_last_lr()[0]:.3f}")
        bar.close()
        history.append({"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_acc": correct / seen,
                        "elapsed_s": time.perf_counter() - t0})
        _log.info("epoch %d: train loss %.4f acc %.4f (%.0f s)", epoch + 1, loss_sum / seen, correct / seen,
                  time.perf_counter() - t0)
    train_s = time.perf_counter() - t0

    # Measure the weights exactly as they are stored: float16, cast back to float32.
    state16 = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    model.load_state_dict({k: (v.float() if v.is_floating_point() else v) for k, v in state16.items()})
    acc = evaluate(model, x_test, y_test, mean, std)
    _log.info("test accuracy (float16 weights, %d images): %.4f", len(x_test), acc)

    ckpt = {
        "state_dict": {k: v.contiguous() for k, v in state16.items()},
        "arch": {"num_classes": len(classes), "widths": list(args.widths), "residual": args.residual},
        "classes": list(classes),
        "mean": list(CIFAR10_MEAN),
        "std": list(CIFAR10_STD),
        "test_accuracy": acc,
        "train": {
            "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
            "weight_decay": args.weight_decay, "label_smoothing": args.label_smoothing,
            "augmentation": "random crop (pad 4, reflect) + horizontal flip",
            "optimizer": "SGD nesterov momentum 0.9, one-cycle linear schedule",
            "seed": args.seed, "threads": args.threads, "train_images": int(n),
            "train_seconds": round(train_s, 1), "history": history,
            "torch": str(torch.__version__), "python": platform.python_version(),
            "machine": platform.processor() or platform.machine(),
            "date": datetime.date.today().isoformat(),
        },
    }
    save_checkpoint(plain(ckpt), args.out)
    size = Path(args.out).stat().st_size
    _log.info("wrote %s (%.2f MB), trained %.0f s", args.out, size / 1e6, train_s)
    return ckpt


def run_training(args) -> dict:
    """``hotops train small-cifar``: check the options, then :func:`train`."""
    from ._training import check_count, check_positive

    for name in ("epochs", "batch_size", "threads"):
        check_count(f"--{name.replace('_', '-')}", getattr(args, name))
    check_count("--limit", args.limit, allow_none=True)
    check_positive("--lr", args.lr)
    for name in ("weight_decay", "label_smoothing"):
        v = getattr(args, name)
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0 and finite, got {v!r}")
    if not args.label_smoothing < 1:
        raise ValueError(f"--label-smoothing must be < 1, got {args.label_smoothing!r}")
    for w in args.widths:
        check_count("--widths", w)
    with flushing_denormals():
        return train(args)
