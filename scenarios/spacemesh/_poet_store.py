"""A PoET's data directory: its rounds' members and its proofs in SQLite.

spacemeshos/poet keeps its rounds on disk, so a restarted PoET still closes the rounds it
had open, with the members they had, and does not lose a round to a restart. This keeps
what that takes: each challenge as it joins its round (in order: the order is the
statement's), and each proof once made, so that a restart makes none twice.
"""

from __future__ import annotations

from typing import Any

from ._codec import canonical, decode
from ._store import open_database

FILENAME = "poet.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS members (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    round INTEGER NOT NULL,
    challenge BLOB NOT NULL,
    UNIQUE (round, challenge)
);
CREATE TABLE IF NOT EXISTS proofs (round INTEGER PRIMARY KEY, body BLOB NOT NULL);
"""


class PoetStore:
    """The SQLite database in ``data_dir`` (created when missing)."""

    def __init__(self, data_dir: str) -> None:
        # As the node's store (WAL): a killed process loses nothing it committed.
        self._db = open_database(data_dir, FILENAME, _SCHEMA)

    def close(self) -> None:
        """Close the database (idempotent)."""
        self._db.close()

    def add_member(self, round_id: int, challenge: bytes) -> None:
        """Keep a challenge of round ``round_id`` (again: no-op), committed at once."""
        self._db.execute(
            "INSERT OR IGNORE INTO members (round, challenge) VALUES (?, ?)", (round_id, challenge)
        )

    def members(self) -> dict[int, list[bytes]]:
        """Each kept round's challenges, in the order they joined it."""
        rounds: dict[int, list[bytes]] = {}
        for round_id, challenge in self._db.execute(
            "SELECT round, challenge FROM members ORDER BY seq"
        ):
            rounds.setdefault(int(round_id), []).append(bytes(challenge))
        return rounds

    def keep_proof(self, round_id: int, proof: dict[str, Any]) -> None:
        """Keep the proof of round ``round_id``."""
        self._db.execute(
            "INSERT OR IGNORE INTO proofs (round, body) VALUES (?, ?)", (round_id, canonical(proof))
        )

    def proofs(self) -> dict[int, dict[str, Any]]:
        """Every kept proof by round."""
        rows = self._db.execute("SELECT round, body FROM proofs ORDER BY round")
        return {int(r): decode(body) for r, body in rows}
