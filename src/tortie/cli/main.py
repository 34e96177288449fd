"""The ``tortie`` command: argument parsing, and the one place errors become exit codes."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from tortie import __version__
from tortie.errors import TortieError, exit_code
from tortie.rundir import DEFAULT_CNI_SOCKET, RunDir

DESCRIPTION = """\
tortie: workload networking and IP address management for IPv4, IPv6 and dual stack,
compatible with Project Calico (calicoctl's commands, Calico's resources and keys).

The datastore is SQLite by default (SQLITE_PATH, default /var/lib/tortie/tortie.db or
$XDG_STATE_HOME/tortie/tortie.db) or etcd (DATASTORE_TYPE=etcdv3, ETCD_ENDPOINTS=...);
--config FILE reads the same settings from a CalicoAPIConfig file.
"""

EPILOG = """\
examples:
  tortie demo                                   see pools, blocks and addresses in action
  tortie apply -f pools.yaml                    create or update IPPools from a file
  tortie get ippools -o wide                    list pools
  tortie ipam assign --handle=pod1 --node=n1 --ipv4=1 --ipv6=1
  tortie ipam show --show-blocks                usage per pool and block
  tortie ipam check -o report.json              find leaked addresses
"""


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2) instead of a usage dump."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}; see '{self.prog} --help'")


Handler = Callable[[argparse.Namespace], int]


def build_parser() -> Parser:
    from tortie.cli import (
        datastore_cmd,
        endpoint_cmd,
        ipam_cmd,
        manifest_cmd,
        migrate_cmd,
        node_cmd,
        openstack_cmd,
        preflight_cmd,
        resources_cmd,
    )

    parser = Parser(
        prog="tortie",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", "-c", metavar="FILE", help="CalicoAPIConfig file with the datastore settings"
    )
    parser.add_argument("--version", action="version", version=f"tortie {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    resources_cmd.register(sub)
    ipam_cmd.register(sub)
    datastore_cmd.register(sub)
    node_cmd.register(sub)
    manifest_cmd.register(sub)
    preflight_cmd.register(sub)
    migrate_cmd.register(sub)
    endpoint_cmd.register(sub)
    openstack_cmd.register(sub)

    demo = sub.add_parser(
        "demo",
        help="show tortie at work: a three-node dual-stack cluster (as root) or IPAM alone",
        description="As root (with iproute2 and bird2): build three dual-stack nodes in "
        "network namespaces, each with 'tortie node run' and BIRD 2 and no default route, "
        "two pods per node through the calico CNI plugin, print the pods' addresses, the "
        "routes the nodes learned and a ping matrix per family, then remove everything. "
        "Otherwise (or with --ipam-only): create an IPv4 and an IPv6 pool in a throw-away "
        "SQLite store, allocate dual-stack addresses for workloads on three nodes and print "
        "the block table. Nothing outside the demo's own namespaces and temporary directory "
        "is touched.",
    )
    demo.add_argument(
        "--keep", action="store_true", help="keep the temporary store (and logs) and say where"
    )
    demo.add_argument("--ipam-only", action="store_true", help="the IPAM demo only, even as root")
    demo.set_defaults(handler=_demo)

    install = sub.add_parser(
        "install-cni",
        help="install the CNI plugins and a conflist",
        description="Write the tortie-cni/calico and tortie-ipam/calico-ipam executables into "
        "--bin-dir and a conflist for the chosen mode into --conf-dir.",
    )
    install.add_argument(
        "--bin-dir",
        required=True,
        help="where the CNI runtime looks for plugins (e.g. /opt/cni/bin)",
    )
    install.add_argument(
        "--conf-dir",
        required=True,
        help="where the CNI runtime looks for configs (e.g. /etc/cni/net.d)",
    )
    install.add_argument(
        "--mode",
        choices=("ipv4", "ipv6", "dual"),
        default="ipv4",
        help="address families to assign (default ipv4)",
    )
    install.add_argument(
        "--network-name", default="k8s-pod-network", help="the conflist's network name"
    )
    install.add_argument(
        "--sqlite-path",
        default="",
        help="datastore file the plugins use (default: SQLITE_PATH's default)",
    )
    install.add_argument(
        "--nodename", default="", help="node name the plugins record (default: the host name)"
    )
    install.add_argument(
        "--socket",
        default=DEFAULT_CNI_SOCKET,
        help="the node service the plugins ask first (tortie node run's "
        f"{RunDir('$TORTIE_RUN_DIR').cni_socket}; default %(default)s); with no service "
        "there they run in-process",
    )
    install.add_argument(
        "--client",
        choices=("auto", "compiled", "python"),
        default="auto",
        help="the plugins: the compiled thin client, Python launchers, or auto (compiled "
        "when pip built it; default)",
    )
    install.add_argument(
        "--mtu",
        type=int,
        default=None,
        help="the pods' MTU written into the conflist; by default none is written and the "
        "plugins use the MTU the node agent publishes in $TORTIE_RUN_DIR/mtu (host MTU minus "
        "the encapsulation overhead, or FELIX_VETHMTU), 1500 when no agent published one",
    )
    install.set_defaults(handler=_install_cni)
    return parser


def _demo(args: argparse.Namespace) -> int:
    from tortie.node.lab import missing_prerequisites

    why = missing_prerequisites()
    if why is None and not args.ipam_only:
        from tortie.cli.demo_cluster import run_cluster_demo

        return run_cluster_demo(keep=bool(args.keep))
    from tortie.cli.demo import run_demo

    if why is not None:
        print(
            f"(The full demo builds a three-node dual-stack cluster with BGP in network "
            f"namespaces; here {why}. Showing the IPAM demo instead.)\n"
        )
    return run_demo(keep=bool(args.keep))


def _install_cni(args: argparse.Namespace) -> int:
    from tortie.cli.install_cmd import install_cni

    return install_cni(args)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        handler: Handler = args.handler
        return handler(args)
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except TortieError as exc:
        print(f"tortie: {exc}", file=sys.stderr)
        return exit_code(exc)
    except KeyboardInterrupt:
        print("tortie: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        print(
            f"tortie: {exc.strerror or exc}{where}; check the path and permissions", file=sys.stderr
        )
        return 1
    except Exception as exc:  # a bug: one line, the details only when asked for
        if os.environ.get("TORTIE_DEBUG"):
            raise
        print(
            f"tortie: internal error: {type(exc).__name__}: {exc}; please report it "
            "(TORTIE_DEBUG=1 shows the traceback)".replace("\n", " "),
            file=sys.stderr,
        )
        return 1
    finally:
        from tortie.cli.settings import close_stores

        close_stores()


if __name__ == "__main__":
    sys.exit(main())
