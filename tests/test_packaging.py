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


@pytest.mark.slow
def test_wheel_contains_all_layers(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("hotops-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "hotops/__init__.py",
        "hotops/kernels/__init__.py",
        "hotops/kernels/channel_max/cpu.py",
        "hotops/kernels/channel_max/cuda.py",
        "hotops/bindings/channel_max.py",
    ):
        assert needed in names, needed
    for ckpt in (ROOT / "hotops" / "checkpoints").glob("*.pt"):
        assert f"hotops/checkpoints/{ckpt.name}" in names
    assert not any(n.startswith(("tests/", "bench/")) for n in names)


@pytest.mark.parametrize("module_name", ["hotops", "hotops.kernels", "hotops.bindings", "hotops.models"])
def test_every_public_name_resolves(module_name):
    """Every name in ``__all__`` imports (the lazy export tables point at real objects)."""
    import importlib

    mod = importlib.import_module(module_name)
    missing = [name for name in mod.__all__ if getattr(mod, name, None) is None]
    assert not missing, f"{module_name}.__all__ names that do not resolve: {missing}"
