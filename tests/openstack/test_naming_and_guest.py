"""Calico's endpoint naming and the guest-image changes (pure parts)."""

from __future__ import annotations

import json

import pytest
import yaml

from tortie.errors import InvalidInput
from tortie.openstack.guest import render
from tortie.openstack.naming import (
    check_id,
    endpoint_name,
    handle_id,
    interface_name,
    namespace_for,
)


def test_names_double_every_dash_inside_the_ids() -> None:
    assert endpoint_name("compute-1", "vm-a", "p-1-2") == "compute--1-openstack-vm--a-p--1--2"
    assert endpoint_name("h", "v", "p") == "h-openstack-v-p"
    assert interface_name("5e0c9b2a-11aa-4b5c") == "tap5e0c9b2a-11"
    assert namespace_for(None) == "openstack" and namespace_for("r1") == "openstack-r1"
    assert handle_id("openstack", "h-openstack-v-p") == "openstack.openstack.h-openstack-v-p"


@pytest.mark.parametrize("bad", ["", "a b", "-lead", "a/b", "x" * 254])
def test_bad_ids_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInput, match="--node"):
        check_id("node", "--node", bad)


def test_ubuntu_files_hold_the_seed_changes() -> None:
    out = render("ubuntu", "files")
    assert (
        "/etc/network/interfaces.d/eth0.cfg:\niface eth0 inet6 dhcp\n        accept_ra 1\n" in out
    )
    assert "start (after the #! line) of /sbin/dhclient-script:\nnew_ip6_prefixlen=128\n" in out
    assert "/etc/sysctl.d/30-eth0-rs-delay.conf:\n" in out
    assert "net.ipv6.conf.eth0.router_solicitation_delay = 10" in out
    assert "ifcfg" not in out


def test_centos_cloud_init_is_yaml_with_the_seed_changes() -> None:
    text = render("centos", "cloud-init", "ens3")
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    files = {f["path"]: f["content"] for f in doc["write_files"]}
    assert files["/etc/sysconfig/network-scripts/ifcfg-ens3"] == "IPV6INIT=yes\nDHCPV6C=yes\n"
    assert "net.ipv6.conf.ens3.accept_ra = 1" in files["/etc/sysctl.d/30-ens3-rs-delay.conf"]
    assert all(f["append"] is True for f in doc["write_files"])
    commands = [c[2] for c in doc["runcmd"]]
    assert all(c[:2] == ["sh", "-c"] for c in doc["runcmd"])
    assert any("new_ip6_prefixlen=128" in c and "/sbin/dhclient-script" in c for c in commands)
    assert commands[-1] == "systemctl restart network"


def test_ubuntu_cloud_init_brings_the_interface_up() -> None:
    doc = yaml.safe_load(render("ubuntu", "cloud-init"))
    files = {f["path"]: f["content"] for f in doc["write_files"]}
    assert files["/etc/network/interfaces.d/eth0.cfg"].startswith("iface eth0 inet6 dhcp\n")
    assert json.dumps(doc["runcmd"][-1]) == json.dumps(["sh", "-c", "ifup eth0"])


def test_unknown_os_or_format_is_refused() -> None:
    with pytest.raises(InvalidInput, match="ubuntu, centos"):
        render("windows", "files")
    with pytest.raises(InvalidInput, match="cloud-init, files"):
        render("ubuntu", "xml")
