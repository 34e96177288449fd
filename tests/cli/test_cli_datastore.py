"""datastore migrate export / import / copy, in-process."""

from __future__ import annotations

import json

import pytest

from .clihelp import STOCK_POOL, Cli


def test_export_import_copy(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    cli.apply(STOCK_POOL).ok()
    addr = cli.assign("--handle=h", "--node=n1")["ipv4"][0].split("/")[0]
    export = str(cli.tmp / "export.json")
    out = cli("datastore", "migrate", "export", export).ok().out
    assert out.startswith("Exported ") and export in out
    dumped = cli("datastore", "migrate", "export", "-").ok().json()
    assert any(k["key"].startswith("/calico/ipam/v2/assignment/") for k in dumped["keys"])

    monkeypatch.setenv("SQLITE_PATH", str(cli.tmp / "imported.db"))
    assert "Imported" in cli("datastore", "migrate", "import", export).ok().out
    assert cli.pools() == {"default-ipv4-ippool": "192.168.0.0/16"}
    assert "is in use" in cli("ipam", "show", f"--ip={addr}").ok().out
    cli("datastore", "migrate", "import", export).fails(2, "already holds", "empty datastore")

    monkeypatch.setenv("SQLITE_PATH", str(cli.tmp / "from-stdin.db"))
    cli("datastore", "migrate", "import", "-", stdin=json.dumps(dumped)).ok()
    assert cli.pools() == {"default-ipv4-ippool": "192.168.0.0/16"}

    monkeypatch.setenv("SQLITE_PATH", str(cli.tmp / "copied.db"))
    source = str(cli.tmp / "tortie.db")
    assert "Copied" in cli("datastore", "migrate", "copy", f"--from-sqlite={source}").ok().out
    assert "is in use" in cli("ipam", "show", f"--ip={addr}").ok().out
    cli("datastore", "migrate", "copy", f"--from-sqlite={cli.tmp / 'copied.db'}").fails(
        2, "same file"
    )
    cli("datastore", "migrate", "copy", "--from-sqlite=/nonexistent.db").fails(2, "no such file")


def test_import_bad_files(cli: Cli) -> None:
    cli("datastore", "migrate", "import", cli.file(STOCK_POOL)).fails(2, "not valid JSON")
    latin = cli.tmp / "latin.json"
    latin.write_bytes(b'{"caf\xe9": 1}')
    cli("datastore", "migrate", "import", str(latin)).fails(2, "not UTF-8")
    cli("datastore", "migrate", "import", "/nonexistent.json").fails(2, "cannot read it")
    cli("datastore", "migrate").fails(2, "required")
