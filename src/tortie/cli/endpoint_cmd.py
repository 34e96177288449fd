"""``tortie endpoint create|delete``: WorkloadEndpoints for addresses an orchestrator
(OpenStack's Neutron) chose, reserved in IPAM when they fall inside a tortie pool."""

from __future__ import annotations

import argparse
from typing import Any

from tortie.cli.settings import cli_store
from tortie.errors import InvalidInput

CREATE_HELP = """\
Record a VM's addresses, chosen by OpenStack, as a WorkloadEndpoint named as Calico's
Neutron driver names it: <node>-openstack-<workload>-<endpoint>, every '-' inside the
three ids doubled, in namespace 'openstack' (or 'openstack-<region>').  Addresses inside
an enabled IPPool are reserved in IPAM so no pod gets them; addresses outside every pool
are recorded as given.  An address another endpoint holds is refused; nothing is written
unless everything succeeds.  Running it again for the same port updates the endpoint.

examples:
  tortie endpoint create --node compute-1 --workload VM_ID --endpoint PORT_ID \\
      --ip 10.65.0.5 --ip fd5f:65::5 --mac fa:16:3e:01:02:03 \\
      --ipv4-gateway 10.65.0.1 --ipv6-gateway fd5f:65::1
  tortie endpoint create -f endpoint.yaml
"""

DELETE_HELP = """\
Delete a WorkloadEndpoint and release the addresses it reserved in IPAM.  Name it by
NAME (with -n) or by --node, --workload and --endpoint as it was created.
"""


def register(sub: Any) -> None:
    ep = sub.add_parser(
        "endpoint",
        help="record or delete a VM's workload endpoint (OpenStack)",
        description="Workload endpoints whose addresses an orchestrator chose.",
    )
    verbs = ep.add_subparsers(dest="endpoint_command", metavar="VERB")
    verbs.required = True

    create = verbs.add_parser(
        "create",
        help="record a VM port's addresses as a WorkloadEndpoint",
        description=CREATE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    create.add_argument(
        "-f", "--filename", metavar="FILE", help="WorkloadEndpoint document(s), - for stdin"
    )
    _identity(create)
    create.add_argument(
        "--ip",
        action="append",
        default=[],
        metavar="ADDR",
        help="a fixed IP of the port (IPv4 or IPv6; repeat for dual stack)",
    )
    create.add_argument("--mac", default="", help="the port's MAC address")
    create.add_argument("--ipv4-gateway", default="", metavar="G", help="the IPv4 subnet gateway")
    create.add_argument("--ipv6-gateway", default="", metavar="G6", help="the IPv6 subnet gateway")
    create.add_argument(
        "--interface",
        default="",
        metavar="NAME",
        help="the host-side interface (default: tap + first 11 characters of the port id)",
    )
    create.set_defaults(handler=_create)

    delete = verbs.add_parser(
        "delete",
        help="delete a WorkloadEndpoint and release its addresses",
        description=DELETE_HELP,
    )
    delete.add_argument("name", nargs="?", help="the WorkloadEndpoint's name")
    delete.add_argument(
        "-n", "--namespace", default=None, help="its namespace (default: openstack)"
    )
    _identity(delete)
    delete.set_defaults(handler=_delete)


def _identity(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--orchestrator",
        default="openstack",
        choices=("openstack",),
        help="who chose the addresses (default: openstack)",
    )
    p.add_argument("--node", metavar="HOST", help="the compute host (binding:host_id)")
    p.add_argument("--workload", metavar="DEVICE_ID", help="the VM (the port's device_id)")
    p.add_argument("--endpoint", metavar="PORT_ID", help="the Neutron port id")
    p.add_argument("--region", default="", help="the OpenStack region, if one is configured")


def _name_from_flags(args: argparse.Namespace, verb: str) -> tuple[str, str]:
    from tortie.openstack.naming import check_id, endpoint_name, namespace_for

    missing = [f"--{k}" for k in ("node", "workload", "endpoint") if not getattr(args, k)]
    if missing:
        raise InvalidInput(
            f"endpoint {verb} needs {', '.join(missing)} (or -f FILE / a NAME); "
            "see 'tortie endpoint " + verb + " --help'"
        )
    node = check_id("node", "--node", args.node)
    workload = check_id("workload", "--workload", args.workload)
    port = check_id("endpoint", "--endpoint", args.endpoint)
    if args.region:
        check_id("region", "--region", args.region)
    return namespace_for(args.region), endpoint_name(node, workload, port)


def _document(args: argparse.Namespace) -> dict[str, Any]:
    from tortie.openstack.naming import ORCHESTRATOR, interface_name

    namespace, name = _name_from_flags(args, "create")
    where = f"WorkloadEndpoint {namespace}/{name}"
    if not args.ip:
        raise InvalidInput(f"{where}: no address; give the port's fixed IPs with --ip")
    if len(set(args.ip)) != len(args.ip):
        raise InvalidInput(f"{where}: an --ip is given twice; give each address once")
    spec: dict[str, Any] = {
        "orchestrator": ORCHESTRATOR,
        "workload": args.workload,
        "node": args.node,
        "endpoint": args.endpoint,
        "interfaceName": args.interface or interface_name(args.endpoint),
        "ipNetworks": list(args.ip),
    }
    if args.mac:
        spec["mac"] = args.mac
    families = {":" in ip for ip in args.ip}
    for flag, key, v6 in (
        ("--ipv4-gateway", "ipv4Gateway", False),
        ("--ipv6-gateway", "ipv6Gateway", True),
    ):
        value = getattr(args, key.replace("Gateway", "_gateway"))
        if value:
            if v6 not in families:
                fam = "IPv6" if v6 else "IPv4"
                raise InvalidInput(
                    f"{where}: {flag} {value} given but no {fam} --ip; "
                    f"add the port's {fam} address or drop {flag}"
                )
            spec[key] = value
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "WorkloadEndpoint",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "projectcalico.org/namespace": namespace,
                "projectcalico.org/orchestrator": ORCHESTRATOR,
            },
        },
        "spec": spec,
    }


def _create(args: argparse.Namespace) -> int:
    from tortie.model.workloadendpoint import workloadendpoint_from_dict
    from tortie.openstack.endpoints import EndpointRecorder

    if args.filename:
        from tortie.cli.files import read_text
        from tortie.model.documents import load_documents

        if args.ip or args.node or args.workload or args.endpoint:
            raise InvalidInput("endpoint create takes -f FILE or the flags, not both")
        source = "standard input" if args.filename == "-" else args.filename
        docs = load_documents(read_text(args.filename, "file", "check the -f path"), source)
        if not docs:
            raise InvalidInput(f"{source}: no WorkloadEndpoint found; give at least one")
        for d in docs:
            if d.get("kind") != "WorkloadEndpoint":
                raise InvalidInput(
                    f"{source}: a {d.get('kind')} is not a WorkloadEndpoint; "
                    "use 'tortie create -f' for other kinds"
                )
    else:
        docs = [_document(args)]
    weps = [workloadendpoint_from_dict(d, strict=True) for d in docs]  # all checked first
    recorder = EndpointRecorder(cli_store(args.config))
    for wep in weps:
        done = recorder.create(wep)
        parts = []
        if done.reserved:
            parts.append("reserved in IPAM: " + ", ".join(done.reserved))
        if done.outside_pools:
            parts.append("outside every pool, recorded as given: " + ", ".join(done.outside_pools))
        if done.released:
            parts.append("released: " + ", ".join(done.released))
        detail = f" ({'; '.join(parts)})" if parts else ""
        print(f"Recorded WorkloadEndpoint {done.namespace}/{done.name}{detail}")
    return 0


def _delete(args: argparse.Namespace) -> int:
    from tortie.openstack.endpoints import EndpointRecorder

    if args.name:
        if args.node or args.workload or args.endpoint:
            raise InvalidInput("endpoint delete takes a NAME or --node/--workload/--endpoint")
        namespace, name = args.namespace or "openstack", args.name
    else:
        namespace, name = _name_from_flags(args, "delete")
        namespace = args.namespace or namespace
    released = EndpointRecorder(cli_store(args.config)).delete(namespace, name)
    detail = f" (released: {', '.join(released)})" if released else ""
    print(f"Deleted WorkloadEndpoint {namespace}/{name}{detail}")
    return 0
