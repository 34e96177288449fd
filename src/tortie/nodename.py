"""Which node this is: Calico's order (calico-behaviour.md §10).

Standard library only: the CNI plugins import this module.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

DEFAULT_NODENAME_FILE = "/var/lib/calico/nodename"


def nodename_file(env: Mapping[str, str]) -> str:
    return env.get("CALICO_NODENAME_FILE") or DEFAULT_NODENAME_FILE


def read_nodename_file(path: str) -> str:
    """The name stored by an earlier startup, or "" when there is none."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except (FileNotFoundError, NotADirectoryError):
        return ""


def determine_node_name(env: Mapping[str, str]) -> tuple[str, str]:
    """(name, where it came from): NODENAME, the nodename file, HOSTNAME, the OS host name;
    lower-cased and trimmed as Calico does."""
    if env.get("NODENAME", "").strip():
        return env["NODENAME"].strip().lower(), "NODENAME"
    path = nodename_file(env)
    stored = read_nodename_file(path)
    if stored:
        return stored.lower(), f"nodename file {path}"
    if env.get("HOSTNAME", "").strip():
        return env["HOSTNAME"].strip().lower(), "HOSTNAME"
    return os.uname().nodename.strip().lower(), "the host name"


def write_nodename_file(path: str, name: str) -> None:
    """Store the name for the CNI plugins (atomically: they may read it at any time)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(name)
    os.replace(tmp, path)
