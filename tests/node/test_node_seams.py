"""Seams of the node side, checked on the source (issue 15 item 6): the import graph has
none of the edges the review found, and the run directory's file names are spelled only
in ``tortie.rundir``.  Imports inside functions count: a lazy import is still an edge."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "tortie"

# Edges that must not exist: (importer, imported).
FORBIDDEN = [
    ("tortie.node.status", "tortie.node.agent"),  # status reads files, not the agent's code
    ("tortie.node.metrics", "tortie.node.status"),  # the BIRD parser is in birdctl
    ("tortie.node.birdctl", "tortie.node.status"),
    ("tortie.node.birdctl", "tortie.node.birdproc"),
    ("tortie.cli.node_routing_cmd", "tortie.cli.node_cmd"),
    ("tortie.cli.node_service_cmd", "tortie.cli.node_cmd"),
]
# Modules that may still spell a file name: rundir.py owns them; thin.py keeps its own
# copy so the plugin's start-up does not load os (tests/cni_service guards it).
SPELLERS = {"tortie.rundir", "tortie.cni.thin"}
# Paths that end like a run-directory file but are not in it.
NOT_RUN_DIR = {"/var/lib/calico/nodename"}  # Calico's CALICO_NODENAME_FILE default


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every tortie module ``name`` imports, anywhere in the file."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # from pkg import module
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def test_the_import_graph_has_none_of_the_forbidden_edges() -> None:
    edges = graph()
    bad = [(a, b) for a, b in FORBIDDEN if b in edges.get(a, set())]
    assert bad == [], f"forbidden imports: {bad}"
    assert edges["tortie.node.status"] >= {"tortie.node.birdctl", "tortie.rundir"}
    assert "tortie.node.birdctl" in edges["tortie.node.metrics"]


def test_no_two_node_command_modules_import_each_other() -> None:
    edges = graph()
    cli = [m for m in edges if m.startswith("tortie.cli.node_")]
    assert len(cli) >= 4
    mutual = [(a, b) for a in cli for b in cli if a < b and b in edges[a] and a in edges[b]]
    assert mutual == []


def layout() -> set[str]:
    """The file names ``RunDir`` hands out, read from its source."""
    names = set()
    for node in ast.walk(ast.parse((PACKAGE / "rundir.py").read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "_file"
        ):
            (arg,) = node.args
            assert isinstance(arg, ast.Constant) and isinstance(arg.value, str)
            names.add(arg.value)
    return names


def spells_a_file(text: str, names: set[str]) -> str | None:
    """The run-directory file ``text`` names as a path or a file name, if any.  Bare words
    that are also keys elsewhere (``"mtu"``, ``"nodename"``) count only after a ``/``."""
    for name in names:
        if text.endswith("/" + name) or ("." in name and text == name):
            return name
    return None


def test_spells_a_file_tells_paths_from_words() -> None:
    names = {"cni.sock", "nodename", "bird.pid"}
    assert spells_a_file("cni.sock", names) == "cni.sock"
    assert spells_a_file("/var/run/tortie/bird.pid", names) == "bird.pid"
    assert spells_a_file("/nodename", names) == "nodename"
    assert spells_a_file("nodename", names) is None  # a CNI configuration key
    assert spells_a_file("over ``cni.sock`` (wire.py)", names) is None  # prose


def test_run_directory_file_names_are_spelled_only_by_rundir() -> None:
    names = layout()
    assert {"cni.sock", "bird.ctl", "bird.pid", "bird.cfg", "agent.json", "agent.pid"} <= names
    found = []
    for name, path in modules().items():
        if name in SPELLERS:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                hit = spells_a_file(node.value, names)
                if hit is not None and node.value not in NOT_RUN_DIR:
                    found.append(f"{path.relative_to(SRC)}:{node.lineno} {hit!r}")
    assert found == [], "use tortie.rundir.RunDir instead:\n" + "\n".join(found)
