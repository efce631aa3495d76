"""Sync from genesis: digests over the whole history, not only the recent window.

The node's own digest sync (``Node._sync_digests``) covers the PoET proofs, the ATXs of the
current and next epoch and the proposals and certificates of the last ``window`` layers: the
steady state, where only recent messages go missing. A node that joins late, or comes back
after a long outage, also lacks everything older. This adds keys for that:

- ``atx:{e}`` for every earlier epoch (the same key format as the recent sync, so the
  node's ``_sync_messages`` serves it);
- ``history:{a}-{b}``: the proposals (with their opinions), certificates (with their
  blocks and votes) and the transactions those proposals carry, of layers ``[a, b)``
  before the recent window, in chunks of `CHUNK` layers;
- ``txs:recent``: the transactions the recent window's proposals carry (a layer cannot be
  applied without them);
- any key a hook adds (`Syncer.add_source`: malfeasance proofs).

Two peers whose digests of a key differ send each other everything they hold under it; a
synced peer's old keys match and cost one hash each. What one exchange sends from history
is bounded (`BUDGET` messages, oldest first) so it fits the peer's send queue; the next
exchange (one per layer) sends the next part.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from ._codec import Json, hash_json

if TYPE_CHECKING:
    from ._node import Node

CHUNK = 16
BUDGET = 1500

Source = Callable[[], dict[str, tuple[str, Json]]]
"""A hook's messages: id -> (gossip topic, message)."""


class Syncer:
    """Digests and holdings for the node's gossip anti-entropy, from genesis on."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._sources: dict[str, Source] = {}
        self._budget = BUDGET
        self._digests: dict[str, tuple[tuple[object, ...], str]] = {}
        """A key's digest and what it was computed from (most change rarely)."""
        self._named: dict[str, tuple[tuple[object, ...], set[str], int]] = {}
        """A history chunk -> (its layers' stamps, the txs its proposals name, how many of
        them the mempool held when last counted)."""

    def add_source(self, key: str, source: Source) -> None:
        """Sync another set of messages under ``key`` (e.g. ``"malfeasance"``)."""
        self._sources[key] = source

    def _recent_start(self) -> int:
        node = self._node
        return max(0, node.current_layer() - node.config.mesh.window)

    def _history_keys(self) -> list[str]:
        node = self._node
        epoch = node.config.mesh.epoch(node.current_layer())
        keys = [f"atx:{e}" for e in range(epoch)]  # the node's own keys cover epoch, epoch+1
        end = self._recent_start()
        keys += [f"history:{a}-{min(a + CHUNK, end)}" for a in range(0, end, CHUNK)]
        return keys

    def _named_txs(self, first: int, end: int) -> Iterator[str]:
        """The ids of the txs the proposals of layers [first, end) name, in order."""
        for layer in range(first, end):
            for proposal in self._node.mesh.layer_proposals(layer).values():
                yield from proposal.get("txs", [])

    def _txs_of(self, first: int, end: int) -> dict[str, tuple[str, Json]]:
        mempool = self._node.mempool
        held: dict[str, tuple[str, Json]] = {}
        for tx_id in self._named_txs(first, end):
            tx = mempool.get(tx_id)
            if tx is not None:
                held[tx_id] = ("tx", tx)
        return held

    def _messages(self, key: str) -> dict[str, tuple[str, Json]]:
        node = self._node
        kind, _, arg = key.partition(":")
        if key in self._sources:
            return self._sources[key]()
        if kind == "history":
            first, end = (int(x) for x in arg.split("-"))
            held: dict[str, tuple[str, Json]] = {}
            for layer in range(first, end):
                held.update(node._sync_messages(f"proposal:{layer}"))
                held.update(node._sync_messages(f"certificate:{layer}"))
            held.update(self._txs_of(first, end))
            return held
        if key == "txs:recent":
            return self._txs_of(self._recent_start(), node.current_layer() + 1)
        return node._sync_messages(key)

    def digests(self) -> dict[str, str]:
        """Every key's digest: the node's recent window, then history, txs and hooks."""
        self._budget = BUDGET  # one exchange starts with a digest computation
        node = self._node
        keys = [*node._sync_keys(), *self._history_keys(), "txs:recent", *self._sources]
        digests: dict[str, str] = {}
        for key in keys:
            stamp = self._stamp(key)
            cached = self._digests.get(key)
            if stamp is not None and cached is not None and cached[0] == stamp:
                digests[key] = cached[1]
                continue
            digests[key] = hash_json(sorted(self._messages(key)))
            if stamp is not None:
                self._digests[key] = (stamp, digests[key])
        return digests

    def _stamp(self, key: str) -> tuple[object, ...] | None:
        """What the messages under ``key`` depend on (None: not known, always hash them).
        Without it every exchange (two per node and layer) re-hashed the whole history."""
        mesh = self._node.mesh
        kind, _, arg = key.partition(":")
        if key in self._sources:
            return None
        if kind in ("proposal", "certificate"):
            return (kind, mesh.layer_stamp(int(arg)))
        if kind == "atx":
            # Per epoch: a new ATX of the coming epoch left every older epoch's digest
            # to be hashed again (all of them: a cost growing with the history).
            return (kind, mesh.epoch_stamp(int(arg)))
        if kind == "malfeasance":
            return (kind, mesh.generation)
        if kind == "poet":
            return (kind, len(mesh.poet_proofs))
        if kind == "history":
            first, end = (int(x) for x in arg.split("-"))
            layers = tuple(mesh.layer_stamp(layer) for layer in range(first, end))
            return (layers, self._held_txs(key, layers, first, end))
        if key == "txs:recent":
            # The txs the window's proposals name and the mempool holds: they change when
            # a proposal of the window does (its layer's stamp), the window moves, or a tx
            # arrives (the mempool only grows).
            first, end = self._recent_start(), self._node.current_layer() + 1
            layers = tuple(mesh.layer_stamp(layer) for layer in range(first, end))
            return ("txs", first, layers, len(self._node.mempool.txs))
        return None

    def _held_txs(self, key: str, layers: tuple[object, ...], first: int, end: int) -> int:
        """How many of the txs named by the proposals of layers [first, end) the mempool
        holds. Not the mempool's size: every tx that arrived made every chunk of the
        history be hashed again (its certificates included), a cost growing with the
        history. Once a chunk's txs are all held they stay held (the mempool only grows),
        so a complete chunk is not counted again."""
        named = self._named.get(key)
        if named is None or named[0] != layers:
            named = (layers, set(self._named_txs(first, end)), -1)
        _, ids, held = named
        if held != len(ids):
            held = sum(tx_id in self._node.mempool.txs for tx_id in ids)
            self._named[key] = (layers, ids, held)
        return held

    def holdings(self, key: str) -> list[tuple[str, Json]]:
        """What this node holds under ``key`` (ATXs and history within the budget)."""
        held = list(self._messages(key).values())
        if key.startswith(("history:", "atx:")):
            held = held[: max(0, self._budget)]
            self._budget -= len(held)
        return held
