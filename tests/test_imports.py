"""The shape of the package: one package per part of the map, each importing only the
packages above it in the map's order (lazy imports inside functions included), no circle
between modules, and every module on its package's map."""

import ast
import re
from pathlib import Path

import kubenet

PACKAGE = Path(kubenet.__file__).parent
# The map's order: a package may import those before it, never one after.
ORDER = ["plumbing", "model", "store", "machine", "hostside", "prepare", "run", "reach", "snapshots", "hosts", "doctor", "lifecycle", "cli"]


def modules() -> dict[str, Path]:
    """Every module as `package.module`."""
    return {f"{path.parent.name}.{path.stem}": path for path in PACKAGE.glob("*/*.py") if path.stem != "__init__"}


def imports_of(path: Path) -> set[str]:
    """The kubenet modules (`package.module`) a module imports, at the top or inside a function."""
    own = path.parent.name
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = [own] if node.level == 1 else []
            dotted = base + (node.module.split(".") if node.module else [])
        elif (node.module or "").startswith("kubenet."):
            dotted = node.module.split(".")[1:]
        else:
            continue
        if len(dotted) >= 2:
            found.add(".".join(dotted[:2]))
        elif len(dotted) == 1:  # `from . import a` / `from ..package import a`: the names are modules
            found |= {f"{dotted[0]}.{alias.name}" for alias in node.names}
    return found & set(modules())


def graph() -> dict[str, set[str]]:
    return {name: imports_of(path) for name, path in modules().items()}


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


def test_the_packages_are_the_maps_parts_in_its_order_and_no_module_sits_at_the_root():
    assert sorted(path.name for path in PACKAGE.iterdir() if (path / "__init__.py").exists()) == sorted(ORDER)
    assert [path.name for path in PACKAGE.glob("*.py")] == ["__init__.py"]
    listed = re.findall(r"^  ([a-z]+) +\S", kubenet.__doc__, re.MULTILINE)
    assert listed == ORDER


def test_a_package_imports_only_the_packages_above_it():
    rank = {name: index for index, name in enumerate(ORDER)}
    upward = sorted(
        f"{module} -> {target}" for module, targets in graph().items() for target in targets
        if rank[target.split(".")[0]] > rank[module.split(".")[0]]
    )  # fmt: skip
    assert upward == []


def test_every_module_is_on_its_packages_map():
    missing = []
    for name in modules():
        package, module = name.split(".")
        doc = __import__(f"kubenet.{package}", fromlist=["_"]).__doc__ or ""
        if f"\n  {module} " not in doc:
            missing.append(name)
    assert missing == []
