"""``hotops demo``: every capability on embedded data, written to DIR/report.md."""
from __future__ import annotations

from pathlib import Path


def add_arguments(parser) -> None:
    parser.description = ("Run each hotops capability on embedded data (the committed checkpoints and "
                          "scikit-image samples), write figures and DIR/report.md.")
    parser.add_argument("--out", type=Path, default=Path("demo-out"), metavar="DIR",
                        help="output folder")
    parser.add_argument("--quick", action="store_true", help="fewer timing repeats, smaller batches")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from hotops.cli import UsageError
    from hotops.demo import run_demo

    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} exists and is not a directory")
    result = run_demo(args.out, quick=args.quick, progress=not args.no_progress)
    print(f"report: {result['report']}")
    for fig in result["figures"]:
        print(f"figure: {fig}")
    print(f"done in {result['seconds']:.1f} s")
    return 0
