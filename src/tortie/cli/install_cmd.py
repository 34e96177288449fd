"""``tortie install-cni``: the plugin executables and a conflist for one mode."""

from __future__ import annotations

import argparse
import json
import os

from tortie.errors import InvalidInput
from tortie.rundir import DEFAULT_CNI_SOCKET


def conflist(
    name: str, mode: str, sqlite_path: str, nodename: str, mtu: int | None = None
) -> dict[str, object]:
    """Calico's chain: the calico plugin, then portmap (hostPort) and bandwidth.  Without
    ``mtu`` the plugin takes the MTU the node agent publishes, at each call."""
    ipam: dict[str, object] = {
        "type": "calico-ipam",
        "assign_ipv4": "false" if mode == "ipv6" else "true",
        "assign_ipv6": "true" if mode in ("ipv6", "dual") else "false",
    }
    plugin: dict[str, object] = {
        "type": "calico",
        "datastore_type": "sqlite",
        "log_level": "warning",
        "ipam": ipam,
    }
    if mtu is not None:
        plugin["mtu"] = mtu
    if sqlite_path:
        plugin["sqlite_path"] = sqlite_path
    if nodename:
        plugin["nodename"] = nodename
    portmap = {"type": "portmap", "snat": True, "capabilities": {"portMappings": True}}
    bandwidth = {"type": "bandwidth", "capabilities": {"bandwidth": True}}
    return {"name": name, "cniVersion": "1.0.0", "plugins": [plugin, portmap, bandwidth]}


def _mtu(value: int | None) -> int | None:
    if value is not None and not 68 <= value <= 65535:
        raise InvalidInput(f"--mtu {value}: an MTU is 68-65535; give one, or leave --mtu out")
    return value


def install_cni(args: argparse.Namespace) -> int:
    from tortie.cni.install import choose_client, write_executables
    from tortie.cni.netconf import NETWORK_NAME

    if not NETWORK_NAME.fullmatch(args.network_name):
        raise InvalidInput(
            f"--network-name {args.network_name!r}: CNI network names may use only letters, "
            "digits, '_', '.' and '-'; choose another name"
        )
    if args.nodename:
        from tortie.model.names import check_node_name

        check_node_name(args.nodename, "--nodename", "give the node's name, or leave it out")
    for d in (args.bin_dir, args.conf_dir):
        try:
            os.makedirs(d, exist_ok=True)
        except OSError as exc:
            raise InvalidInput(
                f"directory {d}: cannot create it ({exc.strerror}); choose a writable directory"
            ) from None
    path = os.path.join(args.conf_dir, f"10-tortie-{args.mode}.conflist")
    tmp = path + ".tmp"
    client = choose_client(getattr(args, "client", "auto"))
    try:
        written = write_executables(
            args.bin_dir, getattr(args, "socket", DEFAULT_CNI_SOCKET), client
        )
    except OSError as exc:
        raise InvalidInput(
            f"--bin-dir {args.bin_dir}: cannot write the plugins ({exc.strerror}); "
            "choose a writable directory"
        ) from None
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(
                conflist(
                    args.network_name,
                    args.mode,
                    args.sqlite_path,
                    args.nodename,
                    _mtu(getattr(args, "mtu", None)),
                ),
                fh,
                indent=2,
            )
            fh.write("\n")
        os.replace(tmp, path)
    except OSError as exc:
        raise InvalidInput(
            f"--conf-dir {args.conf_dir}: cannot write {os.path.basename(path)} "
            f"({exc.strerror}); choose a writable directory"
        ) from None
    kind = (
        "the compiled thin client"
        if client == "compiled"
        else "Python launchers (no compiled client was built: no C compiler at install time)"
        if getattr(args, "client", "auto") == "auto"
        else "Python launchers"
    )
    for item in written:
        print(f"Installed {item}")
    print(f"The plugins are {kind}")
    print(f"Wrote {path} ({args.mode})")
    return 0
