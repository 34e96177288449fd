"""Helpers shared by the CLI tests (pool documents, the in-process runner)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tortie.cli.main import main

# calico.yaml in /work/shared/reference/calico-manifests holds only the IPPool CRD, no
# IPPool object; this is the pool Calico's manifests and docs create by default.
STOCK_POOL = """\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: default-ipv4-ippool
spec:
  cidr: 192.168.0.0/16
  ipipMode: Always
  natOutgoing: true
  nodeSelector: all()
  blockSize: 26
"""


def pool_yaml(name: str, cidr: str, **spec: Any) -> str:
    """One IPPool as a YAML document (spec values written as JSON, which YAML reads)."""
    extra = "".join(f"  {k}: {json.dumps(v)}\n" for k, v in spec.items())
    return (
        "apiVersion: projectcalico.org/v3\nkind: IPPool\n"
        f"metadata:\n  name: {name}\nspec:\n  cidr: {json.dumps(cidr)}\n{extra}"
    )


def pool_doc(name: str, cidr: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": name},
        "spec": {"cidr": cidr, **spec},
    }


def wep_yaml(name: str, node: str, pod: str, addresses: list[str]) -> str:
    nets = ", ".join(json.dumps(a) for a in addresses)
    return (
        "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\n"
        f"metadata:\n  name: {name}\n  namespace: default\n"
        f"spec:\n  node: {node}\n  orchestrator: k8s\n  pod: {pod}\n  endpoint: eth0\n"
        f"  interfaceName: cali{pod[:8]}\n  ipNetworks: [{nets}]\n"
    )


@dataclass
class Result:
    rc: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def ok(self) -> Result:
        assert self.rc == 0, f"exit {self.rc}: {self.err}"
        assert self.err == "", self.err
        return self

    def found(self) -> Result:
        """``ipam check`` that found problems: the report on stdout, exit 1."""
        assert self.rc == 1, f"exit {self.rc} (wanted 1: problems found): {self.err}"
        assert "found 0 problems" not in self.out and "Check complete" in self.out
        return self

    def fails(self, rc: int, *fragments: str) -> Result:
        """Exit ``rc``, nothing on stdout, one line on stderr holding every fragment."""
        assert self.rc == rc, f"exit {self.rc} (wanted {rc}): {self.err}"
        lines = self.err.splitlines()
        assert len(lines) == 1, self.err
        assert lines[0].startswith("tortie"), self.err
        assert "Traceback" not in self.err
        for fragment in fragments:
            assert fragment in self.err, f"{fragment!r} not in {self.err!r}"
        return self


class Cli:
    def __init__(
        self,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        set_stdin: Callable[[str], None],
    ) -> None:
        self.tmp = tmp_path
        self.capsys = capsys
        self.set_stdin = set_stdin
        self.files = 0

    def __call__(self, *argv: str, stdin: str | None = None) -> Result:
        if stdin is not None:
            self.set_stdin(stdin)
        self.capsys.readouterr()
        rc = main(list(argv))
        captured = self.capsys.readouterr()
        return Result(rc, captured.out, captured.err)

    def file(self, text: str, suffix: str = ".yaml") -> str:
        self.files += 1
        path = self.tmp / f"input{self.files}{suffix}"
        path.write_text(text, encoding="utf-8")
        return str(path)

    def apply(self, text: str, verb: str = "apply") -> Result:
        return self(verb, "-f", self.file(text))

    def pools(self) -> dict[str, str]:
        """Pool name -> CIDR as ``get ippools -o json`` lists them."""
        data = self("get", "ippools", "-o", "json").ok().json()
        assert data["kind"] == "IPPoolList"
        return {p["metadata"]["name"]: p["spec"]["cidr"] for p in data["items"]}

    def assign(self, *extra: str) -> dict[str, list[str]]:
        res: dict[str, list[str]] = self("ipam", "assign", "-o", "json", *extra).ok().json()
        return res
