"""hotops' benchmark suites, shipped with the package: ``hotops bench``.

Each ``test_<op>.py`` in this folder is a pytest-benchmark suite that times hotops' op and
the libraries people use today (scikit-learn, torch, SciPy, Pillow, memcnn, revlib,
Captum, OpenCV...) on the same inputs, one group per question; ``report.py`` turns the
JSON into markdown tables of ratios and PNG charts. :func:`run` starts pytest in a
subprocess (so that ``conftest.py`` pins the thread counts before numba and torch load),
then writes the report. It works from an installed wheel: nothing here needs a source
checkout (a row whose baseline lives in the checkout, such as the slow numpy reference of
``tests/reference.py``, skips with a reason). The baselines come with
``pip install hotops[bench]``.

This module imports neither torch nor numba.
"""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

__all__ = ["bench_dir", "available_ops", "run"]

JSON_NAME = "bench.json"
REPORT_NAME = "report"


def bench_dir() -> Path:
    """The folder of the suites (this package; ``HOTOPS_BENCH_DIR`` overrides it)."""
    override = os.environ.get("HOTOPS_BENCH_DIR")
    path = Path(override).resolve() if override else Path(__file__).resolve().parent
    if not (path / "conftest.py").is_file():
        raise RuntimeError(f"no benchmark suite at {path} (conftest.py is missing)")
    return path


def available_ops(where: Path | None = None) -> list[str]:
    """Op names with a suite: ``test_<op>.py``."""
    where = where or bench_dir()
    return sorted(p.stem.removeprefix("test_") for p in where.glob("test_*.py"))


def _missing_plugin() -> str | None:
    try:
        importlib.import_module("pytest_benchmark")
    except ImportError:
        return "pytest-benchmark is not installed: pip install 'hotops[bench]'"
    return None


def run(out_dir, ops=None, quick: bool = False, extra_args=(), *, threads: int | None = None,
        python: str | None = None) -> dict:
    """Run the benchmark suites and write the JSON, markdown report and PNGs to ``out_dir``.

    Parameters
    ----------
    out_dir : path
        Created if needed; receives ``bench.json``, ``report.md`` and ``bench-<op>.png``.
    ops : list of str, optional
        Op names (``test_<op>.py``); all suites when None.
    quick : bool
        Smoke run: about 0.4 s of timing and 3 rounds per benchmark (``HOTOPS_BENCH_QUICK``).
    extra_args : sequence of str
        More pytest arguments, e.g. ``("-k", "cuda")``.
    threads : int, optional
        ``HOTOPS_BENCH_THREADS`` for the run (default: the environment's, else 2).

    Returns
    -------
    dict with ``returncode`` (pytest's), ``json``, ``markdown`` and ``pngs`` (paths).

    Raises
    ------
    ValueError
        An unknown op name or a thread count below 1.
    RuntimeError
        pytest-benchmark missing, nothing selected, or no results written.
    """
    where = bench_dir()
    problem = _missing_plugin()
    if problem:
        raise RuntimeError(problem)
    out_dir = Path(out_dir).resolve()
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

    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / JSON_NAME
    if json_path.exists():
        json_path.unlink()  # never report a stale file as this run's
    # The package's own pytest.ini (markers, no -ra noise) whatever folder the user is in;
    # no cache folder, so a read-only install works.
    cmd = [python or sys.executable, "-m", "pytest", *targets, "-c", str(where / "pytest.ini"),
           "--rootdir", str(where), "-p", "no:cacheprovider",
           f"--benchmark-json={json_path}", "--benchmark-sort=name",
           "--benchmark-columns=min,median,iqr,rounds,iterations",
           *map(str, extra_args)]
    print("hotops bench:", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, cwd=out_dir, env=env)
    if proc.returncode == 5:
        raise RuntimeError("no benchmark was selected (pytest exit code 5); "
                           f"pytest arguments: {list(extra_args)}")
    if not json_path.is_file():
        raise RuntimeError(f"pytest exited with code {proc.returncode} and wrote no results "
                           f"({json_path}); see its output above")

    from .report import write_report

    report = write_report([json_path], out_dir, name=REPORT_NAME)
    print(f"hotops bench: results {json_path}", flush=True)
    print(f"hotops bench: report  {report['markdown']}", flush=True)
    for png in report["pngs"]:
        print(f"hotops bench: chart   {png}", flush=True)
    if proc.returncode != 0:
        print(f"hotops bench: pytest exited with code {proc.returncode} (some benchmarks "
              "failed); the report covers those that ran", file=sys.stderr, flush=True)
    return {"returncode": proc.returncode, "json": json_path, **report}
