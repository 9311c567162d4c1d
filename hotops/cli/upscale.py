"""``hotops upscale IN OUT --scale S``: VDSR on the luminance, bicubic on the colour."""
from __future__ import annotations

import sys

from ._args import positive_float, positive_int
from ._files import check_output, is_stdio, read_input, write_output


def add_arguments(parser) -> None:
    parser.description = ("Upscale an image: VDSR on Y, bicubic on Cb/Cr (grayscale: VDSR). OUT is never "
                          "an input, and an existing OUT is kept unless --force.")
    parser.add_argument("input", metavar="IN", help="the image (PNG, JPEG, ...); - reads it from standard input")
    parser.add_argument("output", metavar="OUT",
                        help="the upscaled image, in the format of its extension (.png, .jpg, .tif, .bmp, ...); "
                             "- writes a PNG to standard output")
    parser.add_argument("--scale", type=positive_float, required=True,
                        help="enlargement factor > 0; the output is ceil(scale * side) pixels per side, "
                             "at most 65535 per side and 2**28 in all (required)")
    parser.add_argument("--model", default="pretrained", metavar="CKPT",
                        help="a VDSR checkpoint of hotops train vdsr, or 'pretrained' for the committed one")
    parser.add_argument("--threads", type=positive_int, default=2, help="torch CPU threads")
    parser.add_argument("--force", action="store_true", help="overwrite OUT if it exists (never an input)")


def output_format(path) -> str:
    """Pillow's format name for writing ``path`` (PNG for ``-``); ``UsageError`` for an
    extension no Pillow writer knows."""
    from pathlib import Path

    from PIL import Image

    from hotops.cli import UsageError

    if is_stdio(path):
        return "PNG"
    ext = Path(path).suffix.lower()
    Image.init()
    fmt = Image.registered_extensions().get(ext)
    if fmt is None or fmt not in Image.SAVE:
        shown = f"extension {ext!r}" if ext else "no extension"
        raise UsageError(f"OUT {path} has {shown}: no image writer for it (use .png, .jpg, .tif, .bmp, .webp, ...)")
    return fmt


def save_image(path, pixels, fmt: str) -> str:
    """Write uint8 ``pixels`` to ``path`` as ``fmt`` (whole or not at all); the name written."""
    from PIL import Image

    from hotops.cli import UsageError

    img = Image.fromarray(pixels)
    try:
        return write_output(path, lambda f: img.save(f, format=fmt))
    except (KeyError, ValueError) as exc:
        raise UsageError(f"cannot write a {img.mode} image as {fmt} ({exc})") from None
    except OSError as exc:
        if exc.errno is not None:
            raise  # the file system's refusal: a failure (exit 1)
        raise UsageError(f"cannot write a {img.mode} image as {fmt} ({exc})") from None


def run(args) -> int:
    import torch

    from hotops.apps.sr import upscale_image, upscaled_size
    from hotops.cli import UsageError
    from hotops.data import read_image

    from .eval_sr import load_sr_model

    fmt = output_format(args.output)
    model_path = None if args.model in (None, "pretrained") else args.model
    check_output(args.output, force=args.force, inputs=(args.input, model_path))
    img, note = read_image(read_input(args.input))  # unreadable: exit 1
    try:
        upscaled_size(img.shape[:2], args.scale)
    except ValueError as exc:
        raise UsageError(f"--scale {args.scale:g} on a {img.shape[1]}x{img.shape[0]} image: {exc}") from None
    # when the image goes to standard output, the messages go to standard error
    say = sys.stderr if is_stdio(args.output) else sys.stdout
    if note:
        print(f"note: {note}", file=say)
    torch.set_num_threads(args.threads)
    model = load_sr_model(args.model)
    out = upscale_image(img, args.scale, model)
    name = save_image(args.output, out, fmt)
    print(f"wrote {name} ({out.shape[1]}x{out.shape[0]}, x{args.scale:g})", file=say)
    return 0
