"""The one writer of `triage.dead_letters`: store, list, mark replayed, and purge expired originals.

A row holds the masked text and, until its `purge_after`, the original bytes encrypted for replay
(`triage.dlq_crypto`); the purge sets those to NULL and keeps the masked row for the audit. The worker
stores rows inside its batch transaction and purges at startup and hourly; `triage dlq` calls the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from triage.db import insert_from_json
from triage.names import T_DEAD_LETTERS, qualified
from triage.schemas import DeadLetter

_TABLE = qualified(T_DEAD_LETTERS)
_INSERT = insert_from_json(_TABLE, {
    "source_topic": "text", "partition": "integer", "offset": "bigint", "reason": "text", "original": "text",
    "encoding": "text", "key": "text", "received_at": "timestamptz", "original_encrypted": "bytea",
    "purge_after": "timestamptz"}, conflict='source_topic, partition, "offset"')
_PURGE = (f"UPDATE {_TABLE} SET original_encrypted = NULL "
          "WHERE original_encrypted IS NOT NULL AND purge_after <= now()")
_COLUMNS = ('id, received_at, source_topic, partition, "offset", key, reason, original, encoding, '
            "original_encrypted, purge_after, replayed_at")


@dataclass(frozen=True)
class StoredDeadLetter:
    """A row of `triage.dead_letters`; `original_encrypted` is None once purged (or for rows from before 0006)."""

    id: int
    received_at: datetime
    source_topic: str
    partition: int
    offset: int
    key: str | None
    reason: str
    original: str
    encoding: str
    original_encrypted: bytes | None
    purge_after: datetime | None
    replayed_at: datetime | None


def _record(d: DeadLetter, retention: timedelta) -> dict[str, Any]:
    """A dead letter as its row, in JSON for `_INSERT`: the encrypted bytes in bytea's hex form, and the purge date."""
    token = d.original_encrypted
    return {**d.model_dump(mode="json"), "original_encrypted": None if token is None else "\\x" + token.hex(),
            "purge_after": (d.received_at + retention).isoformat()}


async def insert_dead_letters(conn: psycopg.AsyncConnection[Any], dead: Sequence[DeadLetter],
                              retention: timedelta) -> None:
    """Store dead letters (each once, by topic/partition/offset), their originals kept for `retention`."""
    if dead:
        await conn.execute(_INSERT, (Jsonb([_record(d, retention) for d in dead]),))


async def purge_expired_async(conn: psycopg.AsyncConnection[Any]) -> int:
    """Drop the encrypted originals past their purge date; return how many."""
    cur = await conn.execute(_PURGE)
    return cur.rowcount


def purge_expired(url: str) -> int:
    """`purge_expired_async` for the CLI."""
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        return conn.execute(_PURGE).rowcount


def recent(url: str, limit: int = 20, held_only: bool = False) -> list[StoredDeadLetter]:
    """The newest dead letters (only those whose original is still held, if `held_only`)."""
    where = "WHERE original_encrypted IS NOT NULL " if held_only else ""
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        rows = conn.execute(f"SELECT {_COLUMNS} FROM {_TABLE} {where}ORDER BY id DESC LIMIT %s", (limit,)).fetchall()
    return [StoredDeadLetter(*r) for r in rows]


def by_ids(url: str, ids: Sequence[int]) -> dict[int, StoredDeadLetter]:
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        rows = conn.execute(f"SELECT {_COLUMNS} FROM {_TABLE} WHERE id = ANY(%s)", (list(ids),)).fetchall()
    return {r[0]: StoredDeadLetter(*r) for r in rows}


def mark_replayed(url: str, ids: Sequence[int]) -> None:
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"UPDATE {_TABLE} SET replayed_at = now() WHERE id = ANY(%s)", (list(ids),))
