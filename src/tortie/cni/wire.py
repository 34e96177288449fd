"""The wire format between the thin CNI plugin and the node service, both directions.

One request per connection; each side closes its direction when it has sent everything.

request  ``tortie-cni/1 <plugin>\\n`` + environment as ``KEY=VALUE\\0`` entries +
         ``\\0`` + stdin (``<plugin>`` is ``ipam`` or ``main``);
answer   ``<exit code> <length>\\n`` + that many bytes of stdout.

No imports at all: the thin plugin loads this module once per pod and call.  The C thin
client speaks the same bytes; change them only with a new ``MAGIC``.
"""

MAGIC = b"tortie-cni/1 "
PLUGINS = (b"ipam", b"main")
EMPTY = "empty request (the client sent nothing); use the tortie plugins"
NOT_OURS = "not a tortie CNI request (wrong or missing header); use the tortie plugins"


class BadRequest(Exception):
    """A request the service cannot read; its text goes back as the CNI error."""


def encode_request(plugin: bytes, env: "dict[bytes, bytes]", stdin: bytes) -> bytes:
    entries = b"".join(k + b"=" + v + b"\0" for k, v in env.items())
    return MAGIC + plugin + b"\n" + entries + b"\0" + stdin


def could_be_request(head: bytes) -> bool:
    """False once the first bytes received cannot start a request (answer garbage at
    once, not after the read deadline)."""
    head = head[: len(MAGIC)]
    return MAGIC.startswith(head)


def decode_request(data: bytes) -> "tuple[bytes, dict[str, str], bytes]":
    """(plugin name, environment, stdin) of a complete request; ``BadRequest`` else."""
    if not data:
        raise BadRequest(EMPTY)
    if not data.startswith(MAGIC):
        raise BadRequest(NOT_OURS)
    head, sep, rest = data[len(MAGIC) :].partition(b"\n")
    if not sep or head not in PLUGINS:
        raise BadRequest(f"unknown plugin {head[:40]!r} in the request; expected ipam or main")
    env: dict[str, str] = {}
    pos = 0
    while True:
        end = rest.find(b"\0", pos)
        if end < 0:
            raise BadRequest("request environment is not terminated; the request was cut short")
        if end == pos:
            return head, env, rest[end + 1 :]
        name, eq, value = rest[pos:end].partition(b"=")
        if not eq or not name:
            raise BadRequest("request environment holds an entry without '='")
        env[name.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos = end + 1


def encode_answer(code: int, out: bytes) -> bytes:
    return b"%d %d\n" % (code, len(out)) + out


def decode_answer(data: bytes) -> "tuple[int, bytes] | None":
    """(exit code, stdout) of a complete answer; None for a partial or garbled one."""
    head, sep, body = data.partition(b"\n")
    parts = head.split(b" ")
    if not sep or len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    if len(body) != int(parts[1]):
        return None
    return int(parts[0]), body
