"""What the CNI edge and the node service need from IPAM: the ``Allocator`` interface.

Two implementations, one planner (``tortie.ipam.planner``) under both:

* ``tortie.ipam.service.Ipam`` — the plain allocator: each call on its own (the plugin
  process, the CLI).
* ``tortie.ipam.batch.GroupCommit`` — the allocator that batches: concurrent calls of one
  node service are planned together and written in one store transaction (ADDs and DELs
  alike); a lone call pays no extra latency.

``AllocatorFor`` gives the allocator of an open store (the node service keeps one
batching allocator per store).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

TYPE_CHECKING = False  # typing stays unimported at run time: plugin start-up
if TYPE_CHECKING:
    from typing import Protocol

    from tortie.datastore.base import Datastore
    from tortie.ipam.requests import AssignRequest, ReleaseOptions, ReleaseResult
else:
    Protocol = object


class Allocator(Protocol):
    def assign(self, request: AssignRequest) -> list[str]:
        """Every address the request asks for, or none (``tortie.ipam.assign``): the
        addresses with their block prefix (specific ones as /32, /128)."""
        ...

    def release_by_handle(self, handle_id: str) -> list[str]:
        """Free every address of the handle and delete it; the addresses freed.
        ``NotFound`` when the handle does not exist."""
        ...

    def release_addresses(self, items: Iterable[ReleaseOptions]) -> ReleaseResult:
        """Free the addresses named (each only if it still belongs to the handle and
        allocation named with it)."""
        ...


AllocatorFor = Callable[["Datastore"], Allocator]

__all__ = ["Allocator", "AllocatorFor"]
