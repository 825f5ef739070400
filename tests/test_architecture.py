"""The house's shape, checked over every `import` in the tree (function-level ones included), in
addition to import-linter's contracts (`make lint`): apps import one way and the kernel no app."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("buddy", "keys", "deployments", "gateway")
KERNEL = (
    "buddy.core",
    "buddy.http",
    "buddy.ops",
    "buddy.accounts",
    "buddy.webhooks",
    "buddy.usage",
)
# Who may import whom, app by app (the kernel is below every app; wiring is above everything).
ALLOWED = {
    "kernel": {"kernel"},
    "deployments": {"kernel", "deployments"},
    "usage": {"kernel", "deployments", "usage"},
    "keys": {"kernel", "deployments", "usage", "keys"},
    "gateway": {"kernel", "deployments", "usage", "keys", "gateway"},
    "wiring": {"kernel", "deployments", "usage", "keys", "gateway", "wiring"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _part(module: str) -> str | None:
    """The part of the house a module belongs to, or None when it is not buddy's."""
    if any(module == kernel or module.startswith(kernel + ".") for kernel in KERNEL):
        return "kernel"
    top = module.split(".")[0]
    if top == "buddy":
        return "wiring"
    return top if top in PACKAGES else None


def _imports(path: Path) -> Iterator[tuple[str, int, bool, str]]:
    """(imported module, line, at function level?, enclosing function) of every import."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = (
        _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    )

    def walk(node: ast.AST, function: str) -> Iterator[tuple[str, int, bool, str]]:
        for child in ast.iter_child_nodes(node):
            inner = (
                child.name
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
                else function
            )
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, child.lineno, bool(function), function
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in child.names:
                    yield (
                        f"{base}.{alias.name}" if _part(f"{base}.{alias.name}") else base,
                        child.lineno,
                        bool(function),
                        function,
                    )
            yield from walk(child, inner)

    yield from walk(tree, "")


def _source_files() -> list[Path]:
    return [
        path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if "migrations" not in path.parts
    ]


def test_every_import_runs_downward():
    wrong = []
    for path in _source_files():
        source = _part(_module_name(path))
        assert source is not None
        for module, line, _, _ in _imports(path):
            target = _part(module)
            if target is not None and target not in ALLOWED[source]:
                wrong.append(
                    f"{path.relative_to(ROOT)}:{line} ({source}) imports {module} ({target})"
                )
    assert wrong == []


def test_no_cycle_between_apps_counting_function_level_imports():
    edges: dict[str, set[str]] = {}
    for path in _source_files():
        source = _part(_module_name(path))
        for module, _, _, _ in _imports(path):
            target = _part(module)
            if target and target != source:
                edges.setdefault(source, set()).add(target)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(
            nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt}))
            for nxt in edges.get(start, ())
        )

    assert [part for part in edges if reaches(part, part, {part})] == []


def test_function_level_imports_of_buddys_modules_are_only_in_app_ready():
    """Django's `AppConfig.ready` is where an app registers its tasks, receivers and collectors;
    anywhere else a function-level import of buddy's own code would hide a dependency."""
    hidden = [
        f"{path.relative_to(ROOT)}:{line} imports {module} inside {function}()"
        for path in _source_files()
        for module, line, nested, function in _imports(path)
        if nested and _part(module) and not (path.name == "apps.py" and function == "ready")
    ]
    assert hidden == []


def test_the_check_sees_a_wrong_import(tmp_path, monkeypatch):
    """The walk is not vacuous: a kernel module importing an app is found."""
    bad = ROOT / "buddy" / "core" / "_arch_probe.py"
    bad.write_text("def f():\n    from keys import models\n")
    try:
        found = [m for m, _, nested, _ in _imports(bad) if nested]
        assert found == ["keys.models"]
        assert _part("keys.models") not in ALLOWED[_part(_module_name(bad))]
    finally:
        bad.unlink()
