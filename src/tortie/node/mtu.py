"""The pod MTU (calico-behaviour.md §17): the host's MTU minus the largest enabled
encapsulation overhead, unless ``FELIX_VETHMTU`` says otherwise; published in the run
directory's ``mtu`` file, where the CNI plugins and install-cni read it."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Mapping

from tortie.errors import InvalidInput
from tortie.node.tunnel import IPIP, VXLAN, VXLAN_V6, TunnelSettings
from tortie.rundir import RunDir

OVERHEAD = {IPIP: 20, VXLAN: 50, VXLAN_V6: 70}
DEFAULT_HOST_MTU = 1500
# Felix's default MTUIfacePattern: the host's physical-looking interfaces.
HOST_IFACE_PATTERN = r"^((en|wl|ww|sl|ib)[Popsx].*|(eth|wlan|wwan|bond).*)"


def host_mtu(links: Iterable[tuple[str, int]], pattern: str = HOST_IFACE_PATTERN) -> int:
    """The smallest MTU among interfaces whose name matches ``pattern`` (1500 if none)."""
    rx = re.compile(pattern)
    found = [mtu for name, mtu in links if rx.match(name)]
    return min(found) if found else DEFAULT_HOST_MTU


def veth_mtu_override(env: Mapping[str, str]) -> int | None:
    """``FELIX_VETHMTU`` as a number; unset, empty or 0 means "compute it"."""
    text = env.get("FELIX_VETHMTU", "").strip()
    if not text or text == "0":
        return None
    if not text.isdigit() or not 68 <= int(text) <= 65535:
        raise InvalidInput(
            f"FELIX_VETHMTU={text[:20]!r} is not an MTU; set 68-65535, or 0 to compute it"
        )
    return int(text)


def pod_mtu(host: int, settings: TunnelSettings, override: int | None = None) -> int:
    """The veth MTU pods get: ``override`` when given, else host − largest overhead."""
    if override is not None:
        return override
    overhead = max((OVERHEAD[k] for k in settings.kinds), default=0)
    return host - overhead


def publish_mtu(run_dir: RunDir, mtu: int) -> bool:
    """Write ``mtu`` to the run directory's mtu file atomically; True when it changed."""
    text = f"{mtu}\n"
    try:
        with open(run_dir.mtu, encoding="utf-8") as fh:
            if fh.read() == text:
                return False
    except OSError:
        pass
    os.makedirs(run_dir.path, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".mtu.", dir=run_dir.path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, run_dir.mtu)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True


def read_published_mtu(run_dir: RunDir, default: int = DEFAULT_HOST_MTU) -> int:
    """The MTU the agent published, or ``default`` when there is none (or it is bad)."""
    return run_dir.published_mtu(default)


def substitute_cni_mtu(conflist_text: str, mtu: int) -> str:
    """A stock Calico conflist with its unquoted ``__CNI_MTU__`` placeholder filled in."""
    return conflist_text.replace("__CNI_MTU__", str(mtu))
