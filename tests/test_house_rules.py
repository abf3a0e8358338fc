"""House rules of the code base (STYLE.md), checked on the source text: no import cycles between modules, Lava
imported only under runtime/lava/, the simulator and the compiler never import the CLI, modules of a readable size.

Imports inside functions (deferred for start-up time) count too: a cycle through a deferred import is still two
modules that each need the other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"spikestack": "spikestack", "compiler": "spikestack.compiler", "runtime": "spikestack.runtime",
            "simulators": "spikestack.simulators", "models": "spikestack.models"}
MAX_MODULE_LINES = 400


def _modules() -> dict[str, Path]:
    out = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([package, *parts])] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def _graph() -> nx.DiGraph:
    modules = _modules()
    g = nx.DiGraph()
    for name, path in modules.items():
        g.add_node(name)
        for dep in _imports(name, path, set(modules)):
            g.add_edge(name, dep)
    return g


def test_no_import_cycles():
    g = _graph()
    # a package's __init__ importing its own submodules is how packages expose names, not a cycle of design
    g.remove_edges_from([(a, b) for a, b in g.edges if b.startswith(a + ".")])
    cycles = [c for c in nx.simple_cycles(g)]
    assert not cycles, "import cycles: " + "; ".join(" → ".join(c + [c[0]]) for c in cycles[:10])


def test_lava_only_under_runtime_lava():
    offenders = []
    for name, path in _modules().items():
        if name.startswith("spikestack.runtime.lava"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            if any(m == "lava" or m.startswith("lava.") for m in mods):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, f"Lava imported outside runtime/lava/: {offenders}"


def test_library_never_imports_the_cli():
    offenders = []
    for name, path in _modules().items():
        if name.startswith("spikestack.") and name.split(".")[1] in ("compiler", "runtime", "simulators", "models"):
            text = path.read_text()
            if "spikestack.cli" in text or "spikestack import cli" in text or "hybrid_cli" in text:
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"library modules importing the CLI: {offenders}"


def test_modules_are_readable_in_one_sitting():
    long = {str(p.relative_to(ROOT)): n for p in _modules().values()
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_every_subpackage_is_installed():
    """pyproject lists packages one by one (the folders map onto `spikestack.*`); a folder missing from the list
    works in the editable checkout and is absent from a built wheel."""
    import tomli

    config = tomli.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    found = set()
    for folder, package in PACKAGES.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((package, *rel)))
    assert found - listed == set(), f"add to pyproject [tool.setuptools] packages: {sorted(found - listed)}"
