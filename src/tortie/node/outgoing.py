"""natOutgoing as a reconciler part (``tortie.node.reconciler``): tortie's nftables tables
follow the pools, the FelixConfigurations and the ``FELIX_*`` environment.

Desired state: the ``nft`` script ``tortie.node.nat.render`` makes of the pools, the NAT
settings (``default`` < ``node.<name>`` < environment, ``tortie.node.natsettings``) and the
cluster's host addresses.  Applied when it changes (``NatTables`` runs nothing when the
kernel already holds that rendering); on every dataplane resync the fingerprint check runs
again, and every ``FORCE_EVERY`` seconds the tables are rewritten regardless, so a hand
edit inside tortie's own table is undone too.  The agent never removes the tables when it
stops: established flows keep their translation across a restart (``tortie node cleanup``
removes them).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from tortie.datastore import keys
from tortie.errors import TortieError
from tortie.node.nat import NatRules, desired, host_ips, render
from tortie.node.natsettings import nat_settings

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging

    from tortie.node.cache import ClusterView
    from tortie.node.hostprep import NatApplier
    from tortie.node.startup import StartupResult


FORCE_EVERY = 300.0
EMPTY = render(NatRules())


class NatPart:
    name = "natOutgoing"
    kernel = True

    def __init__(self, tables: NatApplier, env: Mapping[str, str], log: logging.Logger) -> None:
        self.tables = tables
        self.env = dict(env)
        self.log = log
        self._said: frozenset[str] = frozenset()
        self._forced = time.monotonic()
        self._applied_once = False

    def desired(self, view: ClusterView, me: StartupResult) -> object:
        felix = view.felix_configurations
        settings = nat_settings(
            felix.get(keys.resource_key("felixconfigurations", "default")),
            felix.get(keys.resource_key("felixconfigurations", f"node.{me.node_name}")),
            self.env,
        )
        for line in sorted(set(settings.problems) - self._said):
            self.log.warning("FelixConfiguration: %s", line)
        self._said = frozenset(settings.problems)
        return render(desired(view.pools, settings, host_ips(view.nodes)))

    def apply(self, desired: object) -> bool:
        assert isinstance(desired, str)
        now = time.monotonic()
        force = now - self._forced >= FORCE_EVERY
        try:
            wrote = self.tables.apply(desired, force=force)
        except TortieError:
            if desired == EMPTY and not self._applied_once:
                return True  # no natOutgoing pool and no nft here: nothing to remove
            raise
        if force:
            self._forced = now
        if wrote and not (force and self._applied_once):
            self.log.info(
                "natOutgoing: %s",
                "tables replaced" if desired != EMPTY else "no natOutgoing pool: tables removed",
            )
        self._applied_once = True
        return True
