"""Helpers for the stream tests: run a real worker subprocess, produce to the real broker, poll Postgres."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import psycopg

from apps.stack.procs import free_port, spawn, stop_group
from triage.settings import PROJECT_ROOT

STREAM_PYTHON = PROJECT_ROOT / ".venv-stream" / "bin" / "python"


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll `check` until it returns something truthy; raise TimeoutError naming `what` (and the last value)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def count(url: str, sql: str, params: Sequence[Any] = ()) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql, params).fetchone()
    return int(row[0]) if row else 0


def rows(url: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return list(conn.execute(sql, params).fetchall())


async def _produce(bootstrap: str, topic: str, messages: Iterable[tuple[bytes | None, bytes]]) -> int:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    n = 0
    try:
        futures = []
        for key, value in messages:
            futures.append(await producer.send(topic, value=value, key=key))
            n += 1
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return n


def produce(bootstrap: str, topic: str, messages: Iterable[tuple[bytes | None, bytes]]) -> int:
    return asyncio.run(_produce(bootstrap, topic, messages))


async def read_values(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list[bytes]:
    """The first `expected` message values of `topic`, from the earliest offset (fails after `timeout`)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    out: list[bytes] = []
    try:
        async def loop() -> None:
            async for msg in consumer:
                out.append(msg.value or b"")
                if len(out) >= expected:
                    return

        await asyncio.wait_for(loop(), timeout)
    finally:
        await consumer.stop()
    return out


def ticket_bytes(message: dict[str, Any]) -> tuple[bytes, bytes]:
    return message["ticket_id"].encode(), json.dumps(message).encode()


class WorkerProcess:
    """`python -m streams worker` as a real subprocess, with its own web port and state folder."""

    def __init__(self, db_url: str, bootstrap: str, state_dir: Path, extra_env: dict[str, str] | None = None,
                 name: str = "worker") -> None:
        self.port = free_port()
        self.log_path = state_dir / f"{name}-{self.port}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
        env.update({
            "DATABASE_URL": db_url,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "TRIAGE_STATE_DIR": str(state_dir),
            "TRIAGE_WORKER_PORT": str(self.port),
            "TRIAGE_KAFKA_PARTITIONS": "4",
            **(extra_env or {}),
        })
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> WorkerProcess:
        self.proc = spawn([str(STREAM_PYTHON), "-m", "streams", "worker"], self.log_path, env=self.env,
                          cwd=PROJECT_ROOT)
        wait_for(self._joined, timeout, f"worker on port {self.port} to join its group; log: {self.log_path}",
                 interval=0.5)
        return self

    def _joined(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
        try:
            return bool(self.health().get("joined"))
        except OSError:
            return False

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as resp:
            return bytes(resp.read())

    def health(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.get("/health"))
        return data

    def metrics(self) -> str:
        return self.get("/metrics").decode()

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        stop_group(self.proc.pid, sig, timeout=timeout)
        return self.proc.wait(timeout=5)
