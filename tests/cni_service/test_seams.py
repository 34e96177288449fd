"""Seams of the node service, checked on the source: ``cni/``'s service modules do not
import ``node/``, and the CLI's node command modules do not import each other (only the
``node`` group registers its sub-command modules)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "tortie"
SERVICE_MODULES = ("service", "calls", "stores", "host", "wire", "thin", "edge", "pod_dataplane")
NODE_COMMANDS = ("node_cmd", "node_routing_cmd", "node_service_cmd", "node_common")


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_the_cni_service_does_not_import_the_node_agent() -> None:
    for name in SERVICE_MODULES:
        bad = {m for m in imports_of(SRC / "cni" / f"{name}.py") if m.startswith("tortie.node")}
        assert not bad, f"tortie.cni.{name} imports {bad}"


def test_no_cni_module_imports_the_node_package() -> None:
    """The plugins and the service reach the agent's side only through small values
    (``tortie.rundir``, ``tortie.nodename``) and callbacks, never ``tortie.node``."""
    for path in sorted((SRC / "cni").glob("*.py")):
        bad = {m for m in imports_of(path) if m.startswith("tortie.node.") or m == "tortie.node"}
        assert not bad, f"tortie.cni.{path.stem} imports {bad}"


def test_node_command_modules_do_not_import_each_other() -> None:
    graph = {
        name: {
            other
            for other in NODE_COMMANDS
            if other != name
            and any(m.endswith(f"cli.{other}") for m in imports_of(SRC / "cli" / f"{name}.py"))
        }
        for name in NODE_COMMANDS
    }
    assert graph["node_common"] == set()
    assert graph["node_routing_cmd"] == {"node_common"}
    assert graph["node_service_cmd"] == {"node_common"}
    assert graph["node_cmd"] == {"node_common", "node_routing_cmd", "node_service_cmd"}


def test_no_run_directory_literals_in_the_service_and_the_cli() -> None:
    for path in [*(SRC / "cni").glob("*.py"), *(SRC / "cli").glob("*.py")]:
        text = path.read_text()
        assert "/var/run/tortie/cni.sock" not in text, path
        assert '"cni.sock"' not in text or path.name == "thin.py", path  # thin: see its test
