"""The client's view of the ring: which nodes hold a key, and in what order
to try them.

A node publishes its ring at ``GET /ring``::

    {"node": "n1", "epoch": 3, "version": 17, "n_val": 3, "partitions": 64,
     "hash": "xxh3_64",
     "members": [{"id": "n1", "url": "http://127.0.0.1:7071", "up": true}, ...],
     "preference_lists": [["n1", "n2", "n3"], ...]}

``preference_lists[p]`` are partition ``p``'s N primaries in ring order,
the first being its owner. A key's partition is the top ``log2(partitions)``
bits of ``xxh3_64(key)``, exactly as the server computes it
(``dynkv_ring::Ring::partition_of_key``).

:meth:`RingView.targets` is the routing decision, a pure function of the
view, the key and which nodes the caller currently believes down: the
key's primaries that are up, in ring order (so the owner first), then the
nodes a sloppy quorum would fall back to (the owners of the following
partitions, walking clockwise, as the server picks its fallbacks), then
the primaries believed down, last, in case they are back. Nodes without a
known URL are left out.

``epoch`` and ``version`` change whenever the server's ring or membership
view changes: :meth:`RingView.replaces` tells the client whether a fetched view
replaces the one it holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from .xxh3 import xxh3_64

__all__ = ["Member", "RingView", "RingError", "partition_of_hash"]


class RingError(ValueError):
    """A ring view that cannot be used (malformed, or an unknown hash)."""


def partition_of_hash(h: int, partitions: int) -> int:
    """The partition holding hash ``h``: its top ``log2(partitions)`` bits."""
    bits = partitions.bit_length() - 1
    if bits == 0:
        return 0
    return h >> (64 - bits)


@dataclass(frozen=True)
class Member:
    """One node as the ring view describes it."""

    id: str
    #: The node's advertised public base URL (``http://host:port``).
    url: str | None
    #: Whether the node answering ``/ring`` believed this node up.
    up: bool = True


@dataclass(frozen=True)
class RingView:
    """A snapshot of the ring: members, partitions and preference lists."""

    node: str
    epoch: int
    version: int
    n_val: int
    partitions: int
    members: tuple[Member, ...]
    preference_lists: tuple[tuple[str, ...], ...]
    _by_id: Mapping[str, Member] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, doc: Mapping, url_overrides: Mapping[str, str] | None = None) -> "RingView":
        """Parses a ``GET /ring`` answer; ``url_overrides`` replaces the
        advertised URL of the nodes it names (a client outside docker, say,
        reaches the nodes on other ports than they advertise)."""
        try:
            hash_name = doc.get("hash", "xxh3_64")
            if hash_name != "xxh3_64":
                raise RingError(f"the ring hashes keys with {hash_name!r}; this client knows xxh3_64")
            partitions = int(doc["partitions"])
            if partitions < 1 or partitions & (partitions - 1):
                raise RingError(f"partitions must be a power of two, got {partitions}")
            overrides = dict(url_overrides or {})
            members = []
            for m in doc["members"]:
                mid = str(m["id"])
                url = overrides.get(mid, m.get("url"))
                members.append(Member(id=mid, url=_strip_slash(url), up=bool(m.get("up", True))))
            for mid, url in overrides.items():
                if mid not in {m.id for m in members}:
                    members.append(Member(id=mid, url=_strip_slash(url), up=True))
            lists = tuple(tuple(str(n) for n in pl) for pl in doc["preference_lists"])
            if len(lists) != partitions:
                raise RingError(
                    f"the ring has {partitions} partitions but {len(lists)} preference lists"
                )
            if any(not pl for pl in lists):
                raise RingError("a preference list is empty")
            view = cls(
                node=str(doc.get("node", "")),
                epoch=int(doc.get("epoch", 0)),
                version=int(doc.get("version", 0)),
                n_val=int(doc.get("n_val", len(lists[0]))),
                partitions=partitions,
                members=tuple(members),
                preference_lists=lists,
            )
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, RingError):
                raise
            raise RingError(f"malformed ring view: {e!r}") from e
        object.__setattr__(view, "_by_id", {m.id: m for m in view.members})
        return view

    def member(self, node_id: str) -> Member | None:
        """The member named ``node_id``, if the view knows it."""
        return self._by_id.get(node_id)

    def url_of(self, node_id: str) -> str | None:
        """The base URL of ``node_id``, if known."""
        m = self._by_id.get(node_id)
        return m.url if m else None

    def partition_of_key(self, key: str | bytes) -> int:
        """The partition holding ``key`` (a ``str`` is hashed as UTF-8)."""
        return partition_of_hash(xxh3_64(key), self.partitions)

    def preference_list(self, key: str | bytes) -> tuple[str, ...]:
        """The key's N primaries in ring order, the owner first."""
        return self.preference_lists[self.partition_of_key(key)]

    def walk(self, partition: int) -> list[str]:
        """Every node, in the order met walking clockwise from
        ``partition``: the partition's primaries first, then the owners of
        the following partitions, then any member not met."""
        seen: list[str] = []
        for n in self.preference_lists[partition]:
            if n not in seen:
                seen.append(n)
        everyone = len(self._by_id)
        for i in range(1, self.partitions + 1):
            if len(seen) >= everyone:
                break
            owner = self.preference_lists[(partition + i) % self.partitions][0]
            if owner not in seen:
                seen.append(owner)
        for m in self.members:
            if m.id not in seen:
                seen.append(m.id)
        return seen

    def targets(self, key: str | bytes, down: Iterable[str] = ()) -> list[str]:
        """The order in which to try nodes for ``key`` (see the module doc):
        live primaries, live fallbacks, then the nodes believed down.
        A node is believed down when the view says so or it is in ``down``
        (the client's own recent failures)."""
        p = self.partition_of_key(key)
        primaries = self.preference_lists[p]
        down = set(down)
        order = self.walk(p)
        live, dead = [], []
        for n in order:
            m = self._by_id.get(n)
            if m is None or not m.url:
                continue
            (dead if (n in down or not m.up) else live).append(n)
        # Believed-down primaries go before believed-down fallbacks: when
        # everyone looks down, the key's own replicas are the best guess.
        dead.sort(key=lambda n: (n not in primaries, order.index(n)))
        return live + dead

    def replaces(self, other: "RingView | None") -> bool:
        """Whether this freshly fetched view should replace ``other``: unless
        its ``(epoch, version)`` is older (the node that answered has not yet
        learnt the latest ring), the fresher view wins, which also brings
        the answering node's newer beliefs about who is up."""
        if other is None:
            return True
        return (self.epoch, self.version) >= (other.epoch, other.version)


def _strip_slash(url: str | None) -> str | None:
    if url is None:
        return None
    url = str(url)
    return url[:-1] if url.endswith("/") else url
