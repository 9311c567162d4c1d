"""``hotops bench``: run the pytest-benchmark suites of a source checkout and report them.

The suites live in the repository's ``bench/`` folder (next to the ``hotops`` package
folder), not in the installed package: benchmarking needs a source checkout. ``run``
starts pytest in a subprocess (so that thread pinning in ``bench/conftest.py`` happens
before numba and torch load), writes ``bench.json``, then ``report.md`` and PNG charts
through ``bench/report.py``.

This module imports neither torch nor numba.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

__all__ = ["bench_dir", "available_ops", "run", "add_arguments", "main"]

JSON_NAME = "bench.json"
REPORT_NAME = "report"


def bench_dir() -> Path:
    """The checkout's ``bench/`` folder (``HOTOPS_BENCH_DIR`` overrides); RuntimeError if none."""
    override = os.environ.get("HOTOPS_BENCH_DIR")
    root = Path(__file__).resolve().parent.parent  # the package folder's parent: repo root
    path = Path(override).resolve() if override else root / "bench"
    if not (path / "conftest.py").is_file() or not (path / "report.py").is_file():
        raise RuntimeError(
            f"hotops bench needs a source checkout of hotops: no benchmark suite at {path} "
            "(bench/conftest.py and bench/report.py). Clone the repository, "
            "`pip install -e .[test]` in it and run `hotops bench` (or `pytest bench`) there, "
            "or point HOTOPS_BENCH_DIR at its bench/ folder."
        )
    return path


def available_ops(where: Path | None = None) -> list[str]:
    """Op names with a suite: ``bench/test_<op>.py``."""
    where = where or bench_dir()
    return sorted(p.stem.removeprefix("test_") for p in where.glob("test_*.py"))


def _load_report(where: Path):
    spec = importlib.util.spec_from_file_location("_hotops_bench_report", where / "report.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(spec.name, None)
        raise
    return module


def run(out_dir, ops=None, quick: bool = False, extra_args=(), *, threads: int | None = None,
        python: str | None = None) -> dict:
    """Run the benchmark suites and write the JSON, markdown report and PNGs to ``out_dir``.

    Parameters
    ----------
    out_dir : path
        Created if needed; receives ``bench.json``, ``report.md`` and ``bench-<op>.png``.
    ops : list of str, optional
        Op names (``bench/test_<op>.py``); all suites when None.
    quick : bool
        Smoke run: about 0.4 s of timing and 3 rounds per benchmark (``HOTOPS_BENCH_QUICK``).
    extra_args : sequence of str
        More pytest arguments, e.g. ``("-k", "cuda")``.
    threads : int, optional
        ``HOTOPS_BENCH_THREADS`` for the run (default: the environment's, else 2).

    Returns
    -------
    dict with ``returncode`` (pytest's), ``json``, ``markdown`` and ``pngs`` (paths).
    """
    where = bench_dir()
    repo = where.parent
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / JSON_NAME
    if json_path.exists():
        json_path.unlink()  # never report a stale file as this run's

    if ops:
        known = available_ops(where)
        unknown = [op for op in ops if op not in known]
        if unknown:
            raise ValueError(f"no benchmark suite for op(s) {', '.join(map(repr, unknown))}; "
                             f"available: {', '.join(known) or '(none)'}")
        targets = [str(where / f"test_{op}.py") for op in ops]
    else:
        targets = [str(where)]

    env = dict(os.environ)
    if threads is not None:
        if int(threads) < 1:
            raise ValueError(f"threads must be a positive integer, got {threads}")
        env["HOTOPS_BENCH_THREADS"] = str(int(threads))
    if quick:
        env["HOTOPS_BENCH_QUICK"] = "1"
    env.setdefault("PYTHONUNBUFFERED", "1")
    cmd = [python or sys.executable, "-m", "pytest", *targets,
           f"--benchmark-json={json_path}", "--benchmark-sort=name",
           "--benchmark-columns=min,median,iqr,rounds,iterations",
           *map(str, extra_args)]
    print("hotops bench:", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, cwd=repo, env=env)
    if proc.returncode == 5:
        raise RuntimeError("hotops bench: no benchmark was selected (pytest exit code 5); "
                           f"pytest arguments: {list(extra_args)}")
    if not json_path.is_file():
        raise RuntimeError(f"hotops bench: pytest exited with code {proc.returncode} and wrote "
                           f"no results ({json_path}); see its output above")

    report = _load_report(where).write_report([json_path], out_dir, name=REPORT_NAME)
    print(f"hotops bench: results {json_path}", flush=True)
    print(f"hotops bench: report  {report['markdown']}", flush=True)
    for png in report["pngs"]:
        print(f"hotops bench: chart   {png}", flush=True)
    if proc.returncode != 0:
        print(f"hotops bench: pytest exited with code {proc.returncode} (some benchmarks "
              "failed); the report covers those that ran", file=sys.stderr, flush=True)
    return {"returncode": proc.returncode, "json": json_path, **report}


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``hotops bench``'s options to an argparse (sub)parser."""
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="output folder for bench.json, report.md and the PNGs "
                             "(default: the checkout's bench/results/local/, git-ignored)")
    parser.add_argument("--ops", nargs="+", metavar="OP", default=None,
                        help="only these ops' suites (bench/test_<OP>.py), e.g. channel_max")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: ~0.4 s of timing and 3 rounds per benchmark")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads (HOTOPS_BENCH_THREADS; default: 2)")
    parser.add_argument("pytest_args", nargs="*", metavar="PYTEST_ARG",
                        help="extra pytest arguments after `--`, e.g. `-- -k cuda`")
    return parser


def main(args=None) -> int:
    """Entry point for the subcommand: ``args`` is its argparse Namespace (or an argv list)."""
    if args is None or isinstance(args, (list, tuple)):
        parser = add_arguments(argparse.ArgumentParser(
            prog="hotops bench", description="Run hotops' benchmarks and write a report."))
        args = parser.parse_args(args)
    try:
        out = args.out if args.out is not None else bench_dir() / "results" / "local"
        result = run(out, ops=args.ops, quick=args.quick,
                     extra_args=tuple(getattr(args, "pytest_args", None) or ()),
                     threads=args.threads)
    except (RuntimeError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 1 if result["returncode"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
