"""Issue 10, defects 1-3 and the WAL part of 4: faults of the SQLite store.

Each test fails on the store as it was (every open took the write lock and wrote the
schema; foreign files were changed; every fault was "try again later").  Tests that
need a read-only or tiny file system make it with ``unshare -m`` in a private mount
namespace, never in the machine's own.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cli.clihelp import Result, pool_yaml  # type: ignore[import-not-found, unused-ignore]
from tortie.cli.main import main
from tortie.cni.errors import TRY_AGAIN_LATER, cni_code
from tortie.datastore import sqlite_file
from tortie.datastore.sqlite import SqliteDatastore
from tortie.errors import NotFound, StoreUnusable, TortieError, Unavailable

REPO = Path(__file__).resolve().parents[2]
PYTHON = str(REPO / ".venv" / "bin" / "python")
POOLS = pool_yaml("pool4", "10.20.0.0/16") + "---\n" + pool_yaml("pool6", "fd00:20::/48")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> Result:
    capsys.readouterr()
    rc = main(list(argv))
    out = capsys.readouterr()
    return Result(rc, out.out, out.err)


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    """A store made by ``tortie apply -f`` of two pools, named by SQLITE_PATH."""
    path = str(tmp_path / "tortie.db")
    monkeypatch.setenv("DATASTORE_TYPE", "sqlite")
    monkeypatch.setenv("SQLITE_PATH", path)
    pools = tmp_path / "pools.yaml"
    pools.write_text(POOLS, encoding="utf-8")
    run(capsys, "apply", "-f", str(pools)).ok()
    run(capsys, "ipam", "assign", "--handle=h1", "--node=n1", "--ipv4=1").ok()
    # the first check on a writable store records the cluster identity (ClusterInformation,
    # once, as Calico does); every later check only reads
    run(capsys, "ipam", "check").ok()
    return path


def _digest(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir()}


def _need_root_tool(tool: str) -> None:
    if os.geteuid() != 0 or shutil.which(tool) is None:
        pytest.skip(f"needs root and {tool} (have uid {os.geteuid()})")


def _in_mount_namespace(script: str, tmp_path: Path) -> dict[str, object]:
    """Run ``script`` (Python, with MNT = a private mount point) in a private mount
    namespace; it prints one JSON object as its last line."""
    _need_root_tool("unshare")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    code = f"import json, os, sys\nMNT = {str(mnt)!r}\n" + textwrap.dedent(script)
    proc = subprocess.run(
        ["unshare", "-m", "--propagation", "private", PYTHON, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# ------------------------------------------- defect 1: readers take the write lock


@pytest.fixture
def writer_holding_lock(db: str) -> Iterator[subprocess.Popen[str]]:
    """Another process holding a write transaction for 20 s."""
    holder = subprocess.Popen(
        [
            PYTHON,
            "-c",
            "import sqlite3, sys, time\n"
            f"db = sqlite3.connect({db!r}, isolation_level=None)\n"
            "db.execute('BEGIN IMMEDIATE')\n"
            'db.execute("UPDATE meta SET revision = revision")\n'
            "print('locked', flush=True)\n"
            "time.sleep(20)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_reads_are_served_while_another_process_holds_a_write_transaction(
    writer_holding_lock: subprocess.Popen[str], capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    out = run(capsys, "get", "ippools").ok().out
    assert "pool4" in out and "pool6" in out
    assert "10.20.0.0/16" in run(capsys, "ipam", "show").ok().out
    assert run(capsys, "ipam", "check").ok().out.splitlines()[-1].startswith("Check complete")
    assert time.monotonic() - started < 5, "reads waited for the writer"


def test_a_lock_held_elsewhere_is_retryable_and_gives_no_writable_file_advice(
    writer_holding_lock: subprocess.Popen[str],
    db: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sqlite_file, "BUSY_TIMEOUT_MS", 300)
    store = SqliteDatastore(db)
    with pytest.raises(Unavailable) as err:
        store.create("/calico/test", "{}")
    store.close()
    assert cni_code(err.value) == TRY_AGAIN_LATER
    assert "locked by another process" in str(err.value)
    assert "writable" not in str(err.value)


def test_read_only_mount_serves_every_read_and_writes_say_so(tmp_path: Path) -> None:
    result = _in_mount_namespace(
        f"""
        import contextlib, io, subprocess
        from tortie.cli.main import main
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", MNT], check=True)
        os.environ.update(DATASTORE_TYPE="sqlite", SQLITE_PATH=MNT + "/store/tortie.db")
        pools = MNT + "/pools.yaml"
        with open(pools, "w") as fh:
            fh.write({POOLS!r})
        assert main(["apply", "-f", pools]) == 0
        assert main(["ipam", "assign", "--handle=h1", "--node=n1", "--ipv4=1"]) == 0
        # a copy taken while writes sat in the WAL, as a crash leaves it
        from tortie.datastore.sqlite import SqliteDatastore
        live = SqliteDatastore(MNT + "/store/tortie.db")
        live.create("/calico/in-wal", "1")
        os.mkdir(MNT + "/crash")
        for suffix in ("", "-wal"):
            with open(MNT + "/store/tortie.db" + suffix, "rb") as src:
                with open(MNT + "/crash/tortie.db" + suffix, "wb") as dst:
                    dst.write(src.read())
        live.close()
        subprocess.run(["mount", "-o", "remount,ro", MNT], check=True)
        out = {{}}
        for argv in (["get", "ippools"], ["ipam", "show"], ["ipam", "check"],
                     ["datastore", "migrate", "export", "-"], ["apply", "-f", pools]):
            o, e = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
                rc = main(argv)
            out[argv[-1]] = [rc, o.getvalue(), e.getvalue()]
        os.environ["SQLITE_PATH"] = MNT + "/crash/tortie.db"
        o, e = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
            out["crash"] = [main(["datastore", "migrate", "export", "-"]), o.getvalue(), e.getvalue()]
        print(json.dumps(out))
        """,
        tmp_path,
    )
    answers = {name: (int(v[0]), str(v[1]), str(v[2])) for name, v in result.items()}  # type: ignore[index]
    for name in ("ippools", "show", "check", "-"):
        rc, out, err = answers[name]
        assert (rc, err) == (0, ""), (name, err)
    assert "pool6" in answers["ippools"][1]
    assert "10.20.0.0/16" in answers["show"][1]
    rc, out, err = answers[str(tmp_path / "mnt" / "pools.yaml")]
    assert rc == 1 and out == "" and len(err.splitlines()) == 1
    assert "read-only" in err and "mounted read-only" in err and "must write" in err
    # writes left in a WAL on a read-only mount are seen, not silently skipped
    rc, out, err = answers["crash"]
    assert (rc, err) == (0, "") and "/calico/in-wal" in out


@pytest.fixture
def immutable(db: str) -> Iterator[str]:
    _need_root_tool("chattr")
    SqliteDatastore(db).close()  # the last close folds the WAL into the file
    done = subprocess.run(["chattr", "+i", db], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"chattr +i is not supported here: {done.stderr.strip()}")
    try:
        yield db
    finally:
        subprocess.run(["chattr", "-i", db], check=True)


def test_an_immutable_store_serves_reads_and_refuses_writes_clearly(
    immutable: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _digest(tmp_path)
    assert "pool4" in run(capsys, "get", "ippools").ok().out
    assert "10.20.0.0/16" in run(capsys, "ipam", "show").ok().out
    run(capsys, "ipam", "check").ok()
    run(capsys, "ipam", "assign", "--handle=h2", "--node=n1", "--ipv4=1").fails(
        1, immutable, "read-only", "must write"
    )
    store = SqliteDatastore(immutable)
    with pytest.raises(StoreUnusable) as err:
        store.create("/calico/x", "{}")
    store.close()
    assert cni_code(err.value) != TRY_AGAIN_LATER
    assert _digest(tmp_path)[Path(immutable).name] == before[Path(immutable).name]


# ------------------------------------------- defect 2: foreign files, missing directories


def _foreign(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    db.execute("INSERT INTO users (name) VALUES ('ada')")
    db.commit()
    db.close()


@pytest.mark.parametrize("argv", [["get", "ippools"], ["apply", "-f", "POOLS"], ["ipam", "show"]])
def test_a_foreign_sqlite_file_is_recognised_and_left_untouched(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
) -> None:
    other = tmp_path / "other" / "app.db"
    other.parent.mkdir()
    _foreign(other)
    pools = tmp_path / "pools.yaml"
    pools.write_text(POOLS, encoding="utf-8")
    before = _digest(other.parent)
    monkeypatch.setenv("SQLITE_PATH", str(other))
    argv = [str(pools) if a == "POOLS" else a for a in argv]
    run(capsys, *argv).fails(1, str(other), "not a tortie store", "untouched", "SQLITE_PATH")
    assert _digest(other.parent) == before  # same files, same bytes


def test_a_missing_directory_is_an_error_for_reads_and_made_by_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mistyped" / "tortie.db"
    monkeypatch.setenv("SQLITE_PATH", str(path))
    run(capsys, "get", "ippools").fails(1, str(path), "no tortie store", "SQLITE_PATH")
    run(capsys, "ipam", "show").fails(1, str(path), "no tortie store")
    assert not path.parent.exists()
    pools = tmp_path / "pools.yaml"
    pools.write_text(POOLS, encoding="utf-8")
    run(capsys, "apply", "-f", str(pools)).ok()
    assert "pool4" in run(capsys, "get", "ippools").ok().out


def test_the_default_path_reads_as_an_empty_store_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state" / "tortie" / "tortie.db"
    store = SqliteDatastore(str(path), reading=True, default_path=True)
    assert store.list("/calico/") == [] and store.current_revision() == 0
    assert store.read_only  # a reader creates no store
    store.close()
    assert not path.parent.exists()
    with pytest.raises(NotFound):
        SqliteDatastore(str(path), reading=True).list("/calico/")


def test_a_write_that_cannot_make_the_directory_says_where(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreUnusable) as err:
        SqliteDatastore(str(blocker / "sub" / "t.db")).create("/k", "1")
    assert f"cannot create its directory {blocker / 'sub'}" in str(err.value)


# ------------------------------------------- defect 3: permanent faults are not transient


def _open_error(path: Path) -> TortieError:
    with pytest.raises(TortieError) as err:
        store = SqliteDatastore(str(path))
        store.create("/k", "1")
    return err.value


def test_permanent_faults_are_not_try_again_later(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_text("this is not a database\n" * 200)
    foreign = tmp_path / "app.db"
    _foreign(foreign)
    newer = tmp_path / "newer.db"
    SqliteDatastore(str(newer)).create("/k", "1")
    with sqlite3.connect(newer) as conn:
        conn.execute("PRAGMA user_version = 99")
    cases = {
        junk: "not a SQLite database",
        foreign: "not a tortie store",
        newer: "newer tortie",
        tmp_path: "it is a directory",
    }
    for path, cause in cases.items():
        err = _open_error(path)
        assert isinstance(err, StoreUnusable), (path, err)
        assert cni_code(err) != TRY_AGAIN_LATER and cni_code(err) == 5
        assert cause in str(err) and "try again later" not in str(err), str(err)


# ------------------------------------------- defect 4 (WAL): a full disk, then space freed


def test_after_a_full_disk_and_space_freed_writes_work_and_the_wal_stays_small(
    tmp_path: Path,
) -> None:
    result = _in_mount_namespace(
        """
        import subprocess
        from tortie.datastore.sqlite import SqliteDatastore
        from tortie.errors import StoreUnusable
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", MNT], check=True)
        store = SqliteDatastore(MNT + "/tortie.db")
        store.create("/calico/counter", "0")
        filler = MNT + "/filler"
        with open(filler, "wb", buffering=0) as fh:  # fill the disk
            try:
                while True:
                    fh.write(b"x" * 4096)
            except OSError:
                pass
        full_error = ""
        value = "v" * 3000
        try:
            for i in range(200):
                store.create(f"/calico/k{i}", value)
        except StoreUnusable as exc:
            full_error = str(exc)
        os.unlink(filler)
        failures, wal_peak = [], 0
        for i in range(400):  # ~1.2 MB of writes through a 256 KiB file system
            kv = store.get("/calico/counter")
            try:
                store.update("/calico/counter", value + str(i), kv.revision)
            except StoreUnusable as exc:
                failures.append(str(exc))
            if os.path.exists(MNT + "/tortie.db-wal"):
                wal_peak = max(wal_peak, os.path.getsize(MNT + "/tortie.db-wal"))
        kv = store.get("/calico/counter")
        print(json.dumps({"full_error": full_error, "failures": failures[:3],
                          "nfail": len(failures), "last": kv.value[-3:]}))
        """,
        tmp_path,
    )
    assert "file system is full" in str(result["full_error"]), result
    assert "try again later" not in str(result["full_error"])
    assert result["nfail"] == 0, result["failures"]
    assert result["last"] == "399"


# ------------------------------------------- defect 4 (ADD): a failed ADD leaves nothing


def test_adds_failing_on_a_full_disk_leave_nothing(tmp_path: Path) -> None:
    """ADDs until the 200 KiB file system is full: every ADD that failed left no handle and
    no address (ipam check with the succeeded containers as the live list is clean), and
    after space is freed ADDs work again."""
    bin_dir = str(Path(PYTHON).parent)
    result = _in_mount_namespace(
        f"""
        import subprocess
        BIN = {bin_dir!r}
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", MNT], check=True)
        env = {{**os.environ, "DATASTORE_TYPE": "sqlite", "SQLITE_PATH": MNT + "/tortie.db"}}
        pools = '''apiVersion: projectcalico.org/v3
        kind: IPPool
        metadata: {{name: p4}}
        spec: {{cidr: 10.90.0.0/16, blockSize: 26}}
        ---
        apiVersion: projectcalico.org/v3
        kind: IPPool
        metadata: {{name: p6}}
        spec: {{cidr: "fd00:90::/112", blockSize: 122}}
        '''.replace("\\n        ", "\\n")
        subprocess.run([BIN + "/tortie", "apply", "-f", "-"], input=pools, text=True,
                       env=env, check=True, capture_output=True)
        conf = json.dumps({{"cniVersion": "1.0.0", "name": "net1", "type": "calico-ipam",
                           "nodename": "n1", "ipam": {{"type": "calico-ipam",
                           "assign_ipv6": "true"}}}})
        def add(cid):
            e = {{**env, "CNI_COMMAND": "ADD", "CNI_CONTAINERID": cid, "CNI_NETNS": "/x",
                 "CNI_IFNAME": "eth0", "CNI_PATH": BIN}}
            p = subprocess.run([BIN + "/calico-ipam"], input=conf, text=True, env=e,
                               capture_output=True)
            return p.returncode, p.stdout
        live, failed, codes = [], 0, set()
        filler = MNT + "/filler"
        with open(filler, "wb", buffering=0) as fh:  # leave only a little room
            try:
                while os.statvfs(MNT).f_bavail > 12:
                    fh.write(b"x" * 4096)
            except OSError:
                pass
        for i in range(120):
            rc, out = add(f"c{{i}}")
            if rc == 0:
                live.append(f"c{{i}}")
            else:
                failed += 1
                codes.add(json.loads(out)["code"])
            if failed >= 8:
                break
        os.unlink(filler)
        with open(MNT + "/live.txt", "w") as fh:
            fh.write("\\n".join(live) + "\\n")
        check = subprocess.run([BIN + "/tortie", "ipam", "check", "--live", MNT + "/live.txt",
                                "--node", "n1"], env=env, text=True, capture_output=True)
        after, _ = add("after-free")
        print(json.dumps({{"live": len(live), "failed": failed, "codes": sorted(codes),
                          "check_rc": check.returncode, "check": check.stdout[-600:],
                          "after": after}}))
        """,
        tmp_path,
    )
    assert result["failed"] and result["live"], result  # the disk did fill up mid-run
    assert result["check_rc"] == 0, result["check"]
    assert "found 0 problems" in str(result["check"])
    assert result["after"] == 0, result
