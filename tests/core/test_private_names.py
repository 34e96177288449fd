"""No module of the package reaches into another module's private names (issue 15): an
underscore name is imported only inside its own module, and ``obj._name`` is used only on
``self``, ``cls`` or ``other`` in a comparison (the standard library's public underscore APIs excepted)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "tortie"
# Public APIs of the standard library that happen to start with an underscore.
STDLIB_PUBLIC = {"_replace", "_asdict", "_fields", "_make", "_exit", "_local"}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def offences(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tortie"):
            found += [f"imports {node.module}.{a.name}" for a in node.names if _private(a.name)]
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            if node.attr in STDLIB_PUBLIC:
                continue
            base = node.value
            if isinstance(base, ast.Name) and base.id in ("self", "cls", "other"):
                continue
            found.append(f"line {node.lineno}: .{node.attr}")
    return found


def test_no_module_uses_another_modules_private_names() -> None:
    bad = {str(p.relative_to(SRC)): o for p in sorted(SRC.rglob("*.py")) if (o := offences(p))}
    assert bad == {}, bad
