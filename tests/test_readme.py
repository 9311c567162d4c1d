"""The README's examples run as written (they are a newcomer's first contact)."""
from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_begins_with_the_two_commands():
    first = _blocks("bash")[0].strip().splitlines()
    assert len(first) == 2
    assert first[0].endswith("pip install -e . && hotops demo --out demo-out")
    assert first[1].endswith("pip install -e '.[test]' && python -m pytest")


@pytest.mark.slow
def test_python_examples_run(tmp_path):
    (code,) = _blocks("python")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]


def test_every_command_the_readme_shows_exists():
    from hotops.cli import COMMANDS

    shown = {m.group(1) for block in _blocks("bash") for m in re.finditer(r"^hotops ([a-z-]+)", block, flags=re.M)}
    assert shown and shown <= set(COMMANDS), shown - set(COMMANDS)
