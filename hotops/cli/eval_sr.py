"""``hotops eval-sr``: the standard super-resolution protocol for a VDSR checkpoint."""
from __future__ import annotations

from ._args import positive_int


def add_arguments(parser) -> None:
    parser.description = ("Evaluate a VDSR checkpoint by the standard SR protocol "
                          "(Y channel, shave = scale), with the bicubic baseline.")
    parser.add_argument("--model", default="pretrained", metavar="CKPT|pretrained|bicubic",
                        help="a VDSR checkpoint of hotops train vdsr, 'pretrained' (the committed one) or "
                             "'bicubic' (the baseline alone)")
    parser.add_argument("--set", default="set5", metavar="set5|set14|DIR",
                        help="set5 or set14 of the data folder, or a folder of images")
    parser.add_argument("--scales", type=float, nargs="+", default=[2, 3, 4], help="integer scales to measure")
    parser.add_argument("--threads", type=positive_int, default=2, help="torch CPU threads")
    parser.add_argument("--no-ssim", action="store_true", help="PSNR only (SSIM is the slow part)")


def load_sr_model(spec):
    """The VDSR of ``spec``: 'pretrained' (the committed checkpoint) or a checkpoint path.

    A missing file raises ``FileNotFoundError`` and an unreadable one
    ``hotops.data.UnreadableFileError``: the command reports both as failures (exit 1).
    """
    from hotops.models.vdsr import VDSR

    if spec in (None, "pretrained"):
        return VDSR.pretrained()
    return VDSR.load(spec)


def run(args) -> int:
    import torch

    from hotops.apps.sr import check_scale, evaluate, format_table
    from hotops.cli import UsageError
    from hotops.data import load_sr_set

    try:
        scales = [check_scale(s) for s in args.scales]
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    torch.set_num_threads(args.threads)
    model = None if args.model == "bicubic" else load_sr_model(args.model)
    images = load_sr_set(args.set)
    try:
        res = evaluate(model, images, scales, ssim_too=not args.no_ssim)
    except ValueError as exc:  # an image too small for a scale, say
        raise UsageError(str(exc)) from exc
    name = args.set if args.set in ("set5", "set14") else str(args.set)
    print(f"{name}: {len(images)} images; Y channel, shave = scale, MATLAB bicubic degradation")
    print(format_table({name: res}))
    return 0
