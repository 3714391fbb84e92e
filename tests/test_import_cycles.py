"""No two modules of the package import each other, lazy imports inside functions included.

A lazy import hides a cycle, it does not remove it: what both modules need belongs
below both. This is the project's own before-stop check, run over all of ``src/lavt``.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _is_module(name: str) -> bool:
    path = SRC / name.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")


def _imports(path: Path, name: str) -> set[str]:
    """Package modules that ``path`` imports anywhere in its body (functions included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    deps: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            subs = [f"{base}.{alias.name}" for alias in node.names]
            real = [m for m in subs if _is_module(m)]
            deps |= set(real) if len(real) == len(subs) else {base}
        elif isinstance(node, ast.Import):
            deps |= {alias.name for alias in node.names}
    return deps


def import_graph() -> dict[str, set[str]]:
    files = sorted((SRC / "lavt").rglob("*.py"))
    return {_module_name(f): _imports(f, _module_name(f)) for f in files}


def mutual_imports(graph: dict[str, set[str]]) -> list[str]:
    return [
        f"{a} <-> {b}"
        for a, deps in sorted(graph.items())
        for b in sorted(deps)
        if a < b and b in graph and a in graph[b]
    ]


def test_graph_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    module = tmp_path / "x.py"
    module.write_text(
        "def f():\n    from lavt.data import refer\n    from .masks import segmentation_to_mask\n"
    )
    assert _imports(module, "lavt.data.x") == {"lavt.data.refer", "lavt.data.masks"}
    cycle = {"lavt.a": {"lavt.b"}, "lavt.b": {"lavt.a", "lavt.c"}, "lavt.c": set()}
    assert mutual_imports(cycle) == ["lavt.a <-> lavt.b"]


def test_no_module_pair_imports_each_other() -> None:
    graph = import_graph()
    assert "lavt.data.refer" in graph and "lavt.data.grefcoco" in graph
    assert mutual_imports(graph) == []
