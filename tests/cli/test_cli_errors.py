"""Bad input and unusable datastores: one line on stderr naming the object, the reason
and the fix; exit 2 for usage errors, 1 for the rest; never a traceback."""

from __future__ import annotations

import pytest

from .clihelp import STOCK_POOL, Cli, pool_yaml

BAD_FILES = [
    pytest.param(
        "kind: IPPool\n  bad: [\n", ("invalid YAML at line 2", "fix the syntax"), id="yaml"
    ),
    pytest.param('{"kind": "IPPool",', ("invalid JSON at line 1", "fix the syntax"), id="json"),
    pytest.param(
        pool_yaml("u", "10.3.0.0/24", fooBar=1),
        ("IPPool(u)", 'unknown field "spec.fooBar"', "remove it"),
        id="unknown-spec-field",
    ),
    pytest.param(
        pool_yaml("u", "10.3.0.0/24").replace("metadata:\n", "metadata:\n  colour: red\n"),
        ("IPPool(u)", "metadata.colour"),
        id="unknown-metadata-field",
    ),
    pytest.param(
        pool_yaml("u", "10.3.0.0/24") + "extra: 1\n",
        ("IPPool(u)", "extra"),
        id="unknown-top-field",
    ),
    pytest.param(
        pool_yaml("u", "10.3.0.1/24"),
        ("IPPool(u)", "not strictly masked", "10.3.0.0/24"),
        id="not-masked",
    ),
    pytest.param(
        pool_yaml("u", "10.3.0.0/16", blockSize=19),
        ("IPPool(u)", "blockSize 19", "between 20 and 32"),
        id="blocksize-v4",
    ),
    pytest.param(
        pool_yaml("u6", "fd00:2::/64", blockSize=129),
        ("IPPool(u6)", "blockSize 129", "between 116 and 128"),
        id="blocksize-v6",
    ),
    pytest.param(
        pool_yaml("u", "10.3.0.0/28"),
        ("IPPool(u)", "10.3.0.0/28"),
        id="smaller-than-block",
    ),
    pytest.param(pool_yaml("u", "not-a-cidr"), ("IPPool(u)", "not-a-cidr"), id="invalid-cidr"),
    pytest.param(
        pool_yaml("ll", "169.254.0.0/24"), ("IPPool(ll)", "169.254.0.0/16"), id="link-local"
    ),
    pytest.param(
        pool_yaml("u", "10.3.0.0/24", ipipMode="Sometimes"),
        ("IPPool(u)", "ipipMode", "Sometimes"),
        id="bad-enum",
    ),
    pytest.param(
        pool_yaml("u", "10.3.0.0/24", nodeSelector="all("),
        ("IPPool(u)", "nodeSelector"),
        id="bad-selector",
    ),
    pytest.param(
        "apiVersion: projectcalico.org/v3\nkind: Foo\nmetadata: {name: x}\n",
        ("unknown kind 'Foo'", "IPPool"),
        id="unknown-kind",
    ),
    pytest.param(
        "apiVersion: v1\nkind: IPPool\nmetadata: {name: x}\nspec: {cidr: 10.0.0.0/24}\n",
        ("apiVersion 'v1' is not supported", "projectcalico.org/v3"),
        id="api-version",
    ),
    pytest.param("- a\n- b\n", ("not a resource",), id="list-not-resource"),
    pytest.param("", ("no resources found",), id="empty"),
]


@pytest.mark.parametrize(("text", "fragments"), BAD_FILES)
@pytest.mark.parametrize("verb", ["create", "apply"])
def test_bad_resource_files(cli: Cli, verb: str, text: str, fragments: tuple[str, ...]) -> None:
    cli.apply(text, verb).fails(2, *fragments)
    assert cli.pools() == {}


def test_bad_input_on_stdin_is_named(cli: Cli) -> None:
    cli("apply", "-f", "-", stdin="{").fails(2, "standard input", "invalid JSON")


USAGE_ERRORS = [
    pytest.param(["nosuch"], ("invalid choice: 'nosuch'", "tortie --help"), id="command"),
    pytest.param([], ("required",), id="no-command"),
    pytest.param(["get"], ("required", "kind"), id="get-no-kind"),
    pytest.param(["get", "foo"], ("unknown resource type 'foo'", "ippool"), id="get-kind"),
    pytest.param(["get", "ippools", "-o", "xml"], ("invalid choice: 'xml'",), id="get-format"),
    pytest.param(["apply"], ("apply needs -f FILE",), id="apply-no-file"),
    pytest.param(
        ["apply", "-f", "/nonexistent/p.yaml"],
        ("/nonexistent/p.yaml", "cannot read it", "-f"),
        id="missing-file",
    ),
    pytest.param(["ipam"], ("required",), id="ipam-no-sub"),
    pytest.param(["ipam", "show", "--ip=abc"], ("--ip 'abc'", "10.0.0.5"), id="show-ip"),
    pytest.param(
        ["ipam", "show", "--ip=300.1.1.1"], ("'300.1.1.1'", "not a valid"), id="show-ip-range"
    ),
    pytest.param(["ipam", "release"], ("one of the arguments",), id="release-nothing"),
    pytest.param(["ipam", "release", "--ip=1.2.3"], ("'1.2.3'",), id="release-ip"),
    pytest.param(
        ["ipam", "configure"], ("--strictaffinity", "--max-blocks-per-host"), id="configure"
    ),
    pytest.param(
        ["ipam", "configure", "--strictaffinity=maybe"], ("'maybe' is not a boolean",), id="bool"
    ),
    pytest.param(
        ["ipam", "configure", "--max-blocks-per-host=-1"], ("must not be negative",), id="neg"
    ),
    pytest.param(
        ["ipam", "configure", "--max-blocks-per-host=4"],
        ("maxBlocksPerHost 4 needs strictAffinity", "strictAffinity: true"),
        id="max-blocks-without-strict",
    ),
    pytest.param(["ipam", "split", "2"], ("--cidr", "--name"), id="split-target"),
    pytest.param(["ipam", "split", "x", "--name=p"], ("invalid int value",), id="split-n"),
    pytest.param(
        ["ipam", "split", "2", "--cidr=garbage"], ("--cidr 'garbage'", "10.0.0.0/16"), id="cidr"
    ),
    pytest.param(["ipam", "assign", "--node=n"], ("--handle",), id="assign-handle"),
    pytest.param(
        ["ipam", "assign", "--handle=h", "--node=n", "--ip=10.0.0.300"],
        ("--ip '10.0.0.300'",),
        id="assign-ip",
    ),
    pytest.param(
        ["ipam", "assign", "--handle=h", "--node=n", "--ipv4=two"],
        ("'two' is not a whole number",),
        id="assign-count",
    ),
    pytest.param(
        ["ipam", "assign", "--handle=h", "--node=n", "--attr=novalue"],
        ("'novalue' is not KEY=VALUE",),
        id="assign-attr",
    ),
    pytest.param(
        ["ipam", "assign", "--handle=", "--node=n"], ("--handle is empty",), id="empty-handle"
    ),
    pytest.param(
        ["ipam", "assign", "--handle=h", "--node=n", "--ipv4=0"],
        ("nothing to assign",),
        id="assign-nothing",
    ),
]


@pytest.mark.parametrize(("argv", "fragments"), USAGE_ERRORS)
def test_usage_errors(cli: Cli, argv: list[str], fragments: tuple[str, ...]) -> None:
    cli(*argv).fails(2, *fragments)


def test_unknown_pool_names(cli: Cli) -> None:
    cli.apply(STOCK_POOL).ok()
    cli.apply(pool_yaml("v6", "fd00:1::/48")).ok()
    for pool in ("nopool", "10.99.0.0/16"):
        cli("ipam", "assign", "--handle=h", "--node=n", f"--pool={pool}").fails(
            2, f"--pool {pool}", "no enabled IPPool", "tortie get ippools"
        )
    # An unknown pool must not be ignored because it was not needed for the family asked.
    cli("ipam", "assign", "--handle=h", "--node=n", "--ipv6=1", "--pool=nopool").fails(
        2, "--pool nopool"
    )
    cli("ipam", "split", "2", "--name=nopool").fails(1, "IPPool(nopool) does not exist")
    cli("ipam", "split", "2", "--cidr=10.99.0.0/16").fails(1, "10.99.0.0/16 does not exist")
    cli("get", "ippool", "nopool").fails(1, "IPPool(nopool)", "tortie get ippools")
    cli("delete", "ippool", "nopool").fails(1, "IPPool(nopool)")
    cli("ipam", "release", "--handle=nohandle").fails(1, "handle nohandle does not exist")
    res = cli("ipam", "show", "--show-blocks").ok()
    assert "IP Pool" in res.out


@pytest.mark.parametrize(
    "argv",
    [
        ["get", "ippools"],
        ["apply", "-f", "POOL"],
        ["ipam", "show"],
        ["ipam", "check"],
        ["ipam", "assign", "--handle=h", "--node=n"],
        ["ipam", "configure", "--strictaffinity=true"],
    ],
)
@pytest.mark.parametrize("path", ["/proc/nope/x.db", "DIR", "JUNK"])
def test_unopenable_datastore(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, argv: list[str], path: str
) -> None:
    if path == "DIR":
        path = str(cli.tmp)
    elif path == "JUNK":
        junk = cli.tmp / "junk.db"
        junk.write_text("this is not a database\n" * 100)
        path = str(junk)
    monkeypatch.setenv("SQLITE_PATH", path)
    argv = [cli.file(STOCK_POOL) if a == "POOL" else a for a in argv]
    cli(*argv).fails(1, path, "SQLITE_PATH")


def test_unknown_datastore_type(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATASTORE_TYPE", "mongo")
    cli("get", "ippools").fails(2, "'mongo'", "DATASTORE_TYPE")


def test_non_utf8_input(cli: Cli) -> None:
    path = cli.tmp / "latin1.yaml"
    path.write_bytes(pool_yaml("caf\xe9", "10.1.0.0/24").encode("latin-1"))
    cli("apply", "-f", str(path)).fails(2, "latin1.yaml", "not UTF-8", "save it as UTF-8")
    cli("--config", str(path), "get", "ippools").fails(2, "latin1.yaml", "not UTF-8")
    assert cli.pools() == {}


def test_directory_as_file(cli: Cli) -> None:
    cli("apply", "-f", str(cli.tmp)).fails(2, "cannot read it", "-f")
