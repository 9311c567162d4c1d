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
import logging
import math
import time
from pathlib import Path

import numpy as np

_log = logging.getLogger(__name__)

ARCHS = ("revnet38", "revnet110", "revnet164", "resnet32", "resnet110", "resnet164")
#: revnet-public: 0.1 -> 0.01 at 40k -> 0.001 at 60k of 80k steps
STEP_MILESTONES = (0.5, 0.75)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def _check_args(args) -> None:
    from ._training import check_count, check_positive

    if args.arch not in ARCHS:
        raise ValueError(f"--arch must be one of {', '.join(ARCHS)}, got {args.arch!r}")
    if args.epochs is None and args.budget is None and args.resume is None:
        raise ValueError("give --epochs N or --budget SECONDS (or --resume CKPT)")
    for name in ("epochs", "budget", "lr"):
        check_positive(f"--{name}", getattr(args, name), allow_none=True)
    for name in ("momentum", "weight_decay"):
        v = getattr(args, name)
        if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0 and finite, got {v!r}")
    for name in ("batch", "train_subset", "test_subset", "threads", "eval_every"):
        check_count(f"--{name.replace('_', '-')}", getattr(args, name), allow_none=True)
    if args.stored and not args.arch.startswith("revnet"):
        raise ValueError("--stored applies to RevNets only")


def default_out(args) -> Path:
    """The checkpoint of ``hotops train revnet``: ``--out``; else, resuming, the ``--resume``
    file; else ``<cache dir>/<arch>[-stored].pt``."""
    from hotops.data import cache_dir

    if args.out is not None:
        return Path(args.out)
    if args.resume is not None:
        return Path(args.resume)
    return cache_dir() / f"{args.arch}{'-stored' if args.stored else ''}.pt"


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


TRAIN_STATE_FORMAT = "hotops-revnet-train-2"
_OLD_STATE_FORMATS = ("hotops-revnet-train-1",)
#: the options a checkpoint stores; resuming takes them from it
_SAVED_ARGS = ("arch", "epochs", "budget", "batch", "lr", "momentum", "weight_decay", "train_subset",
               "test_subset", "stored", "seed", "eval_every")


def load_train_state(path) -> dict:
    """A checkpoint of ``hotops train revnet``, read with ``weights_only=True``.

    ``FileNotFoundError`` when the file is missing; ``ValueError`` naming the file when it is
    not a RevNet training checkpoint (or holds anything but tensors and plain data).
    """
    from hotops.data import UnreadableFileError
    from hotops.models._paths import load_checkpoint

    st = load_checkpoint(path, "RevNet training checkpoint")
    if not isinstance(st, dict) or st.get("format") not in (TRAIN_STATE_FORMAT, *_OLD_STATE_FORMATS) \
            or not isinstance(st.get("args"), dict):
        raise UnreadableFileError(f"{path} is not a RevNet training checkpoint (hotops train revnet writes them)")
    return st


def run_training(args) -> dict:
    """``hotops train revnet``: train, evaluate and checkpoint (see the module docstring).

    Raises ``ValueError`` for bad options and
    :class:`hotops.apps._training.TrainingInterrupted` when SIGINT / SIGTERM stops the run:
    the step under way finishes and the checkpoint is saved first (no evaluation), so that
    ``--resume`` continues with the same weights, batches and learning rates as a run that
    was never stopped (with ``--epochs``; a ``--budget`` run follows the clock).
    """
    import torch
    import torch.nn.functional as nnf

    from hotops.data import load_cifar10
    from hotops.models._paths import atomic_write, plain, save_checkpoint

    from ._training import TrainingInterrupted, stop_requests
    from .schedule import progress_scheduler

    if args.resume is not None:
        saved = load_train_state(args.resume)
        longer = {k: getattr(args, k) for k in ("epochs", "budget") if getattr(args, k) is not None}
        if longer:  # a new length given on the command line replaces the saved one
            saved["args"].update({"epochs": None, "budget": None, **longer})
        for k in _SAVED_ARGS:
            setattr(args, k, saved["args"].get(k))
    else:
        saved = None
    _check_args(args)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = default_out(args)
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
    perm = None  # the current epoch's order of the training images
    counters = {"seen": 0, "correct": 0, "loss": 0.0}
    if saved is not None:
        try:
            model.load_state_dict(saved["model"])
            opt.load_state_dict(saved["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise ValueError(f"{args.resume} does not fit {args.arch} ({str(exc).splitlines()[0]})") from None
        step, elapsed, history = int(saved["step"]), float(saved["elapsed"]), list(saved["history"])
        rng.bit_generator.state = saved["rng"]["numpy"]
        torch.set_rng_state(saved["rng"]["torch"])
        if saved.get("perm") is not None and step % steps_per_epoch:
            perm = saved["perm"]
        counters.update(saved.get("counters") or {})
        for g in opt.param_groups:  # checkpoints from before the scheduler: the base rate
            g.setdefault("initial_lr", args.lr)
        _log.info("resumed %s at step %d (%.0f s trained)", args.arch, step, elapsed)

    t_start = time.perf_counter() - elapsed

    def progress_of(s: int) -> float:
        if total_steps is not None:
            return s / total_steps
        return (time.perf_counter() - t_start) / args.budget  # --budget: progress is time

    sched = progress_scheduler(opt, progress_of, "step", STEP_MILESTONES, last_step=step)

    def done(elapsed_s: float) -> bool:
        if total_steps is not None and step >= total_steps:
            return True
        return args.budget is not None and elapsed_s >= args.budget

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, initial=step, desc=args.arch, unit="step", dynamic_ncols=True)
    model.train()
    last_lr = opt.param_groups[0]["lr"]

    def save(now: float) -> None:
        save_checkpoint({
            "format": TRAIN_STATE_FORMAT, "arch": args.arch, "model": model.state_dict(),
            "optimizer": opt.state_dict(), "scheduler": plain(sched.state_dict()), "step": step,
            "elapsed": float(now), "history": plain(history), "perm": perm, "counters": plain(counters),
            "rng": {"numpy": plain(rng.bit_generator.state), "torch": torch.get_rng_state()},
            "args": plain({k: getattr(args, k) for k in _SAVED_ARGS}),
        }, out)

    def checkpoint_and_eval() -> None:
        nonlocal t_start
        now = time.perf_counter() - t_start
        t_eval = time.perf_counter()
        acc = evaluate(model, xte, yte)
        t_start += time.perf_counter() - t_eval  # evaluation time is not training time
        seen = max(1, counters["seen"])
        history.append({"epoch": round(step / steps_per_epoch, 3), "step": step, "seconds": round(now, 1),
                        "train_loss": counters["loss"] / seen, "train_acc": counters["correct"] / seen,
                        "test_acc": acc, "lr": last_lr})
        counters.update(seen=0, correct=0, loss=0.0)
        h = history[-1]
        _log.info("epoch %.2f step %d: train loss %.3f, train acc %.3f, test acc %.4f (%.0f s)",
                  h["epoch"], step, h["train_loss"], h["train_acc"], acc, now)
        save(now)

    with stop_requests() as stop:
        while not done(time.perf_counter() - t_start):
            pos = (step % steps_per_epoch) * args.batch
            if perm is None or pos == 0:
                perm = torch.from_numpy(rng.permutation(len(xtr)))
            for i in range(pos, len(xtr), args.batch):
                now = time.perf_counter() - t_start
                if done(now):
                    break
                last_lr = opt.param_groups[0]["lr"]
                idx = perm[i:i + args.batch]
                xb, yb = _augment(xtr[idx], rng), ytr[idx]
                logits = model(xb)
                loss = nnf.cross_entropy(logits, yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                sched.step()  # the rate of the next step
                counters["seen"] += len(yb)
                counters["correct"] += int((logits.argmax(1) == yb).sum())
                counters["loss"] += float(loss.detach()) * len(yb)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{float(loss):.3f}", lr=last_lr)
                if stop:
                    save(time.perf_counter() - t_start)
                    if bar is not None:
                        bar.close()
                    raise TrainingInterrupted(stop.signum, out, step, total_steps)
                if args.eval_every and step % args.eval_every == 0:
                    checkpoint_and_eval()
            if step % steps_per_epoch == 0:
                perm = None
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
        "torch": str(torch.__version__),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "checkpoint": str(out),
    }
    atomic_write(out.with_suffix(".json"), lambda f: f.write(json.dumps(result, indent=1).encode()))
    _log.info("%s: %d steps, test accuracy %s; checkpoint %s", args.arch, step, result["final_test_acc"], out)
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
