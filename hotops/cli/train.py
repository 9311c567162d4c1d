"""``hotops train NAME``: train one of hotops' models.

Each trainer's options are defined here; the training itself is ``run_training(args)`` of
its module in ``hotops.apps`` (imported only when that trainer is the command), which
raises ``ValueError`` on bad options (reported as usage errors, exit 2).

Outputs go to the working folder (release checkpoints) or the cache folder
(``hotops.data.cache_dir()``, ``$HOTOPS_CACHE``: training states, RevNet checkpoints) unless
``--out`` names another place; the committed checkpoints inside the package are written
only when ``--out`` names them. An existing output is kept unless ``--force`` (a resumed
run goes on writing its own state file). SIGINT / SIGTERM stop VDSR and RevNet training
after the current step with the state saved: the command says how to resume and exits with
128 + the signal number (130 for Ctrl-C).
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

from hotops.cli import HelpFormatter



def _vdsr(p) -> None:
    p.add_argument("--data", default=None, metavar="DIR", help="training images (default: train291 in the data folder)")
    p.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                   help="scale the schedule to this much training time (default: none; give it or --iterations)")
    p.add_argument("--iterations", type=int, default=None, metavar="N",
                   help="total iterations (the paper: 9960 at batch 64) (default: from --budget)")
    p.add_argument("--batch", type=int, default=64, help="patches per step")
    p.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4], help="scales mixed in the patch pool")
    p.add_argument("--theta", type=float, default=0.4, help="adjustable clipping threshold (pytorch-vdsr's 0.4)")
    p.add_argument("--lr", type=float, default=None, help="base learning rate (default: 0.1 for sgd, 1e-4 for adamw)")
    p.add_argument("--optimizer", choices=["sgd", "adamw"], default="sgd",
                   help="sgd: the paper's (momentum 0.9); adamw: learns far faster in short CPU budgets")
    p.add_argument("--schedule", choices=["step", "cosine"], default="step",
                   help="step: lr / 10 every quarter (the paper's); cosine: cosine decay to 0")
    p.add_argument("--out", type=Path, default=Path("vdsr.pt"), metavar="CKPT",
                   help="release checkpoint (float16 weights + metadata), in the working folder unless a path")
    p.add_argument("--resume", type=Path, default=None, metavar="STATE",
                   help="continue the run saved in this training state file, with its settings "
                        "(default: a new run)")
    p.add_argument("--state", type=Path, default=None, metavar="PATH",
                   help="training state file (default: the --resume file, else <cache dir>/<CKPT stem>.state.pt)")
    p.add_argument("--max-patches", type=int, default=24000, help="size of the patch pool (random subset)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--device", default="auto", metavar="auto|cpu|cuda",
                   help="where to train (default: the GPU when torch sees one)")
    p.add_argument("--seed", type=int, default=0, help="seed of the patch pool, the init and the batches")
    p.add_argument("--eval-sets", nargs="*", default=["set5", "set14"], help="sets for the final table")
    p.add_argument("--last-layer-init", choices=["zero", "he"], default="zero",
                   help="zero (default): the net starts as the identity (bicubic), which keeps lr 0.1 "
                        "stable in short runs; he: the paper's He init for every layer")
    _force(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _force(p) -> None:
    p.add_argument("--force", action="store_true",
                   help="overwrite existing outputs (and start over instead of resuming a saved state)")


def _localizer(p) -> None:
    p.add_argument("--epochs", type=int, default=3, help="epochs of fresh canvases")
    p.add_argument("--train-size", type=int, default=12000, help="canvases drawn per epoch (fresh each epoch)")
    p.add_argument("--test-size", type=int, default=2000, help="held-out canvases for the recorded accuracy")
    p.add_argument("--batch-size", type=int, default=64, help="canvases per step")
    p.add_argument("--lr", type=float, default=2e-3, help="peak Adam learning rate (one-cycle)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0, help="seed of the init and the canvases")
    p.add_argument("--out", type=Path, default=Path("localizer.pt"), metavar="CKPT",
                   help="checkpoint, in the working folder unless a path")
    _force(p)
    p.add_argument("--no-progress", action="store_true", help="no progress messages")


def _defense(p) -> None:
    from hotops.apps.defense import DEFAULT_ENERGY, DEFAULT_T_DEFENSE

    p.add_argument("--epochs", type=int, default=2, help="epochs for each of the two CNNs")
    p.add_argument("--batch-size", type=int, default=128, help="images per step")
    p.add_argument("--lr", type=float, default=2e-3, help="Adam's peak learning rate (cosine decay)")
    p.add_argument("--energy", type=float, default=DEFAULT_ENERGY,
                   help="choose k as the smallest k whose top-k DCT coefficients hold this fraction of "
                        "the median training image's energy")
    p.add_argument("--k", type=int, default=None, help="use this k instead of choosing it from --energy "
                                                       "(default: from --energy)")
    p.add_argument("--t-defense", type=int, default=DEFAULT_T_DEFENSE, help="IHT's t in the evaluation")
    p.add_argument("--eval-images", type=int, default=500, help="test images in the attack table (first N)")
    p.add_argument("--limit", type=int, default=None,
                   help="train on the first N images only, a smoke test (default: all)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0, help="seed of the inits, the batches and the attacks")
    p.add_argument("--out", type=Path, default=Path("."), metavar="DIR",
                   help="folder for defense_normal.pt and defense_topk.pt (the working folder by default)")
    _force(p)
    p.add_argument("--no-eval", dest="evaluate", action="store_false", help="skip the attack table")


def _revnet(p) -> None:
    from hotops.apps.revnet_train import ARCHS

    p.add_argument("--arch", default="revnet38", help=f"one of {', '.join(ARCHS)}")
    p.add_argument("--epochs", type=float, default=None,
                   help="epochs over the (sub)set (the paper: 160 = 80k steps) (default: none; give it or --budget)")
    p.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                   help="train for this long; the learning-rate drops at 50%% and 75%% of it (default: none)")
    p.add_argument("--batch", type=int, default=100, help="images per step")
    p.add_argument("--lr", type=float, default=0.1, help="base learning rate (SGD)")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    p.add_argument("--weight-decay", type=float, default=2e-4, help="L2 weight decay")
    p.add_argument("--train-subset", type=int, default=None, metavar="N",
                   help="first N images of a fixed shuffle (default: all 50000)")
    p.add_argument("--test-subset", type=int, default=None, metavar="N",
                   help="evaluate on N test images, a fixed random subset (default: all 10000)")
    p.add_argument("--eval-every", type=int, default=None, metavar="STEPS",
                   help="also evaluate and checkpoint every STEPS steps (default: at epoch ends only)")
    p.add_argument("--stored", action="store_true", help="RevNets: store activations (plain autograd) instead")
    p.add_argument("--out", type=Path, default=None, metavar="CKPT",
                   help="checkpoint (training state) and CKPT.json history (default: the --resume file, "
                        "else <cache dir>/<arch>.pt)")
    p.add_argument("--resume", type=Path, default=None, metavar="CKPT",
                   help="continue the run saved in this checkpoint, with its settings; --epochs or --budget "
                        "may lengthen it (default: a new run)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0, help="seed of the init, the shuffles and the augmentation")
    _force(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _small_cifar(p) -> None:
    p.add_argument("--epochs", type=int, default=7, help="epochs over the training images")
    p.add_argument("--batch-size", type=int, default=256, help="images per step")
    p.add_argument("--lr", type=float, default=0.15, help="peak learning rate of the one-cycle schedule")
    p.add_argument("--weight-decay", type=float, default=5e-4, help="L2 weight decay of the conv weights")
    p.add_argument("--label-smoothing", type=float, default=0.1, help="of the cross-entropy, in [0, 1)")
    p.add_argument("--widths", type=int, nargs=4, default=(16, 32, 64, 128),
                   help="channels of the four stages (the committed checkpoint's: 16 32 64 128)")
    p.add_argument("--no-residual", dest="residual", action="store_false",
                   help="no residual blocks after stages 2 and 3")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0, help="seed of the init, the shuffles and the augmentation")
    p.add_argument("--limit", type=int, default=None,
                   help="train on the first N shuffled images only, a smoke test (default: all)")
    p.add_argument("--out", type=Path, default=Path("small_cifar.pt"), metavar="CKPT",
                   help="checkpoint, in the working folder unless a path")
    _force(p)


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
        add(sub.add_parser(name, help=help_, description=f"Train {help_}.", formatter_class=HelpFormatter))


def _check_outputs(args) -> None:
    """Refuse (``UsageError``) to overwrite what this run would write, unless ``--force``;
    a resumed run may go on writing its own state."""
    from ._files import check_output

    name, force = args.model_name, args.force
    resume = getattr(args, "resume", None)
    if name == "vdsr":
        from hotops.apps.sr import state_path

        check_output(args.out, force=force, inputs=(resume,), name="--out")
        state = state_path(args)
        if resume is not None and Path(state).resolve() == Path(resume).resolve():
            return
        if state.exists() and not force and args.state is None:
            from hotops.cli import UsageError

            raise UsageError(f"a training state exists at {state} (an interrupted run?): continue it with "
                             f"--resume {state}, or pass --force to start over")
        check_output(state, force=force, inputs=(resume, args.out), name="--state")
    elif name == "revnet":
        from hotops.apps.revnet_train import default_out

        out = default_out(args)
        if resume is not None and out.resolve() == Path(resume).resolve():
            return
        for path in (out, out.with_suffix(".json")):
            check_output(path, force=force, inputs=(resume,), name="--out")
    elif name == "defense":
        for kind in ("normal", "topk"):
            check_output(Path(args.out) / f"defense_{kind}.pt", force=force, name="--out")
    else:
        check_output(args.out, force=force, name="--out")


def run(args) -> int:
    from hotops.cli import UsageError
    from hotops.data import UnreadableFileError

    module_name = TRAINERS[args.model_name][0]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        print(f"hotops train {args.model_name}: error: cannot import {module_name} ({exc})", file=sys.stderr)
        return 2
    from hotops.apps._training import TrainingInterrupted

    _check_outputs(args)
    try:
        module.run_training(args)
    except TrainingInterrupted as stop:
        print(f"hotops train {args.model_name}: {stop}", file=sys.stderr)
        if stop.state_path is not None:
            print(f"resume with: hotops train {args.model_name} --resume {stop.state_path}", file=sys.stderr)
        return stop.exit_status
    except UnreadableFileError:
        raise  # a file that cannot be read: a failure (exit 1), not bad usage
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    return 0
