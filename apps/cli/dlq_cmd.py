"""`triage dlq list | replay | purge`: look at dead letters, put their originals back, drop expired ones.

A dead letter's row shows only masked text; replay decrypts the original with the DLQ key (TRIAGE_DLQ_KEY
or <state_dir>/dlq.key) and produces it, byte for byte, to its source topic. The SQL lives in
`streams.dead_letters` (the one writer of `triage.dead_letters`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
from dataclasses import dataclass, field
from typing import Any

from apps.cli.common import UsageError, reachable_db_url
from apps.cli.dataclass_args import add_dataclass_arguments, dataclass_from_args
from streams import dead_letters
from triage import dlq_crypto
from triage.errors import TriageError
from triage.settings import get_settings

EXCERPT_CHARS = 60


@dataclass(frozen=True)
class ListArgs:
    limit: int = field(default=20, metadata={"help": "how many dead letters, newest first"})
    held: bool = field(default=False, metadata={"help": "only those whose original is still held for replay"})


@dataclass(frozen=True)
class ReplayArgs:
    ids: list[int] = field(metadata={"help": "id of a dead letter to replay (see `triage dlq list`); repeat",
                                     "flags": ("--id",), "metavar": "ID"})
    again: bool = field(default=False, metadata={"help": "replay dead letters that were already replayed"})


def register(sub: Any) -> None:
    p = sub.add_parser("dlq", help="dead letters: list them, replay their originals, purge expired originals")
    dsub = p.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    ls = dsub.add_parser("list", help="recent dead letters: reason, masked excerpt, whether the original is held")
    add_dataclass_arguments(ls, ListArgs)
    ls.set_defaults(func=cmd_list)
    r = dsub.add_parser("replay", help="decrypt originals and produce them back to their source topic")
    add_dataclass_arguments(r, ReplayArgs)
    r.set_defaults(func=cmd_replay)
    pg = dsub.add_parser("purge", help="drop the encrypted originals past their purge date now (rows stay)")
    pg.set_defaults(func=cmd_purge)


def _held(d: dead_letters.StoredDeadLetter) -> str:
    if d.replayed_at is not None:
        return f"replayed {d.replayed_at:%Y-%m-%d %H:%M}"
    if d.original_encrypted is None:
        return "original purged" if d.purge_after else "original not kept (before 0006)"
    return f"held until {d.purge_after:%Y-%m-%d}"


def cmd_list(args: argparse.Namespace) -> int:
    a = dataclass_from_args(ListArgs, args)
    if a.limit < 1:
        raise UsageError(f"--limit {a.limit} must be at least 1")
    rows = dead_letters.recent(reachable_db_url(), a.limit, held_only=a.held)
    if not rows:
        print("no dead letters")
    for d in rows:
        excerpt = " ".join(d.original.split())[:EXCERPT_CHARS]
        print(f"{d.id:>6}  {d.received_at:%Y-%m-%d %H:%M:%S}  {d.source_topic}  {_held(d)}  {d.reason}  | {excerpt}")
    return 0


def _key_bytes(key: str | None) -> bytes | None:
    """The message key as the worker stored it: text, or `base64:` and the bytes when they were not UTF-8."""
    if key is None:
        return None
    return base64.b64decode(key[7:]) if key.startswith("base64:") else key.encode()


async def _produce(bootstrap: str, items: list[tuple[str, bytes | None, bytes]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        await producer.start()
    except Exception as exc:  # noqa: BLE001 - reported with the fix
        await producer.stop()
        raise TriageError(f"cannot reach Kafka at {bootstrap} ({type(exc).__name__}: {exc}); start it with "
                          "`triage up` or set KAFKA_BOOTSTRAP_SERVERS to a reachable broker") from None
    try:
        await asyncio.gather(*[await producer.send(topic, value, key=key) for topic, key, value in items])
    finally:
        await producer.stop()


def cmd_replay(args: argparse.Namespace) -> int:
    a = dataclass_from_args(ReplayArgs, args)
    ids = list(dict.fromkeys(a.ids))
    url = reachable_db_url()
    found = dead_letters.by_ids(url, ids)
    cipher = dlq_crypto.cipher()
    items: list[tuple[str, bytes | None, bytes]] = []
    for i in ids:  # every one is checked before anything is sent
        d = found.get(i)
        if d is None:
            raise UsageError(f"no dead letter with id {i}; see `triage dlq list`")
        if d.replayed_at is not None and not a.again:
            raise UsageError(f"dead letter {i} was replayed at {d.replayed_at:%Y-%m-%d %H:%M:%S}; "
                             "pass --again to replay it once more")
        if d.original_encrypted is None:
            raise TriageError(f"dead letter {i} no longer holds its original: it was purged after "
                              "TRIAGE_DLQ_RETENTION_DAYS (or stored before migration 0006); nothing to replay")
        try:
            value = cipher.decrypt(d.original_encrypted)
        except dlq_crypto.DlqKeyError as exc:
            raise dlq_crypto.DlqKeyError(f"dead letter {i}: {exc}") from None
        items.append((d.source_topic, _key_bytes(d.key), value))
    asyncio.run(_produce(get_settings().bootstrap_servers, items))
    dead_letters.mark_replayed(url, ids)
    for i, (topic, _key, value) in zip(ids, items, strict=True):
        print(f"replayed dead letter {i} to {topic} ({len(value)} bytes)")
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    n = dead_letters.purge_expired(reachable_db_url())
    print(f"purged the originals of {n} expired dead letter(s)")
    return 0
