"""The shape of the package: its modules import one another without a circle, lazy imports
inside functions included, and every module is on the map in kubenet/__init__.py."""

import ast
from pathlib import Path

import kubenet

PACKAGE = Path(kubenet.__file__).parent


def imports_of(path: Path) -> set[str]:
    """The kubenet modules a module imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module.split(".")[0]} if node.module else {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kubenet."):
            found.add(node.module.split(".")[1])
    return found


def graph() -> dict[str, set[str]]:
    modules = {path.stem: path for path in PACKAGE.glob("*.py") if path.stem != "__init__"}
    return {name: imports_of(path) & set(modules) for name, path in modules.items()}


def circle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle, as the modules along it, or None."""
    done, path = set(), []

    def visit(name: str) -> list[str] | None:
        if name in path:
            return path[path.index(name):] + [name]
        if name in done:
            return None
        path.append(name)
        for other in sorted(edges[name]):
            found = visit(other)
            if found:
                return found
        path.pop()
        done.add(name)
        return None

    for name in sorted(edges):
        found = visit(name)
        if found:
            return found
    return None


def test_the_circle_finder_finds_a_circle():
    assert circle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert circle({"a": {"b"}, "b": set()}) is None


def test_no_module_imports_itself_back_through_others():
    assert circle(graph()) is None, " -> ".join(circle(graph()))


def test_every_module_is_on_the_map():
    names = {path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__"}
    text = kubenet.__doc__
    missing = sorted(name for name in names if f"\n  {name} " not in text)
    assert missing == []
