"""The package's import graph points one way: no cycles, and the library never imports the CLI.

The graph is read from the source (every ``import`` statement, including those inside functions, which
are cycles waiting for the first module-level import), then every module is imported for real.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "backend" / "faceforge"


def is_cli(module: str) -> bool:
    """The command line (the ``faceforge.cli`` package) and its entry point ``faceforge.__main__``."""
    return module in ("faceforge.cli", "faceforge.__main__") or module.startswith("faceforge.cli.")


def _modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Module name -> file, for every ``.py`` file under ``package``."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (a name resolves to its longest module prefix)."""
    modules = _modules(package)
    root = package.name
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".")
                    anchor = anchor[: len(anchor) - node.level + (path.name == "__init__.py")]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                names = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in names:
                if target.split(".")[0] != root:
                    continue
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    targets.add(target)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_graph_reader_finds_a_cycle_and_a_cli_import(tmp_path):
    """The checks below can fail: a package made to have both faults is caught."""
    pkg = tmp_path / "faceforge"
    (pkg / "model").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "cli.py").write_text("from faceforge.model.a import f\n")
    (pkg / "model" / "__init__.py").write_text("")
    (pkg / "model" / "a.py").write_text("def f():\n    from faceforge.model import b\n")
    (pkg / "model" / "b.py").write_text("from .a import f\nfrom faceforge import cli\n")
    graph = import_graph(pkg)
    assert graph["faceforge.model.b"] == {"faceforge", "faceforge.model.a", "faceforge.cli"}
    assert cycles(graph) == [["faceforge.cli", "faceforge.model.a", "faceforge.model.b"]]


def test_no_import_cycles_in_the_package():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_library_never_imports_the_command_line():
    graph = import_graph()
    assert "faceforge.cli" in graph and not is_cli("faceforge.client")
    offenders = sorted(m for m, targets in graph.items() if not is_cli(m) and any(map(is_cli, targets)))
    assert not offenders, f"library modules importing the CLI: {offenders}"


def test_every_module_imports_on_its_own():
    """Each module imported first in a fresh interpreter (an import-order cycle shows up only then)."""
    names = sorted(m for m in _modules() if m != "faceforge.__main__")  # that one runs the CLI
    code = (
        "import importlib, sys\n"
        "bad = []\n"
        f"for name in {names!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'faceforge' or m.startswith('faceforge.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as error:\n"
        "        bad.append(f'{name}: {type(error).__name__}: {error}')\n"
        "print('\\n'.join(bad))\n"
        "sys.exit(1 if bad else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]


def test_python_dash_m_faceforge_starts():
    done = subprocess.run(
        [sys.executable, "-m", "faceforge", "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "simulate" in done.stdout, done.stderr


@pytest.mark.parametrize("name", ["faceforge.store", "faceforge.device"])
def test_the_policy_modules_import_nothing_heavy(name):
    """The store and the device policy are asked by the CLI before any work: they stay cheap."""
    code = f"import sys, importlib; importlib.import_module({name!r}); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr
    assert importlib.util.find_spec(name) is not None


def test_the_material_cache_key_hashes_every_module_that_builds_a_material_space():
    """An edit to any physics module the build reaches must invalidate cached material spaces."""
    from faceforge.physics.material_cache import _BUILDER_MODULES, _HEAD_MODULES

    graph = import_graph()
    reached, todo = set(), ["faceforge.physics.material", "faceforge.physics.material_cache"]
    while todo:
        module = todo.pop()
        if module in reached or not module.startswith(("faceforge.physics.", "faceforge.heads.")):
            continue
        reached.add(module)
        todo.extend(graph[module])
    hashed = {"physics": _BUILDER_MODULES, "heads": _HEAD_MODULES}
    missing = sorted(m for m in reached if m.split(".")[2] not in hashed[m.split(".")[1]])
    assert {"material", "mouth", "contact"} <= {m.rpartition(".")[2] for m in reached}
    assert "faceforge.heads.parts" in reached  # the head's own teeth
    assert not missing, f"modules the material build imports but its cache key ignores: {missing}"
