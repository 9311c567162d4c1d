"""``hotops train revnet``: RevNet / ResNet on CIFAR-10 (Gomez et al. 2017), and the activation-memory
comparison of coupling implementations (:func:`saved_bytes_vs_depth`).

    hotops train revnet --arch revnet38 --epochs 160            # the paper's schedule (80k steps)
    hotops train revnet --arch resnet32 --budget 300 --train-subset 5000   # a CPU-sized run

The schedule follows the authors' CIFAR code (revnet-public): batch 100, SGD with momentum
0.9, weight decay 2e-4, learning rate 0.1, divided by 10 at 50% and 75% of training
(40k and 60k of 80k steps). ``--epochs`` fixes the number of steps; ``--budget SECONDS``
instead places the two drops at 50% and 75% of the time budget and stops when it is spent,
so a short run on a CPU still sees the whole schedule. Augmentation: random 32x32 crops of
the 4-pixel zero-padded image and horizontal flips; inputs normalised per channel.

Every epoch (and every ``--eval-every`` steps) ends with an evaluation on the test split (or
``--test-subset`` of it) and a checkpoint (model, optimizer, RNG states, history); ``--resume CKPT`` continues from one.
The history (test accuracy per epoch with elapsed time) is written as JSON next to the
checkpoint; :func:`plot_curves` draws several histories side by side.
"""
from __future__ import annotations

import datetime
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from .schedule import lr_at

ARCHS = ("revnet38", "revnet110", "revnet164", "resnet32", "resnet110", "resnet164")
#: revnet-public: 0.1 -> 0.01 at 40k -> 0.001 at 60k of 80k steps
STEP_MILESTONES = (0.5, 0.75)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def _check_args(args) -> None:
    if args.arch not in ARCHS:
        raise ValueError(f"--arch must be one of {', '.join(ARCHS)}, got {args.arch!r}")
    if args.epochs is None and args.budget is None and args.resume is None:
        raise ValueError("give --epochs N or --budget SECONDS (or --resume CKPT)")
    for name in ("epochs", "budget", "lr"):
        v = getattr(args, name)
        if v is not None and not v > 0:
            raise ValueError(f"--{name.replace('_', '-')} must be > 0, got {v}")
    for name in ("batch", "train_subset", "test_subset", "threads", "eval_every"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {v}")
    if args.stored and not args.arch.startswith("revnet"):
        raise ValueError("--stored applies to RevNets only")


def build_model(arch: str, stored: bool = False):
    from hotops import models

    model = getattr(models, arch)(num_classes=10)
    if stored:
        model.reversible = False
    return model


def _to_tensor(images: np.ndarray):
    import torch

    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def _augment(x, rng: np.random.Generator):
    """Random crop of the 4-pixel zero-padded batch and horizontal flip (x normalised, NCHW)."""
    import torch
    import torch.nn.functional as nnf

    b, _, h, w = x.shape
    padded = nnf.pad(x, (4, 4, 4, 4))
    dy, dx = rng.integers(0, 9, size=b), rng.integers(0, 9, size=b)
    flip = rng.random(b) < 0.5
    out = torch.empty_like(x)
    for i in range(b):
        crop = padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        out[i] = crop.flip(-1) if flip[i] else crop
    return out


def evaluate(model, x, y, batch: int = 500) -> float:
    import torch

    was = model.training
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            correct += int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
    model.train(was)
    return correct / max(1, len(x))


def _save(path: Path, state: dict) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def run_training(args) -> dict:
    import torch
    import torch.nn.functional as nnf

    from hotops.data import cache_dir, load_cifar10

    if args.resume is not None:
        if not Path(args.resume).exists():
            raise ValueError(f"--resume: no such checkpoint {args.resume}")
        saved = torch.load(args.resume, weights_only=False)
        longer = {k: getattr(args, k) for k in ("epochs", "budget") if getattr(args, k) is not None}
        if longer:  # a new length given on the command line replaces the saved one
            saved["args"].update({"epochs": None, "budget": None, **longer})
        for k in ("arch", "epochs", "budget", "batch", "lr", "momentum", "weight_decay", "train_subset",
                  "test_subset", "stored", "seed", "eval_every"):
            setattr(args, k, saved["args"].get(k))
    else:
        saved = None
    _check_args(args)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.out is None and args.resume is not None:
        args.out = args.resume
    out = Path(args.out) if args.out is not None else cache_dir() / f"{args.arch}{'-stored' if args.stored else ''}.pt"
    progress = not args.no_progress

    xtr, ytr = load_cifar10("train", progress=progress)
    xte, yte = load_cifar10("test", progress=progress)
    order = np.random.default_rng(12345).permutation(len(xtr))  # a fixed subset, whatever --seed
    if args.train_subset:
        order = order[: args.train_subset]
    xtr, ytr = _to_tensor(xtr[order]), torch.from_numpy(ytr[order].astype(np.int64))
    if args.test_subset:  # the split is stored sorted by class: a fixed random subset
        pick = np.sort(np.random.default_rng(54321).permutation(len(xte))[: args.test_subset])
        xte, yte = xte[pick], yte[pick]
    xte, yte = _to_tensor(xte), torch.from_numpy(yte.astype(np.int64))

    model = build_model(args.arch, args.stored)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    steps_per_epoch = math.ceil(len(xtr) / args.batch)
    total_steps = None if args.epochs is None else max(1, round(args.epochs * steps_per_epoch))
    rng = np.random.default_rng(args.seed)
    step, elapsed, history = 0, 0.0, []
    if saved is not None:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        step, elapsed, history = saved["step"], saved["elapsed"], saved["history"]
        rng.bit_generator.state = saved["rng"]["numpy"]
        torch.set_rng_state(saved["rng"]["torch"])
        print(f"resumed {args.arch} at step {step} ({elapsed:.0f} s trained)", flush=True)

    def progress_of(elapsed_s: float) -> float:
        if total_steps is not None:
            return step / total_steps
        return elapsed_s / args.budget

    def done(elapsed_s: float) -> bool:
        if total_steps is not None and step >= total_steps:
            return True
        return args.budget is not None and elapsed_s >= args.budget

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, initial=step, desc=args.arch, unit="step", dynamic_ncols=True)
    model.train()
    t_start = time.perf_counter() - elapsed
    counters = {"seen": 0, "correct": 0, "loss": 0.0}

    def checkpoint_and_eval() -> None:
        nonlocal t_start
        now = time.perf_counter() - t_start
        t_eval = time.perf_counter()
        acc = evaluate(model, xte, yte)
        t_start += time.perf_counter() - t_eval  # evaluation time is not training time
        seen = max(1, counters["seen"])
        history.append({"epoch": round(step / steps_per_epoch, 3), "step": step, "seconds": round(now, 1),
                        "train_loss": counters["loss"] / seen, "train_acc": counters["correct"] / seen,
                        "test_acc": acc, "lr": opt.param_groups[0]["lr"]})
        counters.update(seen=0, correct=0, loss=0.0)
        h = history[-1]
        msg = (f"epoch {h['epoch']:.2f} step {step}: train loss {h['train_loss']:.3f}, "
               f"train acc {h['train_acc']:.3f}, test acc {acc:.4f} ({now:.0f} s)")
        if bar is not None:
            bar.write(msg)
        else:
            print(msg, flush=True)
        _save(out, {"format": "hotops-revnet-train-1", "arch": args.arch, "model": model.state_dict(),
                    "optimizer": opt.state_dict(), "step": step, "elapsed": now, "history": history,
                    "rng": {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state()},
                    "args": {k: getattr(args, k) for k in ("arch", "epochs", "budget", "batch", "lr", "momentum",
                                                           "weight_decay", "train_subset", "test_subset",
                                                           "stored", "seed", "eval_every")}})

    while not done(time.perf_counter() - t_start):
        perm = torch.from_numpy(rng.permutation(len(xtr)))
        pos = (step % steps_per_epoch) * args.batch  # resuming mid-epoch: the rest of a new shuffle
        for i in range(pos, len(xtr), args.batch):
            now = time.perf_counter() - t_start
            if done(now):
                break
            for g in opt.param_groups:
                g["lr"] = lr_at(args.lr, progress_of(now), "step", STEP_MILESTONES)
            idx = perm[i:i + args.batch]
            xb, yb = _augment(xtr[idx], rng), ytr[idx]
            logits = model(xb)
            loss = nnf.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            counters["seen"] += len(yb)
            counters["correct"] += int((logits.argmax(1) == yb).sum())
            counters["loss"] += float(loss.detach()) * len(yb)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{float(loss):.3f}", lr=opt.param_groups[0]["lr"])
            if args.eval_every and step % args.eval_every == 0:
                checkpoint_and_eval()
        if not history or history[-1]["step"] != step:
            checkpoint_and_eval()
    if bar is not None:
        bar.close()
    from hotops.environment import cpu_name

    result = {
        "arch": args.arch, "stored_activations": bool(args.stored), "steps": step,
        "train_images": len(xtr), "test_images": len(xte), "batch": args.batch,
        "train_seconds": round(history[-1]["seconds"], 1) if history else 0.0,
        "final_test_acc": history[-1]["test_acc"] if history else None, "history": history,
        "hardware": (torch.cuda.get_device_name(0) if torch.cuda.is_available()
                     else f"{cpu_name()}, torch threads {args.threads}"),
        "torch": torch.__version__, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "checkpoint": str(out),
    }
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    print(f"{args.arch}: {step} steps, test accuracy {result['final_test_acc']}; checkpoint {out}", flush=True)
    return result


def plot_curves(results: list[dict], path, title: str = "") -> Path:
    """Test accuracy against training time and against epochs, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for r in results:
        h = r["history"]
        label = f"{r['arch']} ({r['steps']} steps, final {100 * r['final_test_acc']:.1f}%)"
        axes[0].plot([e["seconds"] for e in h], [100 * e["test_acc"] for e in h], marker="o", label=label)
        axes[1].plot([e["epoch"] for e in h], [100 * e["test_acc"] for e in h], marker="o", label=r["arch"])
    axes[0].set_xlabel("training time (s)")
    axes[1].set_xlabel("epochs over the training subset")
    for ax in axes:
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- memory vs depth

def saved_bytes_vs_depth(depths, channels: int = 16, size: int = 16, batch: int = 8, methods=None) -> dict:
    """Bytes saved for backward by an n-block coupling stage, per method and depth.

    Every method runs the same F/G modules (BN-ReLU-conv3x3 on ``channels`` per half) on a
    (batch, 2*channels, size, size) input; bytes are counted with
    ``torch.autograd.graph.saved_tensors_hooks`` plus the tensors that custom autograd
    Functions keep as context attributes (memcnn's outputs, RNG states), parameters
    excluded, each storage once. Methods: hotops (ReversibleSequence), plain autograd,
    torch.utils.checkpoint (one segment per block), memcnn and revlib (when installed).
    """
    import torch

    from hotops.bindings import saved_tensor_bytes

    result: dict = {}
    for depth in depths:
        fns = coupling_functions(depth, channels)
        x = torch.randn(batch, 2 * channels, size, size, requires_grad=True)
        for name, build in coupling_methods(methods).items():
            try:
                net = build(fns)
            except ImportError:
                continue
            # a non-leaf copy: memcnn frees its input's storage and mishandles a leaf input
            xin = x.detach().clone().requires_grad_(True) * 1.0
            with saved_tensor_bytes() as s:
                y = net(xin)
            result.setdefault(name, {})[depth] = s["count_graph"](y)
            del y
    return result


def coupling_functions(depth: int, channels: int, seed: int = 0):
    import torch
    from torch import nn

    torch.manual_seed(seed)

    def fn():
        return nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1, bias=False))

    return [(fn(), fn()) for _ in range(depth)]


def coupling_methods(names=None) -> dict:
    """name -> build(list of (F, G)) -> module, for the same coupling network in each library."""
    import torch
    from torch import nn

    from hotops.bindings import ReversibleBlock, ReversibleSequence

    class Coupling(nn.Module):
        def __init__(self, F, G):
            super().__init__()
            self.F, self.G = F, G

        def forward(self, x):
            x1, x2 = x.chunk(2, 1)
            y1 = x1 + self.F(x2)
            return torch.cat([y1, x2 + self.G(y1)], 1)

    class Checkpointed(nn.Sequential):
        def forward(self, x):
            from torch.utils.checkpoint import checkpoint

            for m in self:
                x = checkpoint(m, x, use_reentrant=False)
            return x

    def memcnn_net(fns):
        import memcnn

        return nn.Sequential(*[memcnn.InvertibleModuleWrapper(memcnn.AdditiveCoupling(F, G), keep_input=False,
                                                              keep_input_inverse=False) for F, G in fns])

    def revlib_net(fns):
        import revlib

        return revlib.ReversibleSequential(*[m for pair in fns for m in pair], split_dim=1)

    methods = {
        "hotops": lambda fns: ReversibleSequence(*[ReversibleBlock(F, G) for F, G in fns]),
        "plain autograd": lambda fns: nn.Sequential(*[Coupling(F, G) for F, G in fns]),
        "torch.utils.checkpoint": lambda fns: Checkpointed(*[Coupling(F, G) for F, G in fns]),
        "memcnn": memcnn_net,
        "revlib": revlib_net,
    }
    if names is not None:
        methods = {k: v for k, v in methods.items() if k in names}
    return methods
