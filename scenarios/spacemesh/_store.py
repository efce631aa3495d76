"""A node's data directory: its messages, own ATXs, accounts and address book in SQLite
(as go-spacemesh).

Messages (PoET proofs, ATXs, proposals, hare votes, certificates, transactions) are kept in
arrival order; a restarted node feeds them to its mesh again and so decides the same layers
(the mesh is a pure function of its messages). The node's own ATX for each epoch is written
*before* it is gossiped, so a node restarted in the same epoch publishes that one again
instead of building a second, conflicting ATX. The accounts of the last applied layer are
kept too, for inspection and for the restart to check itself against, and so is the
address book (every address the node knows, and which it was connected to): a restarted
node dials its old peers at once, as a go-spacemesh node does from its persisted book.

Messages are committed in batches, one transaction each, at least every `FLUSH_S` seconds
(the node calls `flush`) or `FLUSH_ROWS` messages: a commit per message cost about 60 us
of CPU and two writes, most of what keeping a message cost, on each of a hundred nodes.
A node killed with SIGKILL so loses at most the messages of its last `FLUSH_S` seconds,
which its restart gets back from its peers by sync as it gets the rest of what it missed.
The node's own ATX is never among them: `keep_own_atx` commits what is pending, then it.

As go-spacemesh, the database runs in WAL mode with ``synchronous=NORMAL``: a commit is
written to the WAL but not flushed to the disk, so a killed process loses nothing it
committed (the kernel holds what it wrote) and only a crash of the machine could lose the
last commits. With the default (``FULL``), every message cost an fsync that stalled the
node's event loop: 0.65 ms alone, far more with a hundred nodes sharing one disk.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterator
from typing import Any

from ._codec import Json, canonical, decode, hash_json

FILENAME = "state.sqlite"
FLUSH_S = 1.0
"""How often a node commits the messages it kept since the last commit (every 0.25 s, the
commits were 3 % of the node CPU of a 40-node run at 4 s layers)."""
FLUSH_ROWS = 256
"""Messages kept before they are committed without waiting for `FLUSH_S`."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS own_atxs (epoch INTEGER PRIMARY KEY, id TEXT NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
    address TEXT PRIMARY KEY, balance INTEGER NOT NULL, nonce INTEGER NOT NULL, public TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS peers (address TEXT PRIMARY KEY, connected INTEGER NOT NULL);
"""


def open_database(data_dir: str, filename: str, schema: str) -> sqlite3.Connection:
    """``filename`` in ``data_dir`` (both created when missing), in WAL mode with
    ``synchronous=NORMAL`` and ``schema`` applied; ValueError if it cannot be."""
    try:
        os.makedirs(data_dir, exist_ok=True)
        db = sqlite3.connect(os.path.join(data_dir, filename), isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(schema)
    except (OSError, sqlite3.Error) as exc:
        raise ValueError(f"data_dir {data_dir!r} unusable: {exc}") from None
    return db


class Store:
    """The SQLite database in ``data_dir`` (created when missing)."""

    def __init__(self, data_dir: str) -> None:
        self._db = open_database(data_dir, FILENAME, _SCHEMA)
        self._pending: list[tuple[str, str, bytes]] = []

    def close(self) -> None:
        """Commit what is pending and close the database (idempotent)."""
        self.flush()
        self._db.close()

    def add_message(self, kind: str, msg: Json) -> None:
        """Keep a message (again: no-op), committed by the next `flush` at the latest."""
        body = canonical(msg)
        # The id is hash_json([kind, msg]) without encoding the message a second time.
        key = hashlib.sha256(b'["%s",%s]' % (kind.encode(), body)).hexdigest()
        self._pending.append((key, kind, body))
        if len(self._pending) >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        """Commit the messages kept since the last commit, in one transaction."""
        if not self._pending:
            return
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR IGNORE INTO messages (id, kind, body) VALUES (?, ?, ?)", self._pending
            )
        self._pending.clear()

    def messages(self) -> Iterator[tuple[str, Json]]:
        """(kind, message) of every kept message, in arrival order."""
        self.flush()
        for kind, body in self._db.execute("SELECT kind, body FROM messages ORDER BY seq"):
            yield str(kind), decode(body)

    def keep_own_atx(self, epoch: int, atx: dict[str, Any]) -> None:
        """Record the node's ATX targeting ``epoch`` (durably, before it is published,
        after every message kept before it)."""
        self.flush()
        self._db.execute(
            "INSERT OR IGNORE INTO own_atxs (epoch, id, body) VALUES (?, ?, ?)",
            (epoch, hash_json(atx), canonical(atx)),
        )

    def own_atxs(self) -> dict[int, dict[str, Any]]:
        """The node's ATXs by target epoch."""
        rows = self._db.execute("SELECT epoch, body FROM own_atxs ORDER BY epoch")
        return {int(epoch): decode(body) for epoch, body in rows}

    def save_accounts(self, layer: int, accounts: dict[str, tuple[int, int, str]]) -> None:
        """Replace the kept accounts with those after ``layer``: address -> (balance, nonce,
        owner key)."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM accounts")
            self._db.executemany(
                "INSERT INTO accounts VALUES (?, ?, ?, ?)",
                [(a, b, n, p) for a, (b, n, p) in sorted(accounts.items())],
            )
            self._db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('accounts_layer', ?)", (str(layer),)
            )

    def save_peers(self, known: set[str], connected: set[str]) -> None:
        """Replace the kept address book: every address the node knows, and which of them
        it was connected to (go-spacemesh keeps its address book on disk likewise)."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM peers")
            self._db.executemany(
                "INSERT INTO peers VALUES (?, ?)", [(a, a in connected) for a in sorted(known)]
            )

    def peers(self) -> tuple[list[str], list[str]]:
        """The kept address book: (every known address, those it was connected to)."""
        rows = self._db.execute("SELECT address, connected FROM peers ORDER BY address").fetchall()
        return [str(a) for a, _ in rows], [str(a) for a, c in rows if c]

    def load_accounts(self) -> tuple[int, dict[str, tuple[int, int, str]]] | None:
        """The kept accounts and their layer (None: never saved)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'accounts_layer'").fetchone()
        if row is None:
            return None
        rows = self._db.execute("SELECT address, balance, nonce, public FROM accounts")
        return int(row[0]), {str(a): (int(b), int(n), str(p)) for a, b, n, p in rows}
