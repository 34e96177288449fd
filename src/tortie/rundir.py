"""The node's run directory (``$TORTIE_RUN_DIR``, default ``/var/run/tortie``): one value
owns its layout, so no module spells a file name of it.

Kept free of imports beyond ``os.path``: the thin CNI client loads it on every call.
"""

from __future__ import annotations

import os.path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT = "/var/run/tortie"


class RunDir:
    """Paths of everything the agent, BIRD and the CNI service keep in one directory."""

    __slots__ = ("path",)

    def __init__(self, path: str = DEFAULT) -> None:
        self.path = path

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RunDir:
        """``$TORTIE_RUN_DIR`` when set and not blank, else the default."""
        source = os.environ if env is None else env
        return cls(source.get("TORTIE_RUN_DIR", "").strip() or DEFAULT)

    def _file(self, name: str) -> str:
        return os.path.join(self.path, name)

    @property
    def cni_socket(self) -> str:
        """The CNI node service's socket (``tortie.cni.service``)."""
        return self._file("cni.sock")

    @property
    def agent_pid(self) -> str:
        """The running agent's pid, locked while it runs."""
        return self._file("agent.pid")

    @property
    def agent_status(self) -> str:
        """The agent's status document (``tortie node status``)."""
        return self._file("agent.json")

    @property
    def agent_log(self) -> str:
        return self._file("agent.log")

    @property
    def nodename(self) -> str:
        return self._file("nodename")

    @property
    def bird_config(self) -> str:
        return self._file("bird.cfg")

    @property
    def bird_socket(self) -> str:
        return self._file("bird.ctl")

    @property
    def bird_pid(self) -> str:
        return self._file("bird.pid")

    @property
    def bird_log(self) -> str:
        return self._file("bird.log")

    @property
    def mtu(self) -> str:
        """The MTU the CNI plugins give pods (written by the agent, read per call)."""
        return self._file("mtu")

    def published_mtu(self, default: int) -> int:
        """The pod MTU the agent published (``tortie.node.mtu``), or ``default`` when
        there is none or it is unreadable."""
        try:
            with open(self.mtu, encoding="ascii") as fh:
                text = fh.read(16).strip()
        except (OSError, ValueError):
            return default
        return int(text) if text.isdigit() and 68 <= int(text) <= 65535 else default

    def __repr__(self) -> str:
        return f"RunDir({self.path!r})"


DEFAULT_CNI_SOCKET = RunDir().cni_socket
