"""Prometheus metrics of one worker, in their own registry (served on `/metrics`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Milliseconds matter on the hot path: buckets from 0.5 ms to 10 s.
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = "text/plain; version=0.0.4"


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))

    def __post_init__(self) -> None:
        r = self.registry
        self.messages = Counter("triage_stream_messages", "Messages consumed, by topic and outcome",
                                ["topic", "outcome"], registry=r)
        self.decisions = Counter("triage_stream_decisions", "Decisions made, by route and arm", ["route", "arm"],
                                 registry=r)
        self.dead_letters = Counter("triage_stream_dead_letters", "Messages sent to the DLQ, by reason",
                                    ["topic", "reason"], registry=r)
        self.duplicates = Counter("triage_stream_duplicates", "Tickets already decided (not decided again)",
                                  registry=r)
        self.feedback = Counter("triage_stream_feedback", "Feedback events stored, by kind", ["kind"], registry=r)
        self.stage_seconds = Histogram("triage_stream_stage_seconds", "Time per stage per micro-batch", ["stage"],
                                       buckets=_BUCKETS, registry=r)
        self.e2e_seconds = Histogram("triage_stream_end_to_end_seconds",
                                     "Ticket received_at to decision committed", buckets=_BUCKETS, registry=r)
        self.batch_size = Histogram("triage_stream_batch_size", "Tickets per micro-batch",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=r)
        self.model_version = Gauge("triage_stream_model_version", "Model version in use, by role",
                                   ["name", "role"], registry=r)
        self.policy_info = Gauge("triage_stream_policy_info", "Policy version in force (value 1)", ["version"],
                                 registry=r)
        self.policy_reload_errors = Counter("triage_stream_policy_reload_errors",
                                            "Policy files refused on reload", registry=r)
        self.consumer_lag = Gauge("triage_stream_consumer_lag", "Messages behind the end, by partition",
                                  ["topic", "partition"], registry=r)
        self.outage = Gauge("triage_stream_dependency_down", "1 while a dependency is failing and retried",
                            ["dependency"], registry=r)
        self.retries = Counter("triage_stream_retries", "Retries of a failing dependency", ["dependency"],
                               registry=r)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
