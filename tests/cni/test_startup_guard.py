"""The in-process fallback's start-up, guarded by tests rather than convention (issue 15
item 7; numbers and the decision in docs/design/plugin-start-up.md).

Without a node service the plugin is a Python process per call, started the way the
compiled client and the launchers start it (``python -I -S``).  What it imports is most
of its cost, so the set is pinned: a standard-library module that is not in ``ALLOWED``
fails the test (measure it and add it, or keep it off the path), and the start-up bends
that measurably pay — no ``typing`` (+10 % instructions on an ADD), no ``dataclasses``
(+35 %), no ``threading`` (+4 %), no ``inspect`` — are asserted, not hoped for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cni_helpers import add_pool, netconf

from tortie.datastore.sqlite import SqliteDatastore

SRC = str(Path(__file__).resolve().parents[2] / "src")
# Measured bends: importing any of these on the fallback path costs what the note says.
NEVER = ("typing", "dataclasses", "threading", "inspect", "logging", "subprocess", "argparse")
# Standard-library modules the fallback IPAM ADD (SQLite) imports today, interpreter's own
# start-up included.
ALLOWED = {
    "__future__", "__main__", "_abc", "_codecs", "_collections", "_collections_abc",
    "_datetime", "_frozen_importlib", "_frozen_importlib_external", "_functools", "_imp",
    "_io", "_json", "_operator", "_signal", "_sqlite3", "_sre", "_stat", "_string",
    "_thread", "_warnings", "_weakref", "abc", "builtins", "codecs", "collections",
    "collections.abc", "contextlib", "copyreg", "datetime", "encodings",
    "encodings.aliases", "encodings.utf_8", "enum", "functools", "genericpath", "io",
    "ipaddress", "itertools", "json", "json.decoder", "json.encoder", "json.scanner",
    "keyword", "marshal", "math", "operator", "os", "os.path", "posix", "posixpath", "re",
    "re._casefix", "re._compiler", "re._constants", "re._parser", "reprlib", "sqlite3",
    "sqlite3.dbapi2", "stat", "string", "sys", "time", "types", "zipimport",
    # imported on some machines by the interpreter's own start-up or by later block claims
    "_locale", "hashlib", "_hashlib", "_blake2", "random", "_random", "bisect", "_bisect",
    "_sha512", "warnings", "errno", "_heapq", "heapq",
}  # fmt: skip
TORTIE_CEILING = 50  # tortie modules on the path today: 41


def fallback_modules(tmp_path: Path, command: str = "ADD") -> list[str]:
    db = str(tmp_path / "t.db")
    store = SqliteDatastore(db)
    add_pool(store, "p4", "10.81.0.0/16")
    add_pool(store, "p6", "fd00:81::/112")
    store.close()
    conf = netconf(sqlite_path=db, ipam={"assign_ipv6": "true"})
    code = (
        f"import sys; sys.path.insert(0, {SRC!r})\n"
        "from tortie.cni.ipam_main import main\n"
        "rc = main()\n"
        "import json; print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
        "sys.exit(rc)\n"
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "guard",
        "CNI_NETNS": "/var/run/netns/x",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/usr/lib/cni",
        "TORTIE_CNI_SOCKET": "none",
    }
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code],
        input=json.dumps(conf),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '"ips"' in proc.stdout, proc.stdout
    found: list[str] = json.loads(proc.stderr.strip().splitlines()[-1])
    return found


def test_fallback_add_keeps_the_measured_bends(tmp_path: Path) -> None:
    mods = fallback_modules(tmp_path)
    assert [m for m in mods if m.split(".")[0] in NEVER] == []


def test_fallback_add_imports_only_the_pinned_standard_library(tmp_path: Path) -> None:
    mods = fallback_modules(tmp_path)
    new = sorted(m for m in mods if not m.startswith("tortie") and m not in ALLOWED)
    assert new == [], (
        f"the in-process plugin now imports {new}: measure the cost (callgrind instruction "
        "count of an ADD, docs/design/plugin-start-up.md) and add them to ALLOWED, or keep "
        "them off the plugin path"
    )
    ours = [m for m in mods if m.startswith("tortie")]
    assert len(ours) <= TORTIE_CEILING, ours
