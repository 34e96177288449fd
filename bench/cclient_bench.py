"""Compiled thin client benchmark (issue 18): the compiled client against the Python thin
client, the in-process plugin and host-local, in one run, call by call alternating.

1. Start-up: a process that does nothing (``/bin/true``), the bare interpreter
   (``python3 -I -S -c pass``), and each client answered by a stub socket that replies
   at once (the client's own floor: exec, connect, send, receive, print).
2. IPAM ADD and DEL per call (one process each) with 0 and 1,000 (5,000 without
   ``--quick``) existing allocations: both clients through one ``tortie node serve-cni``,
   the in-process plugin (``TORTIE_CNI_SOCKET=none``) and ``host-local``.
3. 100 concurrent IPAM ADDs (then DELs) on one node: wall time per round.

Everything in temporary directories; processes started here, stopped by PID.  Reuses
the machinery of bench/service_bench.py.

Run: PYTHONPATH=src .venv/bin/python bench/cclient_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import service_bench as sb

from tortie.cni.cclient import built_client
from tortie.cni.install import write_executables


def compiled_bin(tmp: Path, name: str, sock: str) -> str:
    bin_dir = tmp / f"cbin-{name}"
    write_executables(str(bin_dir), sock, "compiled")
    return str(bin_dir / "calico-ipam")


def startup(tmp: Path, calls: int, out: dict[str, Any]) -> None:
    stub = sb.StubService(str(tmp / "stub.sock"))
    conf = json.dumps(sb.ipam_conf("bench", None)).encode()
    py = tmp / "pybin"
    write_executables(str(py), stub.path, "python")
    contenders = [
        sb.Contender("true", shutil.which("true") or "/bin/true", b""),
        sb.Contender("python -I -S", sb.PY_REAL, b"", args=("-I", "-S", "-c", "pass")),
        sb.Contender("compiled + stub", compiled_bin(tmp, "stub", stub.path), conf),
        sb.Contender("python thin + stub", str(py / "calico-ipam"), conf),
    ]
    res: dict[str, list[float]] = {c.name: [] for c in contenders}
    try:
        for i, c in sb.rounds(contenders, calls):
            res[c.name].append(c.call("ADD", f"s{i}"))
    finally:
        stub.close()
    out["startup"] = res


def per_call(tmp: Path, existing: int, calls: int, out: dict[str, Any]) -> None:
    template = str(tmp / f"template-{existing}.db")
    sb.sqlite_store(template, sb.IPAM_POOL, existing)
    svc_db, local_db = str(tmp / f"svc-{existing}.db"), str(tmp / f"local-{existing}.db")
    shutil.copy(template, svc_db)
    shutil.copy(template, local_db)
    svc = sb.Service(tmp, f"pc{existing}", {"DATASTORE_TYPE": "sqlite", "SQLITE_PATH": svc_db})
    with sb.services([svc]):
        conf = sb.ipam_conf("bench", svc_db)
        contenders = [
            sb.Contender("compiled", compiled_bin(tmp, f"pc{existing}", svc.sock), conf),
            sb.Contender("python thin", svc.launcher("calico-ipam"), conf),
            sb.Contender(
                "in-process",
                svc.launcher("calico-ipam"),
                sb.ipam_conf("bench", local_db),
                {"TORTIE_CNI_SOCKET": "none"},
            ),
            sb.host_local(tmp, f"pc{existing}", existing),
        ]
        res: dict[str, dict[str, list[float]]] = {
            c.name: {"ADD": [], "DEL": []} for c in contenders
        }
        for command in ("ADD", "DEL"):
            for i, c in sb.rounds(contenders, calls):
                res[c.name][command].append(c.call(command, f"m{i}"))
    served = svc.served
    if served is not None and served < 4 * calls:
        raise SystemExit(f"the service served {served} of {4 * calls} calls: some fell back")
    out[f"ipam{existing}"] = res


def concurrent(tmp: Path, n: int, reps: int, out: dict[str, Any]) -> None:
    db = str(tmp / "conc.db")
    sb.sqlite_store(db, sb.IPAM_POOL)
    svc = sb.Service(tmp, "conc", {"DATASTORE_TYPE": "sqlite", "SQLITE_PATH": db})
    with sb.services([svc]):
        conf = sb.ipam_conf("bench", db)
        contenders = [
            sb.Contender("compiled", compiled_bin(tmp, "conc", svc.sock), conf),
            sb.Contender("python thin", svc.launcher("calico-ipam"), conf),
            sb.host_local(tmp, "conc", 0),
        ]
        walls: dict[str, dict[str, list[float]]] = {
            c.name: {"ADD": [], "DEL": []} for c in contenders
        }
        for r, c in sb.rounds(contenders, reps):
            cids = [f"c{r}-{i}" for i in range(n)]
            for command in ("ADD", "DEL"):
                t0 = time.perf_counter()
                results = sb.finish([c.spawn(command, cid) for cid in cids], f"{c.name} {command}")
                walls[c.name][command].append(time.perf_counter() - t0)
                if command == "ADD" and len(set(sb.addresses(results))) != n:
                    raise SystemExit(f"{c.name}: duplicate addresses in {n} concurrent ADDs")
    out["concurrent"] = walls


def report(out: dict[str, Any]) -> None:
    print(f"machine: {out['machine']}")
    st = out["startup"]
    base = sb.med(st["python thin + stub"])
    print("\n1. start-up, one process, answered at once (median (p95) ms; ratio to python thin)")
    for name, values in st.items():
        print(f"   {name:20} {sb.mp(values):>16}   {sb.ratio(sb.med(values), base)}")
    for key in sorted(k for k in out if k.startswith("ipam")):
        existing = key[4:]
        print(f"\n2. IPAM per call, {existing} existing allocations (median (p95) ms)")
        res = out[key]
        for command in ("ADD", "DEL"):
            hl = sb.med(res["host-local"][command])
            thin = sb.med(res["python thin"][command])
            print(f"   {command}:")
            for name, by in res.items():
                m = sb.med(by[command])
                print(
                    f"     {name:12} {sb.mp(by[command]):>16}   vs host-local "
                    f"{sb.ratio(m, hl)}   vs python thin {sb.ratio(m, thin)}"
                )
    walls = out["concurrent"]
    print("\n3. 100 concurrent IPAM calls, wall time (median (p95) ms)")
    for command in ("ADD", "DEL"):
        hl = sb.med(walls["host-local"][command])
        for name, by in walls.items():
            m = sb.med(by[command])
            print(
                f"   {command} {name:12} {sb.mp(by[command]):>16}   vs host-local {sb.ratio(m, hl)}"
            )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer calls; 0 and 1,000 only")
    args = ap.parse_args()
    if built_client() is None:
        raise SystemExit("no compiled client was built (no C compiler at pip install time)")
    calls = 20 if args.quick else 60
    out: dict[str, Any] = {"machine": sb.machine()}
    tmp = Path(tempfile.mkdtemp(prefix="tortie-cclient-bench-"))
    try:
        steps: list[tuple[str, Callable[[], None]]] = [
            ("start-up", partial(startup, tmp, 2 * calls, out))
        ]
        for existing in (0, 1000) if args.quick else (0, 1000, 5000):
            steps.append((f"IPAM {existing}", partial(per_call, tmp, existing, calls, out)))
        steps.append(("concurrent", partial(concurrent, tmp, 100, 2 if args.quick else 5, out)))
        for name, step in steps:
            t0 = time.perf_counter()
            print(f"{name} (load {os.getloadavg()[0]:.1f}) ...", file=sys.stderr, flush=True)
            step()
            print(f"{name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
