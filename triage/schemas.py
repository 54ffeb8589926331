"""The messages and rows that cross a boundary (Kafka, Postgres, HTTP), defined once.

Validated at the edge: the agent that decodes a Kafka message or the task that reads a table
calls `Model.model_validate(...)` and turns a ValidationError into a dead letter or a clear error.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from triage.labels import (
    ActionStatus,
    Arm,
    Channel,
    DeploymentMode,
    FeedbackKind,
    LLMCallStatus,
    ModelStatus,
    Route,
)

Id = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")]
MetaValue = str | int | float | bool | None


def utcnow() -> datetime:
    return datetime.now(UTC)


class _Contract(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Ticket(_Contract):
    """A support message as it arrives on `tickets.raw`."""

    ticket_id: Id
    channel: Channel
    customer_ref: str | None = Field(None, max_length=128)
    subject: str = Field("", max_length=1_000)
    body: str = Field(min_length=1)
    received_at: AwareDatetime
    metadata: dict[str, MetaValue] = Field(default_factory=dict)


class LabelScore(_Contract):
    label: str
    score: float = Field(ge=0.0, le=1.0)


class HeadPrediction(_Contract):
    """One head's answer (intent or urgency) for one text."""

    label: str
    confidence: float = Field(ge=0.0, le=1.0)
    top_k: list[LabelScore]
    abstained: bool = False


class Prediction(_Contract):
    """Every head's answer for one text from one model version."""

    model_name: str
    model_version: int
    heads: dict[str, HeadPrediction]


class Decision(_Contract):
    """The routed, audited outcome for one ticket; one row per ticket in `triage.decisions`."""

    ticket_id: Id
    channel: Channel
    route: Route
    rule_id: str
    policy_version: str
    reason: str = ""
    model_name: str
    model_version: int
    arm: Arm = "champion"
    prediction: Prediction
    # The other model's prediction when a canary or shadow runs beside the champion.
    challenger: Prediction | None = None
    challenger_mode: DeploymentMode | None = None
    masked_text: str
    pii_counts: dict[str, int] = Field(default_factory=dict)
    latency_ms: dict[str, float] = Field(default_factory=dict)
    received_at: AwareDatetime
    decided_at: AwareDatetime = Field(default_factory=utcnow)

    @property
    def intent(self) -> HeadPrediction | None:
        return self.prediction.heads.get("intent")

    @property
    def urgency(self) -> HeadPrediction | None:
        return self.prediction.heads.get("urgency")


class Feedback(_Contract):
    """A reviewer's verdict on a decision, from `tickets.feedback`: the production labels."""

    event_id: Id
    ticket_id: Id
    kind: FeedbackKind
    intent: str | None = None
    urgency: str | None = None
    route: Route | None = None
    reviewer: str = Field("unknown", max_length=128)
    comment: str = Field("", max_length=4_000)
    created_at: AwareDatetime


class DeadLetter(_Contract):
    """A message that could not be processed: why, where from, and its text masked (nothing raw).

    `original` is the masked text when the bytes were UTF-8, else a size placeholder (`encoding` says
    which). The exact bytes travel only encrypted (`original_encrypted`, for `triage dlq replay`), into
    the database and never onto the DLQ topic: serialising a dead letter leaves them out.
    """

    reason: str
    source_topic: str
    partition: int
    offset: int
    original: str
    encoding: str = Field(pattern=r"^(utf-8|binary)$")
    key: str | None = None
    received_at: AwareDatetime = Field(default_factory=utcnow)
    original_encrypted: bytes | None = Field(default=None, exclude=True, repr=False)


class ModelVersion(_Contract):
    name: str
    version: int = Field(ge=1)
    status: ModelStatus
    heads: dict[str, list[str]]
    base_model: str
    data_fingerprint: str
    metrics: dict[str, Any] = Field(default_factory=dict)
    artifact_path: str
    artifact_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    created_at: AwareDatetime = Field(default_factory=utcnow)
    updated_at: AwareDatetime = Field(default_factory=utcnow)
    changed_by: str = "unknown"
    reason: str = ""
    # The workspace taxonomy the model was trained on (triage.taxonomy.Taxonomy as JSON); None for
    # versions registered before taxonomies were stored: their label maps are the label set.
    taxonomy: dict[str, Any] | None = None


class Deployment(_Contract):
    """A challenger running beside the champion: canary (acts for `percent` of tickets) or shadow."""

    name: str
    champion_version: int
    challenger_version: int
    mode: DeploymentMode
    percent: float = Field(ge=0.0, le=100.0)
    id: int | None = None
    started_at: datetime | None = None
    step_started_at: datetime | None = None  # when the current share began (a ramp starts a new step)


class LLMCall(_Contract):
    call_id: Id
    ticket_id: Id
    workflow: str
    provider: str
    model: str
    prompt_id: str
    prompt_version: str
    temperature: float
    tokens_in: int = Field(ge=0)
    tokens_out: int = Field(ge=0)
    cost_usd: float = Field(ge=0.0)
    latency_ms: float = Field(ge=0.0)
    finish_reason: str | None
    status: LLMCallStatus
    error: str | None = None
    request: dict[str, Any]
    response: str | None = None
    created_at: AwareDatetime = Field(default_factory=utcnow)


class Action(_Contract):
    action_id: Id
    ticket_id: Id
    kind: str
    adapter: str
    idempotency_key: str
    payload: dict[str, Any]
    status: ActionStatus = "pending"
    attempts: int = 0
    last_error: str | None = None
    created_at: AwareDatetime = Field(default_factory=utcnow)
