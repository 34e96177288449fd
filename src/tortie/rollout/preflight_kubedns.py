"""The kube-dns rows of ``tortie preflight``: the Deployment's IPv6 changes (judged by the
same code as ``tortie manifest rewrite-kube-dns``) and the Service's clusterIP against the
kubelet's ``--cluster-dns``."""

from __future__ import annotations

from typing import Any

import yaml

from tortie.rollout.kubedns import rewrite_kube_dns
from tortie.rollout.preflight import FAIL, PASS, Row


def _named(docs: list[Any], kind: str, name: str) -> dict[str, Any] | None:
    for doc in docs:
        if (
            isinstance(doc, dict)
            and doc.get("kind") == kind
            and (doc.get("metadata") or {}).get("name") == name
        ):
            return doc
    return None


def check_kube_dns(docs: list[Any], fams: set[int], cluster_dns: str | None = None) -> list[Row]:
    """The kube-dns Deployment and Service, when they are among the manifests: for IPv6 the
    seed's image and argument changes; always, the Service's clusterIP(s) equal to the
    kubelet's --cluster-dns."""
    rows: list[Row] = []
    deployment = _named(docs, "Deployment", "kube-dns")
    if deployment is not None and 6 in fams:
        result = rewrite_kube_dns(yaml.safe_dump(deployment), "kube-dns")
        if result.changes:
            rows.append(
                Row(
                    "kube-dns",
                    "IPv6 changes",
                    FAIL,
                    "; ".join(result.changes[:3]) + (" …" if len(result.changes) > 3 else ""),
                    "run 'tortie manifest rewrite-kube-dns --ipv6 FILE'",
                )
            )
        else:
            rows.append(Row("kube-dns", "IPv6 changes", PASS, "image ≥ 1.14.8, args for IPv6"))
    service = _named(docs, "Service", "kube-dns")
    if service is not None and cluster_dns is not None:
        spec = service.get("spec") or {}
        ips = {str(x) for x in spec.get("clusterIPs") or [spec.get("clusterIP")] if x}
        wanted = {d.strip() for d in cluster_dns.split(",") if d.strip()}
        if ips and not wanted <= ips:
            rows.append(
                Row(
                    "kube-dns",
                    "Service clusterIP",
                    FAIL,
                    f"{', '.join(sorted(ips))} but kubelet --cluster-dns is {cluster_dns}",
                    "give the kube-dns Service the --cluster-dns address as its clusterIP "
                    "(or change --cluster-dns to it)",
                )
            )
        elif ips:
            rows.append(Row("kube-dns", "Service clusterIP", PASS, ", ".join(sorted(ips))))
    return rows
