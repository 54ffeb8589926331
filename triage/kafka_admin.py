"""Kafka admin calls that the worker and the stack share: is the broker answering, create the missing topics."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


async def _metadata(bootstrap: str, timeout: float) -> list[str]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout)
        return sorted(await asyncio.wait_for(admin.list_topics(), timeout))
    finally:
        await admin.close()


def check_broker(bootstrap: str, timeout: float = 3.0) -> str | None:
    """None when the broker answers a metadata request, else the reason."""
    try:
        asyncio.run(_metadata(bootstrap, timeout))
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not healthy", reported as text
        return f"{type(exc).__name__}: {exc}".strip(": ")


async def _create_topics(bootstrap: str, topics: Iterable[str], partitions: int) -> list[str]:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [NewTopic(t, partitions, 1) for t in topics if t not in existing]
        if wanted:
            await admin.create_topics(wanted)
        return [t.name for t in wanted]
    finally:
        await admin.close()


def ensure_topics(bootstrap: str, topics: Iterable[str], partitions: int) -> list[str]:
    """Create the missing topics; return the ones created."""
    return asyncio.run(_create_topics(bootstrap, topics, partitions))
