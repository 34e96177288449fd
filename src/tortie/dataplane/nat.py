"""Hand ``tortie.node.nat.render``'s script to ``nft`` (Debian ``nftables``).

``NatTables(netns).apply(text)`` runs ``nft -f -`` once — one kernel transaction that
replaces tortie's tables and touches no other table — but only when the kernel does not
already hold that rendering: one cheap ``nft list chains`` reads back the fingerprint each
tortie chain carries (sets are not listed, so the check costs the same with 10,000 pools).
A hand edit inside tortie's table is not seen by that check; ``apply(text, force=True)``
rewrites regardless (the agent's slow resync).  ``cleanup()`` removes tortie's tables and
nothing else.  ``netns`` (a name under /run/netns) runs ``nft`` inside that namespace
through ``ip netns exec``.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from tortie.dataplane.iproute import ip_binary
from tortie.errors import TortieError
from tortie.node.nat import FAMILIES, TABLE, NatRules, fingerprints, render

__all__ = ["NatTables", "nft_binary"]

_FALLBACK = ("/usr/sbin/nft", "/sbin/nft")


def nft_binary() -> str:
    """The path of ``nft``; a one-line ``TortieError`` saying how to install it."""
    found = shutil.which("nft") or next((p for p in _FALLBACK if os.access(p, os.X_OK)), None)
    if found is None:
        raise TortieError(
            "nft (nftables) is not installed, so natOutgoing cannot be programmed; "
            "install it (Debian/Ubuntu: apt-get install nftables)"
        )
    return found


class NatTables:
    """tortie's NAT tables in one network namespace (None: the caller's own)."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self.writes = 0  # scripts handed to nft by this object

    def _argv(self, *args: str) -> list[str]:
        nft = nft_binary()
        if self.netns is None:
            return [nft, *args]
        return [ip_binary(), "netns", "exec", self.netns, nft, *args]

    def _nft(self, *args: str, text: str | None = None) -> str:
        argv = self._argv(*args)
        try:
            proc = subprocess.run(
                argv, input=text, capture_output=True, text=True, timeout=60, check=False
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise TortieError(f"cannot run nft ({' '.join(args)}): {exc}") from None
        if proc.returncode != 0:
            lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
            why = lines[0] if lines else f"exit status {proc.returncode}"
            if "Operation not permitted" in proc.stderr:
                why += " (needs root or CAP_NET_ADMIN)"
            where = f" in network namespace {self.netns}" if self.netns else ""
            raise TortieError(f"nft {' '.join(args)}{where} failed: {why}")
        return proc.stdout

    def loaded(self) -> dict[str, str | None]:
        """Per family (``ip``, ``ip6``): the fingerprint of tortie's table in the kernel,
        or None when there is none."""
        return fingerprints(self._nft("list", "chains"))

    def apply(self, text: str, force: bool = False) -> bool:
        """Make the kernel hold ``text`` (a ``render`` result); True when nft was run."""
        if not force and self.loaded() == fingerprints(text):
            return False
        self._nft("-f", "-", text=text)
        self.writes += 1
        return True

    def cleanup(self) -> list[str]:
        """Remove tortie's tables; returns the ones that were there (``ip tortie``)."""
        present = [f"{family} {TABLE}" for family, fp in self.loaded().items() if fp]
        self._nft("-f", "-", text=render(NatRules()))
        self.writes += 1
        return present

    def listing(self) -> str:
        """``nft list table`` of each tortie table present (for status and debugging)."""
        loaded = self.loaded()
        return "".join(
            self._nft("list", "table", family, TABLE)
            for family in FAMILIES.values()
            if loaded.get(family)
        )
