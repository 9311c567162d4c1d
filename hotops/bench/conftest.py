"""Shared set-up for hotops' pytest-benchmark suites (``hotops bench``).

What every benchmark run gets from here:

* Threads are pinned *before* numba or torch is imported: ``OMP_NUM_THREADS``,
  ``NUMBA_NUM_THREADS``, ``MKL_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS`` are set from
  ``HOTOPS_BENCH_THREADS`` (default 2), then ``torch.set_num_threads`` and
  ``numba.set_num_threads`` agree with them. The count is printed in the pytest header.
* Each result's ``extra_info`` records the machine (platform, CPU model, cores), the
  versions (python, numpy, numba, torch, scipy, hotops), numba's threading layer and thread
  count, and the device ("cpu" or the CUDA GPU's name); ``machine_info`` gets the same
  under the key ``"hotops"``.
* Fixtures for writing a suite (see bench/README.md in the repository):

  ``device``   parametrised over "cpu" and "cuda"; the CUDA variant skips with a reason
               when ``torch.cuda.is_available()`` is false.
  ``tensors``  a module-wide cache of random inputs, so the variants of one group time
               the very same tensor and big inputs are drawn once.
  ``bench``    ``bench(fn, *args, op=..., impl=..., group=..., device=..., baseline=...)``:
               warms ``fn`` up (Numba compiles lazily), synchronises CUDA inside the timed
               function, picks rounds to fit a per-benchmark time budget, and fills
               ``extra_info`` (``op``, ``impl``, ``baseline``, ``bytes``) for hotops/bench/report.py.

Environment knobs: ``HOTOPS_BENCH_THREADS`` (threads, default 2), ``HOTOPS_BENCH_BUDGET``
(seconds of timing per benchmark, default 2.0), ``HOTOPS_BENCH_QUICK=1`` (budget 0.4 s and
3 rounds minimum: a smoke run).
"""
from __future__ import annotations

import os

# -- 1. pin threads before anything imports numba, torch, numpy's BLAS ------------------
THREADS = int(os.environ.get("HOTOPS_BENCH_THREADS", "2") or 2)
if THREADS < 1:
    raise ValueError(f"HOTOPS_BENCH_THREADS must be a positive integer, got {THREADS}")
for _var in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = str(THREADS)

import functools  # noqa: E402
import importlib.metadata  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numba  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(THREADS)
# numba reads NUMBA_NUM_THREADS at import; if something imported it earlier with more
# threads, cap the pool's active threads instead (it cannot grow past its launch size).
numba.set_num_threads(min(THREADS, numba.config.NUMBA_NUM_THREADS))

QUICK = os.environ.get("HOTOPS_BENCH_QUICK", "0") not in ("", "0")
BUDGET_S = float(os.environ.get("HOTOPS_BENCH_BUDGET", "0.4" if QUICK else "2.0"))
MIN_ROUNDS = 3 if QUICK else 5
MAX_ROUNDS = 10_000
MIN_ROUND_S = 1e-3  # calls faster than this are repeated inside one round (timer noise)

CUDA_SKIP_REASON = "CUDA variant: torch.cuda.is_available() is false on this machine"


# -- 2. what the results record -------------------------------------------------------
def _cpu_model() -> str:
    from hotops.environment import cpu_name  # one reader of /proc/cpuinfo for the CLI, demo and benches

    return cpu_name()


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=None)
def machine() -> dict:
    """Platform, CPU model and core count (logical CPUs usable by this process)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count()
    return {
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cores": usable,
        "summary": f"{_cpu_model()} ({usable} cores)",
    }


@functools.lru_cache(maxsize=None)
def versions() -> dict:
    out = {"python": platform.python_version()}
    for dist in ("numpy", "numba", "torch", "scipy", "hotops"):
        out[dist] = _version(dist)
    if torch.cuda.is_available():
        out["cuda"] = torch.version.cuda
        for dist in ("cupy-cuda12x", "cupy-cuda13x", "numba-cuda"):
            if _version(dist):
                out[dist] = _version(dist)
    return out


def numba_threading() -> dict:
    """numba's threading layer is only known once a parallel kernel has run."""
    try:
        layer = numba.threading_layer()
    except ValueError:
        layer = f"not yet initialised (config: {numba.config.THREADING_LAYER})"
    return {"numba_threading_layer": layer, "numba_threads": numba.get_num_threads()}


@functools.lru_cache(maxsize=None)
def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return "cpu"


def pytest_report_header(config):
    return [
        f"hotops bench: {THREADS} threads (HOTOPS_BENCH_THREADS; torch {torch.get_num_threads()}, "
        f"numba {numba.get_num_threads()}), budget {BUDGET_S:g} s/benchmark"
        f"{', QUICK' if QUICK else ''}",
        f"hotops bench: {machine()['summary']}; CUDA: "
        + (device_name("cuda") if torch.cuda.is_available() else "not available"),
    ]


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["hotops"] = {
        "machine": machine(),
        "versions": versions(),
        "threads": THREADS,
        **numba_threading(),
        "torch_threads": torch.get_num_threads(),
        "gpu": device_name("cuda") if torch.cuda.is_available() else None,
        "argv": sys.argv[1:],
    }


@pytest.fixture(autouse=True)
def _hotops_extra_info(request):
    """Stamp every benchmark with where and how it ran (read by hotops/bench/report.py)."""
    if "benchmark" not in request.fixturenames:
        yield
        return
    benchmark = request.getfixturevalue("benchmark")
    callspec = getattr(request.node, "callspec", None)
    device = callspec.params.get("device", "cpu") if callspec is not None else "cpu"
    info = benchmark.extra_info
    info.setdefault("device", device_name(str(device)))
    info.update(machine=machine()["summary"], platform=machine()["platform"],
                threads=THREADS, versions=versions())
    yield
    # after the test: numba's threading layer is known once its first parallel kernel ran
    info.update(numba_threading())


# -- 3. fixtures for writing suites ---------------------------------------------------
def device_params(*devices: str):
    """``pytest.param`` per device, CUDA ones marked to skip without a GPU.

    Use as ``@pytest.mark.parametrize("device", device_params())`` where the ``device``
    fixture does not fit (e.g. a CPU-only baseline).
    """
    params = []
    for dev in devices or ("cpu", "cuda"):
        marks = ()
        if dev.startswith("cuda"):
            marks = (pytest.mark.skipif(not torch.cuda.is_available(), reason=CUDA_SKIP_REASON),)
        params.append(pytest.param(dev, id=dev, marks=marks))
    return params


@pytest.fixture(params=device_params())
def device(request) -> str:
    """``"cpu"`` or ``"cuda"``; the CUDA variant skips when no GPU is usable."""
    return request.param


def synchronizer(device: str):
    """A no-argument callable that waits for ``device``'s queued work (no-op on CPU)."""
    if str(device).startswith("cuda"):
        dev = torch.device(device)
        return lambda: torch.cuda.synchronize(dev)
    return lambda: None


@pytest.fixture(scope="module")
def tensors():
    """``tensors(shape, dtype=torch.float32, device="cpu", seed=0, kind="randn")``.

    Cached for the module, so every variant of a group reads the same input and big inputs
    are drawn once. ``kind`` is ``"randn"`` (standard normal) or ``"rand"`` (uniform [0, 1)).
    """
    cache: dict = {}

    def get(shape, dtype=torch.float32, device="cpu", seed=0, kind="randn"):
        key = (tuple(shape), dtype, str(device), seed, kind)
        if key not in cache:
            gen = torch.Generator(device="cpu").manual_seed(seed)
            draw = {"randn": torch.randn, "rand": torch.rand}[kind]
            # drawn on the CPU in float32 so that the values do not depend on the device
            x = draw(tuple(shape), generator=gen, dtype=torch.float32).to(dtype)
            cache[key] = x.to(device)
            synchronizer(device)()
        return cache[key]

    yield get
    cache.clear()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@pytest.fixture
def bench(benchmark):
    """Time one implementation of one group; returns the function's last result.

    ``bench(fn, *args, op, impl, group, device="cpu", baseline=False, bytes=None, **info)``

    * ``op``: the op's name (one PNG per op); ``impl``: the implementation's stable name
      (a table row); ``group``: the question, identical for the variants compared.
    * ``baseline=True`` marks a row that the others are compared with (report.py prints
      "baseline / impl" ratios).
    * ``bytes``: the memory traffic the job needs at minimum (reported as GB/s).
    * ``fn(*args)`` is called twice untimed (compilation, caches), then timed with
      ``torch.cuda.synchronize`` inside the timed function on CUDA. Rounds are chosen so
      that timing takes about ``HOTOPS_BENCH_BUDGET`` seconds (at least 5 rounds).
    """

    def run(fn, *args, op: str, impl: str, group: str, device: str = "cpu",
            baseline: bool = False, bytes: int | None = None, **info):
        benchmark.group = group
        benchmark.extra_info.update(op=op, impl=impl, baseline=bool(baseline),
                                    device=device_name(str(device)), **info)
        if bytes is not None:
            benchmark.extra_info["bytes"] = int(bytes)
        sync = synchronizer(device)

        def timed():
            result = fn(*args)
            sync()
            return result

        timed()  # compile / first-touch / allocator warm-up
        t0 = time.perf_counter()
        timed()
        once = max(time.perf_counter() - t0, 1e-9)
        iterations = max(1, math.ceil(MIN_ROUND_S / once))
        rounds = int(BUDGET_S / (once * iterations))
        rounds = min(MAX_ROUNDS, max(MIN_ROUNDS, rounds))
        return benchmark.pedantic(timed, rounds=rounds, iterations=iterations, warmup_rounds=1)

    return run
