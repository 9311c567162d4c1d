"""``hotops train NAME``: train one of hotops' models.

Each trainer's options are defined here; the training itself is ``run_training(args)`` of
its module in ``hotops.apps`` (imported only when that trainer is the command), which
raises ``ValueError`` on bad options (reported as usage errors, exit 2).
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

from hotops.models._paths import CHECKPOINT_DIR, checkpoint


def _vdsr(p) -> None:
    p.add_argument("--data", default=None, metavar="DIR", help="training images (default: train291 in the data folder)")
    p.add_argument("--budget", type=float, default=None, metavar="SECONDS", help="scale the schedule to this much training time")
    p.add_argument("--iterations", type=int, default=None, metavar="N", help="total iterations (the paper: 9960 at batch 64)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    p.add_argument("--theta", type=float, default=0.4, help="adjustable clipping threshold (pytorch-vdsr's 0.4)")
    p.add_argument("--lr", type=float, default=None, help="base learning rate (default: 0.1 for sgd, 1e-4 for adamw)")
    p.add_argument("--optimizer", choices=["sgd", "adamw"], default="sgd",
                   help="sgd: the paper's (momentum 0.9); adamw: learns far faster in short CPU budgets")
    p.add_argument("--schedule", choices=["step", "cosine"], default="step",
                   help="step: lr / 10 every quarter (the paper's); cosine: cosine decay to 0")
    p.add_argument("--out", type=Path, default=checkpoint("vdsr.pt"), metavar="CKPT",
                   help="release checkpoint (float16 weights + metadata)")
    p.add_argument("--resume", type=Path, default=None, metavar="CKPT", help="continue from a training state file")
    p.add_argument("--state", type=Path, default=None, metavar="PATH", help="training state file (default: cache dir)")
    p.add_argument("--max-patches", type=int, default=24000, help="size of the patch pool (random subset)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="auto", metavar="auto|cpu|cuda",
                   help="where to train (default: the GPU when torch sees one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-sets", nargs="*", default=["set5", "set14"], help="sets for the final table")
    p.add_argument("--last-layer-init", choices=["zero", "he"], default="zero",
                   help="zero (default): the net starts as the identity (bicubic), which keeps lr 0.1 "
                        "stable in short runs; he: the paper's He init for every layer")
    p.add_argument("--no-progress", action="store_true")


def _localizer(p) -> None:
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--train-size", type=int, default=12000, help="canvases drawn per epoch (fresh each epoch)")
    p.add_argument("--test-size", type=int, default=2000, help="held-out canvases for the recorded accuracy")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3, help="peak Adam learning rate (one-cycle)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=checkpoint("localizer.pt"), metavar="CKPT")
    p.add_argument("--no-progress", action="store_true")


def _defense(p) -> None:
    from hotops.apps.defense import DEFAULT_ENERGY, DEFAULT_T_DEFENSE

    p.add_argument("--epochs", type=int, default=2, help="epochs for each of the two CNNs (default 2)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3, help="Adam's peak learning rate (cosine decay)")
    p.add_argument("--energy", type=float, default=DEFAULT_ENERGY,
                   help="choose k as the smallest k whose top-k DCT coefficients hold this fraction of "
                        "the median training image's energy (default 0.8)")
    p.add_argument("--k", type=int, default=None, help="use this k instead of choosing it from --energy")
    p.add_argument("--t-defense", type=int, default=DEFAULT_T_DEFENSE, help="IHT's t in the evaluation")
    p.add_argument("--eval-images", type=int, default=500, help="test images in the attack table (first N)")
    p.add_argument("--limit", type=int, default=None, help="train on the first N images only (smoke test)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=CHECKPOINT_DIR,
                   help="folder for defense_normal.pt and defense_topk.pt (default: the package's checkpoints)")
    p.add_argument("--no-eval", dest="evaluate", action="store_false", help="skip the attack table")


def _revnet(p) -> None:
    from hotops.apps.revnet_train import ARCHS

    p.add_argument("--arch", default="revnet38", help=f"one of {', '.join(ARCHS)}")
    p.add_argument("--epochs", type=float, default=None, help="epochs over the (sub)set (the paper: 160 = 80k steps)")
    p.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                   help="train for this long; the learning-rate drops at 50%% and 75%% of it")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=2e-4)
    p.add_argument("--train-subset", type=int, default=None, metavar="N", help="first N images of a fixed shuffle")
    p.add_argument("--test-subset", type=int, default=None, metavar="N",
                   help="evaluate on N test images (a fixed random subset)")
    p.add_argument("--eval-every", type=int, default=None, metavar="STEPS",
                   help="also evaluate and checkpoint every STEPS steps (default: at epoch ends only)")
    p.add_argument("--stored", action="store_true", help="RevNets: store activations (plain autograd) instead")
    p.add_argument("--out", type=Path, default=None, metavar="CKPT", help="checkpoint (default: cache dir/<arch>.pt)")
    p.add_argument("--resume", type=Path, default=None, metavar="CKPT")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")


def _small_cifar(p) -> None:
    p.add_argument("--epochs", type=int, default=7)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.15, help="peak learning rate of the one-cycle schedule")
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--widths", type=int, nargs=4, default=(16, 32, 64, 128),
                   help="channels of the four stages (the committed checkpoint's: 16 32 64 128)")
    p.add_argument("--no-residual", dest="residual", action="store_false")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="train on the first N shuffled images only (smoke test)")
    p.add_argument("--out", type=Path, default=checkpoint("small_cifar.pt"))


#: trainer -> (module in hotops.apps with run_training(args), options, one-line help)
TRAINERS: dict[str, tuple[str, object, str]] = {
    "vdsr": ("hotops.apps.sr", _vdsr, "VDSR (Kim et al. 2016) on train291"),
    "localizer": ("hotops.apps.loc_bench", _localizer,
                  "the classifier of the localisation benchmark (cluttered canvases)"),
    "defense": ("hotops.apps.defense", _defense,
                "the L0-robust sparse-Fourier defended MNIST classifier (Bafna et al. 2018)"),
    "revnet": ("hotops.apps.revnet_train", _revnet, "RevNet / ResNet (Gomez et al. 2017) on CIFAR-10"),
    "small-cifar": ("hotops.apps.train_small", _small_cifar, "the demo's small CIFAR-10 classifier"),
}


def add_arguments(parser) -> None:
    parser.description = "Train one of hotops' models."
    sub = parser.add_subparsers(dest="model_name", metavar="{" + ",".join(TRAINERS) + "}")
    sub.required = True
    for name, (_module, add, help_) in TRAINERS.items():
        add(sub.add_parser(name, help=help_, description=f"Train {help_}."))


def run(args) -> int:
    from hotops.cli import UsageError

    module_name = TRAINERS[args.model_name][0]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        print(f"hotops train {args.model_name}: error: cannot import {module_name} ({exc})", file=sys.stderr)
        return 2
    try:
        module.run_training(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    return 0
