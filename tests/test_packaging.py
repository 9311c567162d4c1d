"""Packaging: every sub-package is in the wheel; editable and wheel installs both work."""
from __future__ import annotations

import pathlib
import subprocess
import sys
import tomllib
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAYERS = {"hotops": ROOT / "hotops", "hotops.kernels": ROOT / "kernels", "hotops.bindings": ROOT / "bindings"}


def _declared():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return config["tool"]["setuptools"]["packages"], config["tool"]["setuptools"]["package-dir"]


def test_layer_mapping_matches_design():
    _, package_dir = _declared()
    assert package_dir == {"hotops": "hotops", "hotops.kernels": "kernels", "hotops.bindings": "bindings"}


def test_every_subpackage_is_declared():
    packages, _ = _declared()
    found = set()
    for prefix, folder in LAYERS.items():
        for init in folder.rglob("__init__.py"):
            rel = init.parent.relative_to(folder)
            found.add(".".join([prefix, *rel.parts]) if rel.parts else prefix)
    missing = found - set(packages)
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"


def _source_modules():
    """Every .py file of the package as its path inside the wheel."""
    _, package_dir = _declared()
    names = set()
    for prefix, folder in package_dir.items():
        for path in (ROOT / folder).rglob("*.py"):
            if "__pycache__" in path.parts:
                continue
            names.add("/".join([*prefix.split("."), *path.relative_to(ROOT / folder).parts]))
    return names


def _clean_copy(dest: pathlib.Path) -> pathlib.Path:
    """The checkout's files (tracked and untracked-but-not-ignored) copied to ``dest``: a
    wheel built there holds nothing from an earlier build's ``build/`` folder."""
    import shutil

    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    src = _clean_copy(tmp_path_factory.mktemp("src"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)],
        check=True,
        capture_output=True,
    )
    (whl,) = out.glob("hotops-*.whl")
    return whl


@pytest.mark.slow
def test_wheel_contains_every_module(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = _source_modules()
    missing = sorted(modules - names)
    assert not missing, f"modules missing from the wheel: {missing}"
    extra = sorted(n for n in names if n.endswith(".py") and n not in modules)
    assert not extra, f"modules in the wheel that the source tree does not have: {extra}"
    for needed in ("hotops/bench/pytest.ini", "hotops/bench/conftest.py", "hotops/py.typed"):
        assert needed in names, needed
    for ckpt in (ROOT / "hotops" / "checkpoints").glob("*.pt"):
        assert f"hotops/checkpoints/{ckpt.name}" in names
    assert not any(n.startswith(("tests/", "bench/", "docs/")) for n in names)


@pytest.mark.slow
def test_bench_runs_from_a_wheel_outside_the_source_tree(wheel, tmp_path):
    """A fresh virtual environment with only the wheel installed (its dependencies are this
    environment's, seen through a .pth line, which does not run this checkout's editable
    install): ``hotops bench --help`` and a small ``hotops bench`` run work there."""
    import sysconfig
    import venv

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    (pathlib.Path(site) / "_parent_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True)
    work = tmp_path / "elsewhere"
    work.mkdir()

    def run(*args, timeout=600):
        return subprocess.run(list(args), cwd=work, capture_output=True, text=True, timeout=timeout)

    where = run(str(py), "-c", "import hotops, hotops.kernels, hotops.bench; "
                               "print(hotops.__file__); print(hotops.kernels.__file__); print(hotops.bench.__file__)")
    assert where.returncode == 0, where.stderr
    assert all(line.startswith(site) for line in where.stdout.split()), where.stdout
    helped = run(str(env_dir / "bin" / "hotops"), "bench", "--help")
    assert helped.returncode == 0 and "--ops" in helped.stdout, helped.stderr
    out = tmp_path / "bench-out"
    ran = run(str(env_dir / "bin" / "hotops"), "bench", "--ops", "clip", "--quick", "--out", str(out),
              "--", "-k", "cpu and (hotops or torch_loop)")
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    report = (out / "report.md").read_text()
    assert "hotops" in report and "torch_loop" in report
    assert not list(work.iterdir()), "hotops bench wrote into the current folder"


@pytest.mark.parametrize("module_name", ["hotops", "hotops.kernels", "hotops.bindings", "hotops.models",
                                         "hotops.demo", "hotops.cli"])
def test_every_public_name_resolves(module_name):
    """Every name in ``__all__`` imports (the lazy export tables point at real objects)."""
    import importlib

    mod = importlib.import_module(module_name)
    missing = [name for name in mod.__all__ if getattr(mod, name, None) is None]
    assert not missing, f"{module_name}.__all__ names that do not resolve: {missing}"
