"""The rule of the layers (docs/DESIGN.md), checked on the source by an AST scan.

    kernels <- bindings <- surface <- apps <- demo, bench <- cli

A module may import its own layer and the layers below it, never one above; ``demo`` and
``bench`` sit side by side and do not import each other. Every import counts, also the
ones inside functions (lazy imports are how circles hid before), and so do
``importlib.import_module("literal")`` calls. No import circle anywhere: the graph of
modules, with an edge for every explicit import, has no cycle.
"""
from __future__ import annotations

import ast
import pathlib
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]

#: layer of a module: the first prefix that matches (longest prefixes first)
LAYERS = {
    "hotops.kernels": 0,
    "hotops.bindings": 1,
    "hotops.apps": 3,
    "hotops.demo": 4,
    "hotops.bench": 4,
    "hotops.cli": 5,
    "hotops.__main__": 5,
    "hotops": 2,  # the library surface: hotops/*.py, hotops.models, hotops.data, ...
}
#: same-layer neighbours that must not import each other
SEPARATE = {("hotops.demo", "hotops.bench"), ("hotops.bench", "hotops.demo")}


def _package_dirs() -> dict[str, pathlib.Path]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {name: ROOT / folder for name, folder in config["tool"]["setuptools"]["package-dir"].items()}


def _modules() -> dict[str, pathlib.Path]:
    """Every module of the package: dotted name -> file (packages as their __init__)."""
    mods: dict[str, pathlib.Path] = {}
    for prefix, folder in _package_dirs().items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if any(p.startswith(".") for p in parts):
                continue
            name = ".".join([prefix, *parts])
            # a sub-package mapped to its own folder wins over the same path seen from above
            if name not in mods or prefix.count(".") > 0:
                mods[name] = path
    return mods


MODULES = _modules()


def _group(name: str) -> str:
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if name == prefix or name.startswith(prefix + "."):
            return prefix
    raise AssertionError(f"module {name} is in no layer")


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _resolve(importer: str, level: int, module: str | None) -> str:
    if level == 0:
        return module or ""
    base = importer.split(".")
    if not _is_package(importer):
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _targets(importer: str, tree: ast.AST):
    """(line, imported hotops module) for every import in the tree, at any depth."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(importer, node.level, node.module)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield node.lineno, sub if sub in MODULES else base
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            yield node.lineno, node.args[0].value


def _edges() -> dict[str, set[tuple[int, str]]]:
    edges: dict[str, set[tuple[int, str]]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        found = set()
        for line, target in _targets(name, tree):
            while target and target not in MODULES and "." in target:
                target = target.rsplit(".", 1)[0]  # `import hotops.x.y` of a non-module attribute
            if target in MODULES and target != name:
                found.add((line, target))
        edges[name] = found
    return edges


EDGES = _edges()


def test_every_module_is_scanned():
    assert "hotops.kernels.topk_threshold" in MODULES and "hotops.cli" in MODULES
    assert len(MODULES) > 50


def test_no_import_points_up_the_layers():
    bad = []
    for name, targets in EDGES.items():
        g = _group(name)
        for line, target in sorted(targets):
            h = _group(target)
            if LAYERS[h] > LAYERS[g] or (g, h) in SEPARATE:
                bad.append(f"{MODULES[name].relative_to(ROOT)}:{line}: {name} ({g}) imports {target} ({h})")
    assert not bad, "imports against kernels <- bindings <- surface <- apps <- demo/bench <- cli:\n" + "\n".join(bad)


def test_no_import_cycles():
    # Tarjan's strongly connected components over the explicit imports
    graph = {n: sorted({t for _, t in ts}) for n, ts in EDGES.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []
    counter = [0]

    def visit(v):
        work = [(v, iter(graph[v]))]
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        while work:
            node, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(graph[w])))
                    break
                if w in on_stack:
                    low[node] = min(low[node], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == node:
                            break
                    if len(comp) > 1:
                        cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_kernels_never_import_torch():
    bad = []
    for name, path in MODULES.items():
        if _group(name) != "hotops.kernels":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods = [node.module]
            bad += [f"{path.relative_to(ROOT)}:{node.lineno}" for m in mods if m.split(".")[0] == "torch"]
    assert not bad, f"the kernel layer imports torch: {bad}"


def test_library_never_mentions_the_cli():
    """Library layers raise ValueError/TypeError; only the CLI knows UsageError."""
    bad = [str(path.relative_to(ROOT)) for name, path in MODULES.items()
           if LAYERS[_group(name)] < LAYERS["hotops.cli"] and "UsageError" in path.read_text()]
    assert not bad, f"library modules that use the CLI's UsageError: {bad}"
