"""``hotops bench``: run the shipped benchmark suites and write a report of ratios."""
from __future__ import annotations

import sys
from pathlib import Path

from ._args import positive_int


def add_arguments(parser) -> None:
    parser.description = ("Run hotops' benchmarks against the libraries people use today "
                          "(pip install 'hotops[bench]' for the baselines).")
    parser.add_argument("--out", type=Path, default=Path("bench-results"), metavar="DIR",
                        help="output folder for bench.json, report.md and the PNGs")
    parser.add_argument("--ops", nargs="+", metavar="OP", default=None,
                        help="only these ops' suites, e.g. channel_max nmf (default: all)")
    parser.add_argument("--list", action="store_true", help="list the suites and exit")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: ~0.4 s of timing and 3 rounds per benchmark")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="CPU threads (default: $HOTOPS_BENCH_THREADS, else 2)")
    parser.add_argument("pytest_args", nargs="*", metavar="PYTEST_ARG",
                        help="extra pytest arguments after `--`, e.g. `-- -k cuda`")


def run(args) -> int:
    from hotops.bench import available_ops
    from hotops.bench import run as run_bench
    from hotops.cli import UsageError

    if args.list:
        print("\n".join(available_ops()))
        return 0
    try:
        result = run_bench(args.out, ops=args.ops, quick=args.quick,
                           extra_args=tuple(args.pytest_args or ()), threads=args.threads)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    except RuntimeError as exc:
        print(f"hotops bench: error: {exc}", file=sys.stderr)
        return 2
    return 1 if result["returncode"] else 0
