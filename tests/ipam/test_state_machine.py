"""A stateful property test of the IPAM service against a plain model.

Random auto-assigns, specific assigns, releases (by address with/without handle and
sequence number, by handle, by host affinity) and strict-affinity toggles run against
small pools, so exhaustion, borrowing and FIFO wrap happen often.  After every step
the store is decoded directly and every cross-record invariant is asserted (see
``helpers.check_invariants``), and the model (address → handle) must equal the store.
"""

from __future__ import annotations

import ipaddress
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from tortie.datastore.base import Datastore
from tortie.datastore.memory import MemoryDatastore
from tortie.datastore.sqlite import SqliteDatastore
from tortie.errors import InvalidInput, NotFound
from tortie.ipam.requests import AutoAssignArgs, ReleaseOptions
from tortie.ipam.service import Ipam
from tortie.model.resources import IPAMConfig

from .helpers import bare, check_invariants, create_pool, read_state

NODES = ("node-a", "node-b", "node-c")
HANDLES = tuple(f"h{i}" for i in range(5))

# family -> [(name, cidr, blockSize)]; the main pool has 4 blocks of 8, the small one 1,
# so 40 addresses per family: pools run dry, nodes borrow, FIFO free lists wrap.
POOLS: dict[int, list[tuple[str, str, int]]] = {
    4: [("v4-main", "10.0.0.0/27", 29), ("v4-small", "10.9.0.0/29", 29)],
    6: [("v6-main", "fd00::/123", 125), ("v6-small", "fd09::/125", 125)],
}
SETUPS = {"v4": (4,), "v6": (6,), "dual": (4, 6)}
OUTSIDE = {4: ["10.0.0.32", "192.168.1.1"], 6: ["fd00::20", "fe80::1"]}


class IpamMachine(RuleBasedStateMachine):
    backend = "memory"
    families: tuple[int, ...] = (4,)

    def __init__(self) -> None:
        super().__init__()
        self.tmpdir: str | None = None
        self.store: Datastore
        if self.backend == "sqlite":
            self.tmpdir = tempfile.mkdtemp(prefix="tortie-sm-")
            self.store = SqliteDatastore(str(Path(self.tmpdir) / "ipam.db"))
        else:
            self.store = MemoryDatastore()
        self.ipam = Ipam(self.store)
        self.model: dict[str, str | None] = {}
        self.strict = False
        self.nets = {v: [ipaddress.ip_network(c) for _n, c, _b in POOLS[v]] for v in self.families}
        self.pool_addresses = {
            v: [str(a) for net in self.nets[v] for a in net] for v in self.families
        }

    @initialize()
    def make_pools(self) -> None:
        for v in self.families:
            for name, cidr, block_size in POOLS[v]:
                create_pool(self.store, name, cidr, block_size)

    def teardown(self) -> None:
        self.store.close()
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    # ------------------------------------------------------------------ helpers

    def _family_blocks_ok_when_short(self, version: int, node: str) -> None:
        """A family came back short: prove nothing usable was left for ``node``."""
        state = read_state(self.store)
        for name, cidr, block_size in POOLS[version]:
            net = ipaddress.ip_network(cidr)
            for sub in net.subnets(new_prefix=block_size):
                block = state.blocks.get(str(sub))
                assert block is not None, (
                    f"IPv{version} short for {node} but block {sub} of {name} was never claimed"
                )
                if block.free == 0:
                    continue
                if self.strict:
                    assert block.host() != node, (
                        f"strict: {node} was short but its own block {sub} has {block.free} free"
                    )
                else:
                    assert block.strict_affinity and block.host() != node, (
                        f"{node} was short but block {sub} ({block.affinity}) has "
                        f"{block.free} borrowable addresses"
                    )

    def _seq_of(self, addr: str) -> int:
        found = self.ipam.find_allocation(addr)
        assert found is not None, f"{addr} is in the model but not allocated"
        block, ordinal = found
        return block.sequence_number_for_allocation[str(ordinal)]

    # -------------------------------------------------------------------- rules

    @rule(
        node=st.sampled_from(NODES),
        handle=st.sampled_from(HANDLES),
        num4=st.integers(0, 5),
        num6=st.integers(0, 5),
    )
    def auto_assign(self, node: str, handle: str, num4: int, num6: int) -> None:
        if 4 not in self.families:
            num4 = 0
        if 6 not in self.families:
            num6 = 0
        result = self.ipam.auto_assign(
            AutoAssignArgs(node=node, handle_id=handle, num4=num4, num6=num6)
        )
        for version, num, fam in ((4, num4, result.ipv4), (6, num6, result.ipv6)):
            assert len(fam.addresses) <= num
            for text in fam.addresses:
                addr, prefix = text.split("/")
                ip = ipaddress.ip_address(addr)
                assert ip.version == version
                assert any(ip in n for n in self.nets[version]), f"{text} outside the pools"
                assert int(prefix) == POOLS[version][0][2], f"{text} lacks the block prefix"
                assert str(ip) not in self.model, f"{ip} handed out while held"
                self.model[str(ip)] = handle
                found = self.ipam.find_allocation(str(ip))
                assert found is not None
                if found[0].host() != node:
                    assert not self.strict, f"{ip} borrowed from {found[0].cidr} under strict"
                    event(f"IPv{version} borrowed")
            if len(fam.addresses) < num:
                event(f"IPv{version} short ({'strict' if self.strict else 'not strict'})")
                assert any(m.startswith("No IPs available in pools: [") for m in fam.messages), (
                    fam.messages
                )
                if self.strict:
                    assert "No more free affine blocks and strict affinity enabled" in (
                        fam.messages
                    )
                self._family_blocks_ok_when_short(version, node)
            else:
                assert fam.messages == [], fam.messages

    @rule(
        node=st.sampled_from(NODES),
        handle=st.sampled_from(HANDLES),
        num4=st.integers(0, 5),
        num6=st.integers(0, 5),
    )
    def auto_assign_again(self, node: str, handle: str, num4: int, num6: int) -> None:
        """The same rule once more, so allocation outweighs release and pools fill."""
        self.auto_assign(node, handle, num4, num6)

    @rule(node=st.sampled_from(NODES))
    def auto_assign_missing_family(self, node: str) -> None:
        """Asking for a family without pools raises and assigns nothing at all."""
        if len(self.families) == 2:
            return
        args = AutoAssignArgs(node=node, handle_id="h-missing", num4=1, num6=1)
        with pytest.raises(NotFound, match=f"no configured Calico pools for node {node}"):
            self.ipam.auto_assign(args)
        assert self.ipam.get_handle("h-missing") is None

    @rule(
        data=st.data(),
        node=st.sampled_from(NODES),
        handle=st.sampled_from(HANDLES),
        outside=st.integers(0, 9),
    )
    def assign_ip(self, data: st.DataObject, node: str, handle: str, outside: int) -> None:
        version = data.draw(st.sampled_from(self.families))
        if outside == 0:
            addr = data.draw(st.sampled_from(OUTSIDE[version]))
            with pytest.raises(InvalidInput, match="not in a configured pool"):
                self.ipam.assign_ip(addr, handle, {}, node)
            return
        addr = data.draw(st.sampled_from(self.pool_addresses[version]))
        if addr in self.model:
            with pytest.raises(InvalidInput, match="Address already assigned in block"):
                self.ipam.assign_ip(addr, handle, {}, node)
            return
        if self.strict:
            found = self.ipam.find_block(addr)
            if found is not None and found.host() not in (None, node):
                with pytest.raises(InvalidInput, match="Block affinity"):
                    self.ipam.assign_ip(addr, handle, {}, node)
                return
        got = self.ipam.assign_ip(addr, handle, {"pod": "p"}, node)
        assert got == f"{addr}/{32 if version == 4 else 128}"
        self.model[addr] = handle

    @rule(data=st.data())
    def release_ips(self, data: st.DataObject) -> None:
        held = sorted(self.model)
        picks: list[str] = []
        if held:
            picks += data.draw(st.lists(st.sampled_from(held), max_size=4, unique=True))
        free = [a for v in self.families for a in self.pool_addresses[v] if a not in self.model]
        free += [a for v in self.families for a in OUTSIDE[v]]
        picks += data.draw(st.lists(st.sampled_from(free), max_size=2, unique=True))
        options: list[ReleaseOptions] = []
        expect_released: set[str] = set()
        expect_refused: set[str] = set()
        expect_missing: set[str] = set()
        for addr in picks:
            mode = data.draw(st.sampled_from(["plain", "handle", "wrong-handle", "seq", "stale"]))
            if addr not in self.model:
                expect_missing.add(addr)
                options.append(ReleaseOptions(addr))
                continue
            if mode == "plain":
                options.append(ReleaseOptions(addr))
                expect_released.add(addr)
            elif mode == "handle":
                options.append(ReleaseOptions(addr, handle_id=self.model[addr]))
                expect_released.add(addr)
            elif mode == "wrong-handle":
                options.append(ReleaseOptions(addr, handle_id="someone-else"))
                expect_refused.add(addr)
            elif mode == "seq":
                options.append(ReleaseOptions(addr, sequence_number=self._seq_of(addr)))
                expect_released.add(addr)
            else:
                options.append(ReleaseOptions(addr, sequence_number=self._seq_of(addr) - 1))
                expect_refused.add(addr)
        result = self.ipam.release_ips(options)
        assert {bare(a) for a in result.released} == expect_released
        assert len(result.released) == len(expect_released)
        assert {bare(a) for a, _why in result.refused} == expect_refused
        assert {bare(a) for a in result.not_allocated} == expect_missing
        for addr in expect_released:
            del self.model[addr]

    @rule(handle=st.sampled_from((*HANDLES, "never-used")))
    def release_by_handle(self, handle: str) -> None:
        mine = {a for a, h in self.model.items() if h == handle}
        if not mine:
            with pytest.raises(NotFound):
                self.ipam.release_by_handle(handle)
            return
        released = self.ipam.release_by_handle(handle)
        assert sorted(bare(a) for a in released) == sorted(mine)
        for addr in mine:
            del self.model[addr]

    @rule(node=st.sampled_from(NODES), must_be_empty=st.booleans())
    def release_host_affinities(self, node: str, must_be_empty: bool) -> None:
        before = read_state(self.store)
        mine = {c for (n, c) in before.affinities if n == node}
        if must_be_empty:
            expected = {c for c in mine if c not in before.blocks or before.blocks[c].empty}
        else:
            expected = mine
        released = self.ipam.release_host_affinities(node, must_be_empty)
        assert len(released) == len(set(released))
        assert set(released) == expected
        after = read_state(self.store)
        for cidr in expected:
            assert (node, cidr) not in after.affinities
            block = after.blocks.get(cidr)
            assert block is None or block.host() is None, f"{cidr} still affine to {node}"
        for cidr in mine - expected:
            assert after.blocks[cidr].host() == node

    @rule(strict=st.booleans())
    def configure_strict_affinity(self, strict: bool) -> None:
        self.ipam.set_config(IPAMConfig(strict_affinity=strict))
        self.strict = strict
        assert self.ipam.get_config().strict_affinity is strict

    # --------------------------------------------------------------- invariants

    @invariant()
    def store_is_consistent(self) -> None:
        state = check_invariants(self.store)
        assert state.held == self.model


def _run(backend: str, setup: str, examples: int) -> None:
    machine = type(
        f"IpamMachine_{backend}_{setup}",
        (IpamMachine,),
        {"backend": backend, "families": SETUPS[setup]},
    )
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            print_blob=True,
        ),
    )


@pytest.mark.parametrize("setup", sorted(SETUPS))
def test_ipam_state_machine_memory(setup: str) -> None:
    _run("memory", setup, 150)


@pytest.mark.parametrize("setup", sorted(SETUPS))
def test_ipam_state_machine_sqlite(setup: str) -> None:
    _run("sqlite", setup, 60)
