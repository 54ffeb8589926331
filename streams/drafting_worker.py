"""Faust wiring of drafting and action dispatch: an agent on `triage.decisions`, a dispatcher timer, a page.

`register(app, settings)` adds to an existing app (the stream worker's, or the drafting-only app that
`python -m streams.drafting_worker` runs): the drafting agent takes micro-batches of decisions and drafts them
concurrently (bounded by TRIAGE_LLM_MAX_CONCURRENCY), so classification never waits on a model; the
batch's offsets are committed only after every draft in it is stored. A timer delivers the outbox; the
`/drafting` page shows breakers, budgets and the outbox; gauges and counters go to the given registry.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

import faust
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import ValidationError

from streams import budgets
from streams.actions import (
    Adapter,
    Dispatcher,
    ReplyOutboxAdapter,
    WebhookAdapter,
    WorkQueueAdapter,
    route_effects,
    routes_without_effect,
)
from streams.breaker import STATE_CODES, BreakerBoard
from streams.draft_writer import WORKFLOW, Drafter, Outcome
from streams.llm_client import LLMClient
from triage.names import TOPIC_DECISIONS, TOPIC_DRAFTS
from triage.schemas import Decision
from triage.settings import Settings

log = logging.getLogger(__name__)
DRAFTING_GROUP = "triage-drafting"


@dataclass
class DraftingMetrics:
    breaker_state: Gauge
    drafts: Counter
    actions: Counter
    llm_tokens: Counter
    llm_cost: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> DraftingMetrics:
        return cls(
            breaker_state=Gauge(
                "triage_breaker_state",
                "Circuit breaker state (0 closed, 1 half-open, 2 open)",
                ["name"],
                registry=registry,
            ),
            drafts=Counter("triage_drafts", "Drafting outcomes by llm_calls status", ["status"], registry=registry),
            actions=Counter(
                "triage_actions", "Outbox deliveries by adapter and outcome", ["adapter", "outcome"], registry=registry
            ),
            llm_tokens=Counter("triage_llm_tokens", "Tokens spent on drafts", ["direction"], registry=registry),
            llm_cost=Counter("triage_llm_cost_usd", "Money spent on drafts (USD)", registry=registry),
        )


class Drafting:
    """Everything the drafting agent and the dispatcher share in one worker."""

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.breakers = BreakerBoard(settings.breaker_failures, settings.breaker_window_s, settings.breaker_open_s)
        llm_name = f"llm:{settings.llm_provider}:{settings.llm_model}"
        self.llm = LLMClient.from_settings(settings, self.breakers.get(llm_name))
        self.drafter = Drafter(settings, settings.db_url(), self.llm, self.breakers)
        adapters: list[Adapter] = [WorkQueueAdapter(), ReplyOutboxAdapter()]
        if settings.webhook_url:
            adapters.append(WebhookAdapter(settings.webhook_url, settings.webhook_timeout_s))
        self.dispatcher = Dispatcher(
            settings.db_url(),
            adapters,
            self.breakers,
            max_attempts=settings.action_max_attempts,
            backoff_base_s=settings.action_backoff_s,
            backoff_cap_s=settings.action_backoff_cap_s,
        )
        self.metrics = DraftingMetrics.create(registry or CollectorRegistry())
        self.dispatch_error: str | None = None

    def observe(self, outcome: Outcome) -> None:
        if outcome.status is not None:
            self.metrics.drafts.labels(outcome.status).inc()
            self.metrics.llm_tokens.labels("in").inc(outcome.tokens_in)
            self.metrics.llm_tokens.labels("out").inc(outcome.tokens_out)
            self.metrics.llm_cost.inc(float(outcome.cost_usd))

    def refresh_gauges(self) -> None:
        for snap in self.breakers.snapshots():
            self.metrics.breaker_state.labels(snap.name).set(STATE_CODES[snap.state])

    async def dispatch_once(self) -> int:
        before = {k: dict(getattr(self.dispatcher.stats, k)) for k in ("delivered", "failed", "parked")}
        try:
            n = await self.dispatcher.run_once()
            self.dispatch_error = None
        except Exception as exc:  # noqa: BLE001 - the outbox waits in Postgres; try again next tick
            self.dispatch_error = f"{type(exc).__name__}: {exc}"[:300]
            log.warning("outbox dispatch failed: %s", self.dispatch_error)
            return 0
        for outcome, counts in before.items():
            for adapter, now in getattr(self.dispatcher.stats, outcome).items():
                if now > counts.get(adapter, 0):
                    self.metrics.actions.labels(adapter, outcome).inc(now - counts.get(adapter, 0))
        self.refresh_gauges()
        return n

    async def status(self) -> dict[str, Any]:
        """Breakers, budget windows, drafting counts and the LLM backend, for `/drafting` and `triage status`."""
        self.refresh_gauges()
        usage: dict[str, Any] = {}
        try:
            usage = await asyncio.wait_for(
                self.drafter._with_db("budget usage", lambda c: budgets.usage(c, WORKFLOW)), timeout=2.0
            )
        except Exception as exc:  # noqa: BLE001 - a status page must answer, also while Postgres is down
            usage = {"error": f"{type(exc).__name__}: {exc}"[:200]}
        return {
            "llm": {
                "url": self.settings.llm_url,
                "model": self.settings.llm_model,
                "mode": "model" if self.llm else "template replies only (no LLM configured)",
            },
            "breakers": [asdict(s) for s in self.breakers.snapshots()],
            "budget": {WORKFLOW: usage},
            "drafts": dict(self.drafter.counts),
            "in_flight": self.drafter.in_flight,
            "outbox": {
                k: dict(getattr(self.dispatcher.stats, k)) for k in ("delivered", "failed", "parked", "deferred")
            },
            "dispatch_error": self.dispatch_error,
            "routes": route_effects(self.settings.webhook_url is not None),
            "routes_without_effect": routes_without_effect(self.settings.webhook_url is not None),
            "fallback": self.settings.draft_fallback,
        }

    async def close(self) -> None:
        await self.drafter.close()
        await self.dispatcher.close()


def decode(value: bytes) -> Decision | None:
    try:
        return Decision.model_validate_json(value)
    except ValidationError as exc:
        log.error("undecodable decision on %s skipped: %s", TOPIC_DECISIONS, exc.errors()[0].get("msg"))
        return None


def draft_message(outcome: Outcome) -> bytes:
    d = outcome.draft
    return json.dumps(
        {
            "ticket_id": outcome.ticket_id,
            "route": outcome.route,
            "status": outcome.status,
            "reason": outcome.reason,
            "draft": None
            if d is None
            else {
                "text": d.text,
                "source": d.source,
                "prompt_id": d.prompt_id,
                "prompt_version": d.prompt_version,
                "llm_call_id": d.call_id,
            },
            "actions": list(outcome.actions),
        }
    ).encode()


def register(app: faust.App, settings: Settings, registry: CollectorRegistry | None = None) -> Drafting:
    """Add the drafting agent, the outbox dispatcher timer and the `/drafting` page to `app`."""
    drafting = Drafting(settings, registry)
    decisions = app.topic(TOPIC_DECISIONS, value_serializer="raw", key_serializer="raw")
    drafts = app.topic(TOPIC_DRAFTS, value_serializer="raw", key_serializer="raw")

    async def publish(outcome: Outcome) -> None:
        await drafts.send(key=outcome.ticket_id.encode(), value=draft_message(outcome), force=True)

    drafting.drafter.publish = publish
    batch, within = settings.batch_size, settings.batch_within_ms / 1000.0

    async def one(decision: Decision) -> None:
        drafting.observe(await drafting.drafter.handle(decision))

    @app.agent(decisions, name="triage.drafting")
    async def draft_decisions(stream: faust.StreamT[bytes]) -> None:
        async for events in stream.take_events(batch, within=within):
            found = [d for d in (decode(e.message.value) for e in events) if d is not None]
            await asyncio.gather(*(one(d) for d in found))

    @app.timer(settings.action_poll_s)
    async def dispatch_outbox() -> None:
        await drafting.dispatch_once()

    @app.page("/drafting")
    async def drafting_page(view: View, request: Request) -> Response:
        return view.json(await drafting.status())

    @app.on_before_shutdown.connect
    async def close_drafting(sender: Any, **kwargs: Any) -> None:
        await drafting.close()

    return drafting


def create_drafting_app(settings: Settings, web_port: int, broker: str | None = None) -> tuple[faust.App, Drafting]:
    """A drafting-only worker in its own consumer group (to scale drafting apart from classification)."""
    registry = CollectorRegistry(auto_describe=True)
    brokers = [f"kafka://{h.strip()}" for h in settings.bootstrap_servers.split(",") if h.strip()]
    app = faust.App(
        DRAFTING_GROUP,
        broker=broker or brokers,
        store="memory://",
        autodiscover=False,
        datadir=str(settings.state_dir / "faust" / f"drafting-{web_port}"),
        web_enabled=True,
        web_bind="127.0.0.1",
        web_host="127.0.0.1",
        web_port=web_port,
        topic_partitions=settings.kafka_partitions,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        producer_acks=-1,
        web_in_thread=False,
    )
    drafting = register(app, settings, registry)

    @app.page("/metrics")
    async def metrics_page(view: View, request: Request) -> Response:
        from prometheus_client import generate_latest

        drafting.refresh_gauges()
        return view.bytes(generate_latest(registry), content_type="text/plain; version=0.0.4")

    return app, drafting


def main(argv: list[str] | None = None) -> int:
    """`python -m streams.drafting_worker [--web-port N]`: run a drafting-only worker."""
    from faust.worker import Worker as FaustWorker

    from triage.settings import get_settings

    parser = argparse.ArgumentParser(prog="python -m streams.drafting_worker", description=main.__doc__)
    parser.add_argument("--web-port", type=int, default=None, help="web port (default TRIAGE_DRAFTING_PORT)")
    parser.add_argument("--loglevel", default="info")
    args = parser.parse_args(argv)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request is noise
    settings = get_settings()
    app, _ = create_drafting_app(settings, args.web_port or settings.drafting_port)
    (settings.state_dir / "faust").mkdir(parents=True, exist_ok=True)
    FaustWorker(app, loglevel=args.loglevel, quiet=True, override_logging=True).execute_from_commandline()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
