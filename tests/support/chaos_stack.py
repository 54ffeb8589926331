"""Fault-injection toolkit: a private stack, real worker subprocesses, a webhook receiver and the verifier.

Everything runs on 127.0.0.1 in one temporary folder: an embedded PostgreSQL (stoppable and restartable
on the same data), an embedded broker, `python -m streams worker` and `python -m streams.drafting_worker` as
real subprocesses (killed with SIGKILL on command), and an HTTP receiver that applies each webhook
effect once per Idempotency-Key. The verifier compares the input set with what came out: one decision
row per valid ticket, one dead-letter row per malformed message (by topic/partition/offset), one
feedback row per event, one applied effect per outbox webhook key.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg

from apps.simulator import MALFORMED, TicketGenerator, feedback_for
from apps.stack.kafka import EmbeddedKafka
from apps.stack.postgres import EmbeddedPostgres
from apps.stack.procs import free_port, spawn, stop_group
from tests.support.stream_helpers import wait_for
from triage import db
from triage.kafka_admin import ensure_topics
from triage.names import TOPIC_FEEDBACK, TOPIC_RAW, TOPICS
from triage.settings import PROJECT_ROOT

STREAM_PYTHON = PROJECT_ROOT / ".venv-stream" / "bin" / "python"
MODEL_NAME = "triage-classifier"
PARTITIONS = 4
OUTAGE_LINE = "postgres unavailable"
RECOVERY_LINE = "postgres is back"


def say(msg: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def tiny_model() -> Path:
    """The small real model that `tests.support.tiny_model` builds, cached by the hash of its sources."""
    from tests.support.tiny_model import cached_tiny_model

    return cached_tiny_model()


class Stack:
    """Embedded PostgreSQL + broker in `work`, a migrated database with the tiny model as champion."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.pg = EmbeddedPostgres(work / "pg", free_port(), work / "postgres.log")
        self.kafka = EmbeddedKafka(free_port(), work / "kafka.log")
        self.pg_proc: subprocess.Popen[bytes] | None = None
        self.kafka_proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    @property
    def bootstrap(self) -> str:
        return self.kafka.bootstrap

    def start(self) -> Stack:
        """Start both services and prepare the database; on any failure stop whatever was started."""
        try:
            return self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> Stack:
        from ml import registry

        model = tiny_model()
        self.pg_proc = self.pg.start()
        self.kafka_proc = self.kafka.start()
        ensure_topics(self.bootstrap, TOPICS, PARTITIONS)
        db.ensure_database(self.pg.url(), "triage")
        self.url = self.pg.url("triage")
        db.migrate(self.url)
        registry.register(self.url, model, name=MODEL_NAME, status="champion", changed_by="chaos",
                          reason="fault injection", models_dir=self.work / "models")
        return self

    def stop_postgres(self) -> None:
        if self.pg_proc is not None:
            stop_group(self.pg_proc.pid, signal.SIGINT)
            self.pg_proc = None

    def start_postgres(self) -> None:
        self.pg_proc = self.pg.start()

    def close(self) -> None:
        self.stop_postgres()
        self.pg.discard()
        if self.kafka_proc is not None:
            stop_group(self.kafka_proc.pid)
            self.kafka_proc = None

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class Process:
    """A stream or drafting worker as a real subprocess with its own port, state folder and log."""

    def __init__(self, stack: Stack, name: str, module: str = "streams", extra_env: dict[str, str] | None = None,
                 args: Iterable[str] = ("worker",), port: int | None = None) -> None:
        self.port = port or free_port()
        self.name = name
        self.module = module
        self.args = list(args)
        self.log_path = stack.work / "logs" / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
        env.update({"DATABASE_URL": stack.url, "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap,
                    "TRIAGE_STATE_DIR": str(stack.work / "state"), "TRIAGE_WORKER_PORT": str(self.port),
                    "TRIAGE_KAFKA_PARTITIONS": str(PARTITIONS), **(extra_env or {})})
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self, timeout: float = 120.0, health: str = "/health") -> Process:
        self.proc = spawn([str(STREAM_PYTHON), "-m", self.module, *self.args], self.log_path, env=self.env,
                          cwd=PROJECT_ROOT)
        wait_for(lambda: self._ready(health), timeout, f"{self.name} to start; log: {self.log_path}")
        return self

    def _ready(self, path: str) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
        try:
            body = json.loads(self.get(path))
        except (OSError, ValueError):
            return False
        return bool(body.get("joined", True))

    def get(self, path: str) -> bytes:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as resp:
            return bytes(resp.read())

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL the whole process group: no shutdown hooks, no final commit."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.kills += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_group(self.proc.pid, signal.SIGTERM, timeout=25)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def peak_rss_mib(self) -> float:
        """VmHWM of the worker's python process (the group leader), in MiB; 0 when it is gone."""
        if self.proc is None:
            return 0.0
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
        except OSError:
            pass
        return 0.0


def stream_worker(stack: Stack, name: str, extra_env: dict[str, str] | None = None) -> Process:
    return Process(stack, name, "streams", extra_env, ("worker",))


def drafting_worker(stack: Stack, name: str, extra_env: dict[str, str] | None = None) -> Process:
    """A drafting-only worker (drafting agent + outbox dispatcher); its web port serves `/drafting`."""
    port = free_port()
    return Process(stack, name, "streams.drafting_worker", extra_env, ("--web-port", str(port)), port=port)


class _HookHandler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        receiver: WebhookReceiver = self.server.owner  # type: ignore[attr-defined]
        key = self.headers.get("Idempotency-Key") or ""
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status = receiver.accept(key, raw)
        body = json.dumps({"ok": status == 200}).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


class WebhookReceiver:
    """A ticketing API on 127.0.0.1: applies each Idempotency-Key's effect once, counts every POST.

    `down()` closes the listening socket (connections are refused); `up()` listens on the same port again.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.lock = threading.Lock()
        self.posts: Counter[str] = Counter()
        self.successes: Counter[str] = Counter()
        self.effects: dict[str, dict[str, Any]] = {}
        self.refused_while_down = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def accept(self, key: str, raw: bytes) -> int:
        if not key:
            return 400
        with self.lock:
            self.posts[key] += 1
            self.successes[key] += 1
            if key not in self.effects:
                self.effects[key] = json.loads(raw or b"{}")
        return 200

    def up(self) -> WebhookReceiver:
        httpd = ThreadingHTTPServer(("127.0.0.1", self.port), _HookHandler)
        httpd.daemon_threads = True
        httpd.owner = self  # type: ignore[attr-defined]
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def down(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> WebhookReceiver:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()


@dataclass
class Inputs:
    """What a scenario sends: valid tickets by id, malformed payloads, feedback events, and where each landed."""

    tickets: list[tuple[str, bytes]] = field(default_factory=list)
    malformed: list[bytes] = field(default_factory=list)
    feedback: list[tuple[str, bytes]] = field(default_factory=list)
    malformed_at: set[tuple[int, int]] = field(default_factory=set)
    feedback_bad_at: set[tuple[int, int]] = field(default_factory=set)
    produced: int = 0

    @property
    def valid_ids(self) -> set[str]:
        return {tid for tid, _ in self.tickets}

    @property
    def feedback_ids(self) -> set[str]:
        return {eid for eid, _ in self.feedback}


def build_inputs(n_tickets: int, seed: int, malformed_per_1000: int = 20, feedback_per_1000: int = 50,
                 pii_rate: float = 0.3) -> Inputs:
    gen = TicketGenerator(seed=seed, pii_rate=pii_rate)
    rng = random.Random(seed)
    inputs = Inputs()
    for _ in range(n_tickets):
        sim = gen.generate()
        tid = sim.message["ticket_id"]
        inputs.tickets.append((tid, json.dumps(sim.message).encode()))
        if rng.random() * 1000 < feedback_per_1000:
            fb = feedback_for(sim.intent, sim.urgency, {"ticket_id": tid}, rng)
            inputs.feedback.append((fb["event_id"], json.dumps(fb).encode()))
    n_bad = max(1, n_tickets * malformed_per_1000 // 1000)
    inputs.malformed = list(itertools.islice(itertools.cycle(MALFORMED), n_bad))
    return inputs


def chunks(inputs: Inputs, parts: int, seed: int) -> list[list[tuple[str, bytes | None, bytes]]]:
    """The input as (topic, key, value) in `parts` interleaved chunks: tickets, malformed, feedback."""
    rng = random.Random(seed)
    items: list[tuple[str, bytes | None, bytes]] = [(TOPIC_RAW, tid.encode(), v) for tid, v in inputs.tickets]
    for raw in inputs.malformed:
        items.insert(rng.randrange(len(items) + 1), (TOPIC_RAW, None, raw))
    for eid, v in inputs.feedback:
        items.insert(rng.randrange(len(items) + 1), (TOPIC_FEEDBACK, eid.encode(), v))
    size = -(-len(items) // parts)
    return [items[i:i + size] for i in range(0, len(items), size)]


async def _produce(bootstrap: str, items: list[tuple[str, bytes | None, bytes]]) -> list[tuple[str, int, int]]:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    try:
        futures = [await producer.send(topic, value=value, key=key) for topic, key, value in items]
        metas = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [(m.topic, m.partition, m.offset) for m in metas]


def produce(bootstrap: str, inputs: Inputs, items: list[tuple[str, bytes | None, bytes]]) -> None:
    """Send `items` and remember where each malformed message landed (its dead letter's key)."""
    malformed = set(inputs.malformed)
    where = asyncio.run(_produce(bootstrap, items))
    for (topic, key, value), (_t, partition, offset) in zip(items, where, strict=True):
        if topic == TOPIC_RAW and key is None and value in malformed:
            inputs.malformed_at.add((partition, offset))
    inputs.produced += len(items)


def produce_raw(bootstrap: str, topic: str, values: list[bytes]) -> list[tuple[int, int]]:
    where = asyncio.run(_produce(bootstrap, [(topic, None, v) for v in values]))
    return [(p, o) for _t, p, o in where]


def scalar(url: str, sql: str, params: Iterable[Any] = ()) -> int:
    with psycopg.connect(url, connect_timeout=5) as conn:
        row = conn.execute(sql, tuple(params)).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def fetch(url: str, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, connect_timeout=5) as conn:
        return list(conn.execute(sql, tuple(params)).fetchall())


def progress(url: str) -> tuple[int, int, int]:
    try:
        return (scalar(url, "SELECT count(*) FROM triage.decisions"),
                scalar(url, "SELECT count(*) FROM triage.dead_letters"),
                scalar(url, "SELECT count(*) FROM triage.feedback"))
    except psycopg.Error:
        return (-1, -1, -1)


def wait_drained(url: str, inputs: Inputs, timeout: float, extra_dlq: int = 0) -> bool:
    """Wait until every input has an outcome row (or the timeout passes; the verifier then says what is missing)."""
    want = (len(inputs.tickets), len(inputs.malformed) + extra_dlq, len(inputs.feedback))
    try:
        wait_for(lambda: all(a >= b for a, b in zip(progress(url), want, strict=True)), timeout,
                 f"decisions/dead letters/feedback to reach {want}", interval=1.0)
        return True
    except TimeoutError as exc:
        say(str(exc))
        return False


def wait_actions_settled(url: str, receiver: WebhookReceiver, timeout: float) -> bool:
    """Wait until drafting has caught up (every decision that takes an action has one in the outbox) and no
    webhook action is pending or failed; the receiver then holds every delivered key."""
    def settled() -> bool:
        try:
            waiting = scalar(url, "SELECT count(*) FROM triage.decisions d WHERE d.route <> 'auto_resolve' AND "
                                  "NOT EXISTS (SELECT 1 FROM triage.actions a WHERE a.ticket_id = d.ticket_id)")
            open_ = scalar(url, "SELECT count(*) FROM triage.actions WHERE adapter = 'webhook' "
                                "AND status IN ('pending', 'failed')")
        except psycopg.Error:
            return False
        return waiting == 0 and open_ == 0

    try:
        wait_for(settled, timeout, "drafting to catch up and the webhook outbox to be delivered", interval=2.0)
        return True
    except TimeoutError as exc:
        say(str(exc))
        return False


@dataclass
class ScenarioResult:
    """Input set vs output set for one scenario (the row of the chaos table)."""

    scenario: str
    tickets_in: int
    decisions: int
    dlq: int
    effects: int
    duplicates: int
    lost: int
    passed: bool
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "tickets_in": self.tickets_in, "decisions": self.decisions,
                "dlq": self.dlq, "effects": self.effects, "duplicates": self.duplicates, "lost": self.lost,
                "pass": self.passed, "details": self.details}


def verify(scenario: str, url: str, inputs: Inputs, receiver: WebhookReceiver | None = None,
           extra_checks: dict[str, bool] | None = None) -> ScenarioResult:
    """Every valid ticket one decision row, every malformed message one dead letter, every feedback event one
    row, every webhook action one applied effect; nothing extra, nothing missing."""
    valid = inputs.valid_ids
    decided = Counter(r[0] for r in fetch(url, "SELECT ticket_id FROM triage.decisions"))
    tickets_rows = Counter(r[0] for r in fetch(url, "SELECT ticket_id FROM triage.tickets"))
    dead = Counter((r[0], r[1]) for r in fetch(url, "SELECT partition, \"offset\" FROM triage.dead_letters "
                                                    "WHERE source_topic = %s", (TOPIC_RAW,)))
    fb = Counter(r[0] for r in fetch(url, "SELECT event_id FROM triage.feedback"))
    details: dict[str, Any] = {}
    lost_decisions = sorted(valid - set(decided))
    extra_decisions = sorted(set(decided) - valid)
    dup_decisions = sum(c - 1 for c in decided.values() if c > 1) + sum(c - 1 for c in tickets_rows.values() if c > 1)
    lost_dlq = sorted(inputs.malformed_at - set(dead))
    wrong_dlq = sorted(set(dead) - inputs.malformed_at)  # a valid ticket dead-lettered, or a stray row
    dup_dlq = sum(c - 1 for c in dead.values() if c > 1)
    lost_fb = sorted(inputs.feedback_ids - set(fb))
    dup_fb = sum(c - 1 for c in fb.values() if c > 1)
    details.update(lost_decisions=lost_decisions[:20], n_lost_decisions=len(lost_decisions),
                   extra_decisions=extra_decisions[:20], lost_dead_letters=lost_dlq[:20],
                   n_lost_dead_letters=len(lost_dlq), unexpected_dead_letters=wrong_dlq[:20],
                   n_unexpected_dead_letters=len(wrong_dlq), feedback_in=len(inputs.feedback),
                   feedback_rows=len(fb), lost_feedback=lost_fb[:20], n_lost_feedback=len(lost_fb))
    effects = 0
    lost_effects: list[str] = []
    dup_effects = 0
    if receiver is not None:
        outbox = {r[0]: r[1] for r in fetch(url, "SELECT idempotency_key, status FROM triage.actions "
                                                 "WHERE adapter = 'webhook'")}
        with receiver.lock:
            applied = set(receiver.effects)
            redelivered = {k: c - 1 for k, c in receiver.successes.items() if c > 1}
        effects = len(applied & set(outbox))
        lost_effects = sorted(set(outbox) - applied)
        unexpected = sorted(applied - set(outbox))
        # Decisions that should have produced an action (every route but auto_resolve) and have none at all.
        no_action = fetch(url, "SELECT d.ticket_id FROM triage.decisions d WHERE d.route <> 'auto_resolve' AND NOT "
                               "EXISTS (SELECT 1 FROM triage.actions a WHERE a.ticket_id = d.ticket_id)")
        details.update(outbox_webhook=len(outbox), outbox_status=dict(Counter(outbox.values())),
                       lost_effects=lost_effects[:20], n_lost_effects=len(lost_effects),
                       unexpected_effects=unexpected[:20], redelivered_posts=sum(redelivered.values()),
                       redelivered_keys=len(redelivered), decisions_without_actions=len(no_action),
                       decisions_without_actions_sample=[r[0] for r in no_action[:10]])
        lost_effects += [r[0] for r in no_action]
        dup_effects = len(unexpected)
    duplicates = dup_decisions + dup_dlq + dup_fb + dup_effects
    lost = len(lost_decisions) + len(lost_dlq) + len(lost_fb) + len(lost_effects)
    checks = {"no_duplicates": duplicates == 0, "nothing_lost": lost == 0,
              "no_unexpected_outputs": not extra_decisions and not wrong_dlq, **(extra_checks or {})}
    details["checks"] = checks
    return ScenarioResult(scenario=scenario, tickets_in=len(inputs.tickets) + len(inputs.malformed),
                   decisions=sum(1 for t in decided if t in valid), dlq=len(set(dead) & inputs.malformed_at),
                   effects=effects, duplicates=duplicates, lost=lost, passed=all(checks.values()), details=details)


def log_lines(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if needle in line]


def table(verdicts: list[ScenarioResult]) -> str:
    head = ("scenario", "tickets in", "decisions", "DLQ", "effects", "duplicates", "lost", "result")
    rows = [head] + [(v.scenario, str(v.tickets_in), str(v.decisions), str(v.dlq), str(v.effects),
                      str(v.duplicates), str(v.lost), "PASS" if v.passed else "FAIL") for v in verdicts]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
