"""The faust app: topics, agents, timers and web pages, in that order, built by `create_app`.

Agents are thin: take a micro-batch of events, hand their bytes and origin to the `Pipeline`, and
let faust ack the offsets once the pipeline returned (it only returns after the batch is stored
and published). Built by a factory rather than at import so tests can build it with their own
settings and the module stays free of side effects.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import faust
from aiokafka.errors import KafkaError
from faust.exceptions import ProducerSendError
from faust.web import Request, Response, View

from streams.actions import routes_without_effect
from streams.audit import AuditSink
from streams.ingest import Source
from streams.metrics import CONTENT_TYPE, Metrics
from streams.models import ModelManager, default_loader
from streams.pipeline import Pipeline, Publisher, RawMessage
from streams.transport import TriageApp
from triage import dlq_crypto
from triage.backoff import Backoff
from triage.names import TOPIC_FEEDBACK, TOPIC_RAW, WORKER_GROUP
from triage.policy import PolicyWatcher
from triage.settings import Settings
from triage.taxonomy import load_taxonomy

log = logging.getLogger(__name__)
MODEL_POLL_SECONDS = 3.0
POLICY_POLL_SECONDS = 1.0
LAG_POLL_SECONDS = 5.0
DLQ_PURGE_SECONDS = 3600.0
# On SIGTERM the batch in hand gets this long to be stored; if it cannot be (a dependency is down),
# it stays unacked and is replayed by whichever worker takes the partition next.
SHUTDOWN_GRACE_SECONDS = 15.0
EXIT_UNFINISHED = 75
REBALANCE_TIMEOUT_SECONDS = 6.0
SESSION_TIMEOUT_SECONDS = 10.0


class FaustPublisher:
    """Sends through the app's producer immediately (not attached to the current event) and waits for the broker.

    It calls the producer directly rather than `Topic.send`: the decisions are already bytes, and the
    topic layer's per-message bookkeeping (futures, callbacks, channel) was a measurable share of the
    worker's event-loop time. The topics themselves are created at startup (`ensure_topics`).

    A broker that cannot take the messages is retried with backoff until it can: the agent waits
    meanwhile, so consumption pauses, and a re-send after a partial failure only duplicates messages
    that consumers already dedupe by key (ticket id, or topic/partition/offset for dead letters).
    """

    def __init__(self, app: faust.App, on_state: Callable[[str, str | None], None]) -> None:
        self.app = app
        self.on_state = on_state

    async def publish(self, topic: str, items: Sequence[tuple[bytes | None, bytes]]) -> None:
        producer = self.app.producer
        backoff = Backoff()
        while True:
            try:
                futures = [await producer.send(topic, k, v, None, None, None) for k, v in items]
                await asyncio.gather(*futures)
                if backoff.retries:
                    self.on_state("kafka", None)
                return
            except (KafkaError, ProducerSendError, OSError, TimeoutError) as exc:
                delay = backoff.next()
                reason = f"{type(exc).__name__}: {str(exc)[:200]}"
                log.warning("publishing to %s failed (%s); retry %d in %.1fs", topic, reason, backoff.retries, delay)
                self.on_state("kafka", reason)
                await asyncio.sleep(delay)


@dataclass
class Health:
    joined: bool = False
    started_at: float = field(default_factory=time.time)
    down: dict[str, str] = field(default_factory=dict)
    partitions: list[str] = field(default_factory=list)

    def set_dependency(self, name: str, error: str | None) -> None:
        if error is None:
            self.down.pop(name, None)
        else:
            self.down[name] = error


@dataclass
class Worker:
    """The app and everything its agents use."""

    app: faust.App
    settings: Settings
    pipeline: Pipeline
    models: ModelManager
    policy: PolicyWatcher
    metrics: Metrics
    health: Health
    agents: dict[str, Any] = field(default_factory=dict)

    def health_body(self) -> dict[str, Any]:
        problems = [f"{dep} unavailable: {err}" for dep, err in self.health.down.items()]
        if self.models.current.champion is None:
            problems.append("no champion model in the registry: tickets go to human_queue")
        if self.models.error:
            problems.append(self.models.error)
        if self.policy.error:
            problems.append(f"policy refused: {self.policy.error}")
        status = "ok" if self.health.joined and not problems else \
            ("; ".join(problems) if problems else "joining the consumer group")
        return {
            "status": status,
            "joined": self.health.joined,
            "group": WORKER_GROUP,
            "model": self.models.current.describe(),
            "policy": {"version": self.policy.current.version, "path": str(self.policy.path),
                       "error": self.policy.error},
            "dependencies": dict(self.health.down),
            "partitions": list(self.health.partitions),
            "uptime_s": round(time.time() - self.health.started_at, 1),
            "warnings": [f"route {route} has no adapter: its decisions produce no effect"
                         for route in routes_without_effect(self.settings.webhook_url is not None)],
        }


def broker_urls(bootstrap: str) -> list[str]:
    return [f"kafka://{host.strip()}" for host in bootstrap.split(",") if host.strip()]


def _raw(events: Sequence[faust.EventT]) -> list[RawMessage]:
    out = []
    for e in events:
        m = e.message
        out.append(RawMessage(value=m.value, src=Source(topic=m.topic, partition=m.partition, offset=m.offset,
                                                       key=m.key)))
    return out


@dataclass(frozen=True)
class Stages:
    """What `BatchRunner` runs for each batch of one agent.

    `admit` runs synchronously as the batch arrives (so batches are admitted in arrival order), `decide`
    may overlap other batches' `decide` and `persist`, `persist` runs in batch order, and `release`
    always runs last.
    """

    admit: Callable[[list[RawMessage]], Any]
    decide: Callable[[Any], Awaitable[Any]]
    persist: Callable[[Any], Awaitable[Any]]
    dead_letter_all: Callable[[list[RawMessage], str], Awaitable[None]]
    release: Callable[[Any], None] = lambda _work: None


class BatchRunner:
    """Runs an agent's micro-batches as an ordered pipeline and acks each batch only once it is stored.

    Up to `depth` batches are in flight: while batch N is written and published (`persist`: Postgres
    and broker I/O), batches N+1... are classified (`decide`: CPU, in threads, each batch on its own).
    `persist` runs in batch order and offsets are acked by hand (`noack_take`), in batch order, after
    `persist` returned, so a crash or a stop at any point replays what was not stored. A batch that fails
    for a reason other than an outage (outages are retried inside) is kept as dead letters; if even
    that fails the process exits unacked so the batch is replayed.
    """

    def __init__(self, stream: faust.StreamT[Any], stages: Stages, depth: int = 2) -> None:
        self.stream = stream
        self.stages = stages
        self.slots = asyncio.Semaphore(max(1, depth))
        self.tail: asyncio.Future[None] | None = None  # the newest batch; each batch awaits its predecessor

    async def _fail(self, msgs: list[RawMessage], exc: BaseException) -> None:
        log.exception("batch failed; keeping its messages as dead letters", exc_info=exc)
        try:
            await self.stages.dead_letter_all(msgs, f"internal error: {type(exc).__name__}: {exc}")
        except Exception:  # noqa: BLE001
            log.critical("could not dead-letter a failed batch; exiting unacked so it is replayed", exc_info=True)
            logging.shutdown()
            os._exit(EXIT_UNFINISHED)

    async def _run_batch(self, admitted: Any, msgs: list[RawMessage], events: Sequence[faust.EventT],
                         previous: asyncio.Future[None] | None) -> None:
        try:
            work: Any = None
            failure: BaseException | None = None
            try:
                work = await self.stages.decide(admitted)
            except Exception as exc:  # noqa: BLE001
                failure = exc
            if previous is not None:
                await asyncio.shield(previous)
            if failure is None:
                try:
                    await self.stages.persist(work)
                except Exception as exc:  # noqa: BLE001 - not an outage: those are retried inside `persist`
                    failure = exc
            if failure is not None:
                await self._fail(msgs, failure)
            for event in events:
                await self.stream.ack(event)
        finally:
            self.stages.release(admitted)
            self.slots.release()

    async def submit(self, events: Sequence[faust.EventT]) -> None:
        """Start the batch (after waiting for a free slot) and return; it finishes in the background."""
        await self.slots.acquire()
        msgs = _raw(events)
        try:
            admitted = self.stages.admit(msgs)
        except Exception as exc:  # noqa: BLE001
            self.slots.release()
            if self.tail is not None:
                await asyncio.shield(self.tail)
            await self._fail(msgs, exc)
            for event in events:
                await self.stream.ack(event)
            return
        self.tail = asyncio.ensure_future(self._run_batch(admitted, msgs, events, self.tail))

    async def drain(self) -> None:
        """On stop: let the batches in hand be stored and acked (bounded); unstored batches are replayed."""
        if self.tail is None or self.tail.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(self.tail), SHUTDOWN_GRACE_SECONDS)
        except (TimeoutError, asyncio.CancelledError):
            log.error("stopping: the batches in hand were not stored within %.0fs; they stay unacked and are "
                      "replayed", SHUTDOWN_GRACE_SECONDS)

    async def run(self, batch: int, within: float) -> None:
        try:
            async for events in self.stream.noack_take(batch, within=within):
                await self.submit(events)
            await self.drain()
        except asyncio.CancelledError:
            await self.drain()
            raise


async def _identity(msgs: list[RawMessage]) -> list[RawMessage]:
    return msgs


def _admit_all(msgs: list[RawMessage]) -> list[RawMessage]:
    """Feedback has no ids to claim: every message goes on as it came."""
    return msgs


def create_app(settings: Settings, *, models: ModelManager | None = None, policy: PolicyWatcher | None = None,
               metrics: Metrics | None = None, sink: AuditSink | None = None, broker: str | None = None,
               publisher: Publisher | None = None, web_enabled: bool = True) -> Worker:
    """Build the worker: faust app, topics, agents, timers, pages. Connects to nothing until started."""
    metrics = metrics or Metrics()
    health = Health()

    def on_state(dep: str, error: str | None) -> None:
        health.set_dependency(dep, error)
        metrics.outage.labels(dep).set(0 if error is None else 1)
        if error is not None:
            metrics.retries.labels(dep).inc()

    db_url = settings.db_url()
    sink = sink or AuditSink(db_url, on_state=on_state, dlq_retention=timedelta(days=settings.dlq_retention_days))
    # Each classify thread runs its own batch on its own onnxruntime threads: on a busy machine, one
    # batch on two intra-op threads stalls whenever either thread is preempted; two batches do not.
    # Until the registry is read, the policy is checked against the workspace's taxonomy; then against
    # the acting models' (and new models whose labels the policy does not fit are refused).
    policy = policy or PolicyWatcher(settings.policy_file, [
        (f"the workspace taxonomy {settings.taxonomy_file}", load_taxonomy(settings.taxonomy_file))])
    models = models or ModelManager(db_url, settings.model_name, default_loader(settings.worker_onnx_threads))
    if models.policy is None:
        models.policy = policy
    datadir = settings.state_dir / "faust" / f"worker-{settings.worker_port}"

    app = TriageApp(
        WORKER_GROUP,
        broker=broker or broker_urls(settings.bootstrap_servers),
        store="memory://",
        autodiscover=False,
        datadir=str(datadir),
        web_enabled=web_enabled,
        web_bind="127.0.0.1",
        web_host="127.0.0.1",
        web_port=settings.worker_port,
        topic_partitions=settings.kafka_partitions,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        # The embedded broker holds a join open for the whole rebalance timeout; keep it short so a
        # worker joins (and a second one rebalances) in seconds, not the default minute.
        broker_rebalance_timeout=REBALANCE_TIMEOUT_SECONDS,
        broker_session_timeout=SESSION_TIMEOUT_SECONDS,
        broker_heartbeat_interval=1.0,
        producer_acks=-1,
        web_in_thread=False,
    )

    raw_topic = app.topic(TOPIC_RAW, value_serializer="raw", key_serializer="raw")
    feedback_topic = app.topic(TOPIC_FEEDBACK, value_serializer="raw", key_serializer="raw")
    publisher = publisher or FaustPublisher(app, on_state)
    executor = ThreadPoolExecutor(max_workers=settings.classify_parallelism, thread_name_prefix="classify")
    pipeline = Pipeline(sink=sink, publisher=publisher, models=models, policy=policy, metrics=metrics,
                        max_body_chars=settings.max_body_chars, model_name=settings.model_name, executor=executor,
                        pii_names=settings.pii_names, seal=dlq_crypto.cipher(settings).encrypt,
                        shadow_percent=settings.shadow_sample_percent)
    worker = Worker(app=app, settings=settings, pipeline=pipeline, models=models, policy=policy, metrics=metrics,
                    health=health)
    batch, within = settings.batch_size, settings.batch_within_ms / 1000.0

    @app.agent(raw_topic, name="triage.tickets")
    async def tickets(stream: faust.StreamT[bytes]) -> None:
        stages = Stages(pipeline.admit, pipeline.decide, pipeline.persist, pipeline.dead_letter_all, pipeline.release)
        # One batch per classify thread, one being stored, and one waiting for a thread, so a thread
        # never idles while the batch it just finished waits for its turn to be stored.
        await BatchRunner(stream, stages, depth=settings.classify_parallelism + 2).run(batch, within)

    @app.agent(feedback_topic, name="triage.feedback")
    async def feedback(stream: faust.StreamT[bytes]) -> None:
        stages = Stages(_admit_all, _identity, pipeline.process_feedback, pipeline.dead_letter_all)
        await BatchRunner(stream, stages).run(batch, within)

    @app.timer(POLICY_POLL_SECONDS)
    async def reload_policy() -> None:
        before = policy.current.version
        changed = policy.check()
        if changed:
            log.info("policy reloaded: %s -> %s", before, policy.current.version)
            metrics.policy_info.clear()
        elif changed is False:
            log.error("policy file refused: %s", policy.error)
            metrics.policy_reload_errors.inc()
        metrics.policy_info.labels(policy.current.version).set(1)

    @app.timer(MODEL_POLL_SECONDS)
    async def reload_models() -> None:
        await models.refresh()
        _model_gauges(worker)

    @app.task
    async def purge_dead_letters() -> None:
        """At startup, then hourly: drop dead letters' encrypted originals past their purge date."""
        while True:
            try:
                if purged := await sink.purge_dead_letters():
                    log.info("purged the encrypted originals of %d expired dead letters", purged)
            except Exception:  # noqa: BLE001 - outages are retried inside; anything else waits for the next hour
                log.exception("dead-letter purge failed; trying again in %.0fs", DLQ_PURGE_SECONDS)
            await asyncio.sleep(DLQ_PURGE_SECONDS)

    @app.timer(LAG_POLL_SECONDS)
    async def consumer_lag() -> None:
        await _update_lag(worker)

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: Any, assigned: Any = None, **kwargs: Any) -> None:
        health.joined = True
        health.partitions = sorted(f"{tp.topic}:{tp.partition}" for tp in (assigned or ())
                                   if tp.topic in (TOPIC_RAW, TOPIC_FEEDBACK))

    @app.page("/health")
    async def health_page(view: View, request: Request) -> Response:
        return view.json(worker.health_body())

    @app.page("/metrics")
    async def metrics_page(view: View, request: Request) -> Response:
        _model_gauges(worker)
        return view.bytes(metrics.render(), content_type=CONTENT_TYPE)

    worker.agents = {"tickets": tickets, "feedback": feedback}
    return worker


def _model_gauges(worker: Worker) -> None:
    g = worker.metrics.model_version
    g.clear()
    current = worker.models.current
    if current.champion is not None:
        g.labels(current.champion.name, "champion").set(current.champion.version)
    if current.challenger is not None:
        g.labels(current.challenger.name, current.mode or "challenger").set(current.challenger.version)


async def _update_lag(worker: Worker) -> None:
    app = worker.app
    try:
        consumer = app.consumer
        for tp in consumer.assignment():
            if tp.topic not in (TOPIC_RAW, TOPIC_FEEDBACK):
                continue
            high = consumer.highwater(tp)
            pos = await consumer.position(tp)
            if high is not None and pos is not None:
                worker.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, high - pos))
    except Exception:  # noqa: BLE001 - lag is best effort; never disturb the worker for it
        log.debug("consumer lag not available", exc_info=True)
