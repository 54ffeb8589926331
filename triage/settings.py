"""Settings from environment variables, read once through `get_settings()`.

Every field is read from `TRIAGE_<FIELD>` except the two standard service URLs,
`DATABASE_URL` and `KAFKA_BOOTSTRAP_SERVERS`. Unset service URLs mean "use the embedded
default" (a PostgreSQL server and a Kafka-protocol broker that `triage up` starts).
An unknown `TRIAGE_*` variable is an error, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, Json, SecretStr, ValidationError

from triage.errors import TriageError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PREFIX = "TRIAGE_"
# Fields whose environment variable is not TRIAGE_<FIELD>.
_ENV_OVERRIDES = {
    "database_url": "DATABASE_URL",
    "kafka_bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
}


class SettingsError(TriageError, ValueError):
    """A setting is unknown or has a value that cannot be used."""


class ModelPrice(BaseModel):
    """USD per million tokens of one generative model (an entry of TRIAGE_LLM_PRICES)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)


class WorkflowBudget(BaseModel):
    """Token and money limits of one generative workflow per hour and per day (TRIAGE_LLM_BUDGETS)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    hour_tokens: int = Field(ge=0)
    hour_usd: float = Field(ge=0)
    day_tokens: int = Field(ge=0)
    day_usd: float = Field(ge=0)


class Settings(BaseModel):
    """All of Triage's configuration. Field docs double as `.env.example` comments."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Services: unset means the embedded default.
    database_url: str | None = Field(None, description="PostgreSQL URL; unset = embedded server")
    kafka_bootstrap_servers: str | None = Field(None, description="Kafka bootstrap servers; unset = embedded")

    # Embedded stack
    state_dir: Path = Field(PROJECT_ROOT / ".triage", description="Folder for embedded data, logs, pids")
    pg_port: int = Field(5432, ge=1, le=65535, description="Embedded PostgreSQL port (names its socket)")
    kafka_port: int = Field(9092, ge=1, le=65535, description="Embedded broker port on 127.0.0.1")
    airflow_port: int = Field(8080, ge=1, le=65535, description="Airflow UI / API port")
    worker_port: int = Field(6066, ge=1, le=65535, description="Stream worker web port (health, metrics)")
    drafting_port: int = Field(6067, ge=1, le=65535, description="Drafting worker web port (/drafting, metrics)")
    console_port: int = Field(8090, ge=1, le=65535, description="Review console web port (pages and /api/)")
    console_secret: SecretStr | None = Field(
        None, description="Secret signing the console's session cookies; unset = the key in "
        "<state_dir>/console.key, created on first use (every console process needs the same one)"
    )
    console_claim_minutes: int = Field(
        15, ge=1, le=24 * 60, description="Minutes a reviewer's claim on a ticket lasts before others may take it"
    )
    console_secure_cookies: bool = Field(
        False, description="Mark the console's cookies Secure (set when it is served over HTTPS)"
    )
    kafka_partitions: int = Field(4, ge=1, le=256, description="Partitions per topic created by Triage")
    airflow: bool = Field(True, description="Start Airflow with `triage up`")
    airflow_dags_paused: bool = Field(False, description="Keep Triage's DAGs paused when `triage up` starts Airflow")
    simulator_rate: float = Field(5.0, gt=0, description="Tickets per second that `triage up` simulates")
    simulator_console_token: SecretStr | None = Field(
        None, description="API token the simulator's reviewer uses to work queued tickets through the review "
        "console (`triage up` makes a 'simulator' user and sets it); unset = feedback straight to Kafka"
    )
    stream_python: Path = Field(
        PROJECT_ROOT / ".venv-stream" / "bin" / "python", description="Python of the stream environment"
    )

    # Model
    model_name: str = Field("triage-classifier", min_length=1, description="Registry name of the model")
    model_store: Path | None = Field(None, description="Model artifact store; default <state_dir>/models")
    reports_dir: Path | None = Field(None, description="Reports folder; default <state_dir>/reports")
    serving_threads: int = Field(2, ge=1, le=64, description="onnxruntime intra-op threads")

    # Stream
    batch_size: int = Field(32, ge=1, le=1024, description="Classifier micro-batch size")
    batch_within_ms: int = Field(20, ge=1, le=10_000, description="Max wait to fill a micro-batch")
    classify_parallelism: int = Field(
        2, ge=1, le=64,
        description="Micro-batches the stream worker classifies at once; each gets serving_threads / this many "
        "onnxruntime threads (at least 1)",
    )
    max_body_chars: int = Field(20_000, ge=100, description="Longer ticket bodies go to the DLQ")
    pii_names: bool = Field(
        True, description="Mask person names with the PII gate's name model; off only to measure what it costs"
    )
    workspace: Path = Field(
        PROJECT_ROOT / "workspaces" / "bank",
        description="Workspace folder: taxonomy.yaml, policy.yaml and prompts/ of one support team "
        "(`triage init DIR` writes one); the default is the simulator's retail bank",
    )
    policy_path: Path | None = Field(None, description="Routing policy YAML; unset = <workspace>/policy.yaml")
    dlq_key: SecretStr | None = Field(
        None, description="Fernet key encrypting dead letters' originals for `triage dlq replay`; unset = the key "
        "in <state_dir>/dlq.key, created on first use. Every worker and the CLI need the same key"
    )
    dlq_retention_days: int = Field(
        14, ge=1, description="Days a dead letter's encrypted original is kept for replay; then it is purged "
        "(the masked row stays)"
    )

    # Generative drafting (OpenAI-compatible chat completions), budgets, breakers, action adapters
    llm_base_url: str | None = Field(
        None, description="OpenAI-compatible base URL (…/v1); unset = the local llama.cpp server if `make llm` ran"
    )
    llm_model: str = Field("smollm2-135m-instruct", min_length=1, description="Model name sent to the LLM server")
    llm_provider: str = Field("llama.cpp", min_length=1, description="Provider name recorded on every llm_calls row")
    llm_api_key: SecretStr | None = Field(None, description="Bearer key for the LLM server; unset = no header")
    llm_port: int = Field(8008, ge=1, le=65535, description="Port of the local llama.cpp server on 127.0.0.1")
    llm_python: Path = Field(
        PROJECT_ROOT / ".venv-llm" / "bin" / "python", description="Python of the optional local-LLM environment"
    )
    llm_timeout_s: float = Field(20.0, gt=0, le=300, description="Per-attempt timeout of one LLM request")
    llm_max_retries: int = Field(2, ge=0, le=10, description="Retries of an LLM request on 429/5xx")
    llm_max_concurrency: int = Field(
        1, ge=1, le=256, description="LLM requests in flight per worker (local llama.cpp serves one at a time; "
        "raise it for a hosted API)"
    )
    llm_temperature: float = Field(0.2, ge=0, le=2, description="Sampling temperature of drafts")
    llm_max_tokens: int = Field(200, ge=16, le=8192, description="Most tokens a draft may generate")
    llm_prices: Json[dict[str, ModelPrice]] = Field(
        {"smollm2-135m-instruct": ModelPrice(input_per_mtok=0.0, output_per_mtok=0.0)},
        description='JSON price table, model -> {"input_per_mtok": usd, "output_per_mtok": usd}; '
        "a model missing from it is refused (no unpriced spend)",
    )
    llm_budgets: Json[dict[str, WorkflowBudget]] = Field(
        {"draft_reply": WorkflowBudget(hour_tokens=200_000, hour_usd=2.0, day_tokens=2_000_000, day_usd=20.0)},
        description='JSON budgets, workflow -> {"hour_tokens", "hour_usd", "day_tokens", "day_usd"}',
    )
    draft_deadline_s: float = Field(
        30.0, gt=0, le=600, description="Longest a ticket waits for its draft before the fallback serves"
    )
    draft_fallback: str = Field(
        "template", pattern=r"^(template|human_queue)$",
        description="Over budget or breaker open: `template` reply or send the ticket to `human_queue`",
    )
    draft_auto_resolve: bool = Field(False, description="Also draft replies for tickets routed auto_resolve")
    draft_min_chars: int = Field(40, ge=1, description="Shortest draft kept; shorter ones get the template reply")
    draft_max_chars: int = Field(1200, ge=50, description="Longest draft kept; longer ones get the template reply")
    draft_allow_list: str = Field(
        "https://help.example-bank.com,support@example-bank.com,+44 20 7946 0000",
        description="Comma-separated URLs, e-mails, phone numbers and amounts a draft may mention",
    )
    breaker_failures: int = Field(5, ge=1, le=1000, description="Failures within the window that open a breaker")
    breaker_window_s: float = Field(30.0, gt=0, description="Window in which breaker failures are counted")
    breaker_open_s: float = Field(15.0, gt=0, description="Seconds a breaker stays open before a half-open probe")
    webhook_url: str | None = Field(None, description="Ticketing/CRM endpoint for webhook actions; unset = off")
    webhook_timeout_s: float = Field(5.0, gt=0, le=120, description="Timeout of one webhook delivery")
    action_max_attempts: int = Field(8, ge=1, le=100, description="Delivery attempts before an action is parked")
    action_backoff_s: float = Field(1.0, gt=0, description="First retry delay of a failed action (doubles)")
    action_backoff_cap_s: float = Field(300.0, gt=0, description="Longest retry delay of a failed action")
    action_poll_s: float = Field(0.5, gt=0, le=60, description="Seconds between outbox polls of the dispatcher")

    # Monitoring: drift report (Evidently) and metrics rollup (dbt)
    drift_schedule: str = Field("@hourly", min_length=1, description="Airflow schedule of the drift_report DAG")
    rollup_schedule: str = Field("@hourly", min_length=1, description="Airflow schedule of the metrics_rollup DAG")
    drift_min_rows: int = Field(200, ge=10, description="Fewer decisions in a window: no drift verdict")
    drift_max_rows: int = Field(5000, ge=100, description="Decisions sampled per window for the report")
    drift_text_auc: float = Field(
        0.65, gt=0.5, le=1.0, description="Text drift when the domain classifier's ROC AUC reaches this"
    )
    drift_prediction_distance: float = Field(
        0.15, gt=0, le=1.0, description="Prediction drift when a head's Jensen-Shannon distance reaches this"
    )
    drift_confidence_distance: float = Field(
        0.15, gt=0, description="Confidence drift when the normed Wasserstein distance reaches this"
    )
    drift_abstention_max: float = Field(0.25, ge=0, le=1.0, description="Drift when the abstention rate exceeds this")
    drift_mismatch_max: float = Field(
        0.3, ge=0, le=1.0, description="Drift when the label mismatch rate (feedback vs prediction) exceeds this"
    )
    drift_min_feedback: int = Field(30, ge=1, description="Feedback rows needed to judge the label mismatch rate")
    drift_baseline_hours: int = Field(
        168, ge=1, description="Hours before the window whose decisions are the confidence baseline"
    )
    drift_report_keep_days: int = Field(
        30, ge=0, description="Days an Evidently HTML report is kept (a few MB each; its row stays); 0 = forever"
    )

    # Data quality gate (Great Expectations)
    quality_max_latency_ms: float = Field(2_000.0, gt=0, description="Decision latency bound checked by the gate")
    quality_max_duplicate_rate: float = Field(
        0.05, ge=0, le=1, description="Largest share of tickets labelled more than once"
    )

    # Model lifecycle: retraining on production labels, canary promotion
    quality_schedule: str = Field(
        "0 2 * * *", min_length=1, description="Cron of the data_quality DAG (daily windows of labels and decisions)"
    )
    retrain_schedule: str = Field(
        "0 3 * * *", min_length=1, description="Cron of the retrain_classifier DAG (it also runs on drift)"
    )
    retrain_min_new_labels: int = Field(
        200, ge=1, description="Fewer production labels since the champion was trained: retraining skips"
    )
    retrain_holdout_fraction: float = Field(
        0.2, gt=0, lt=1, description="Most recent share of new labels kept out of training to compare the models"
    )
    retrain_correction_weight: float = Field(
        3.0, ge=1, le=20, description="Weight of a corrected label relative to a confirmation (1 = equal)"
    )
    retrain_promotion_margin: float = Field(
        0.01, ge=0, le=1, description="Macro-F1 gain over the champion a candidate needs to be registered"
    )
    retrain_max_class_regression: float = Field(
        0.05, ge=0, le=1, description="Largest per-class F1 drop versus the champion that a candidate may show"
    )
    retrain_epochs: int = Field(3, ge=1, le=50, description="Fine-tuning epochs of a retrain")
    retrain_time_budget_s: float = Field(1800.0, gt=0, description="Wall-clock budget of one fine-tuning run")
    retrain_base_data: Path | None = Field(
        None, description="CSV/Parquet copy of the champion's base data (refused unless it has the fingerprint the "
        "champion recorded); unset = the copy stored with the champion (base_data.csv.gz)"
    )
    canary_mode: str = Field(
        "canary", pattern=r"^(canary|shadow)$", description="canary: the candidate acts for a share; shadow: predicts"
    )
    canary_start_percent: float = Field(5.0, gt=0, le=100, description="Share of tickets a new canary acts for")
    shadow_sample_percent: float = Field(
        25.0, gt=0, le=100,
        description="Share of tickets (sticky by ticket id) that a shadow model also classifies: its cost and sample",
    )
    canary_ramp_steps: str = Field(
        "", pattern=r"^\s*(\d+(\.\d+)?\s*(,\s*\d+(\.\d+)?\s*)*)?$",
        description="Comma-separated larger shares to ramp through before promotion, e.g. 25,50; empty = none",
    )
    canary_min_feedback: int = Field(
        200, ge=10, description="Labelled decisions each arm needs before the arms are compared"
    )
    canary_alpha: float = Field(
        0.05, gt=0, lt=0.5, description="Significance level of the canary's anytime-valid (mSPRT) tests"
    )
    canary_latency_tolerance: float = Field(
        0.10, ge=0, description="Largest relative p95 inference latency increase a canary may show"
    )
    canary_timeout_hours: float = Field(
        72.0, gt=0, description="A canary without a verdict after this long is rolled back"
    )
    canary_poke_interval_s: int = Field(
        900, ge=1, description="Seconds between checks of a running canary (the sensor frees its slot meanwhile)"
    )

    @property
    def policy_file(self) -> Path:
        return self.policy_path or self.workspace / "policy.yaml"

    @property
    def taxonomy_file(self) -> Path:
        return self.workspace / "taxonomy.yaml"

    @property
    def prompts_dir(self) -> Path:
        return self.workspace / "prompts"

    @property
    def models_dir(self) -> Path:
        return self.model_store or self.state_dir / "models"

    @property
    def reports_path(self) -> Path:
        return self.reports_dir or self.state_dir / "reports"

    @property
    def canary_ramp(self) -> tuple[float, ...]:
        """`canary_ramp_steps` as percentages in rising order."""
        return tuple(sorted(float(x) for x in self.canary_ramp_steps.split(",") if x.strip()))

    @property
    def embedded_postgres(self) -> bool:
        return self.database_url is None

    @property
    def embedded_kafka(self) -> bool:
        return self.kafka_bootstrap_servers is None

    @property
    def pg_data_dir(self) -> Path:
        return self.state_dir / "pg"

    @property
    def console_secret_file(self) -> Path:
        """Where the console's session secret is kept when TRIAGE_CONSOLE_SECRET is unset."""
        return self.state_dir / "console.key"

    @property
    def dlq_key_file(self) -> Path:
        """Where the dead-letter key is kept when TRIAGE_DLQ_KEY is unset."""
        return self.state_dir / "dlq.key"

    def db_url(self, database: str = "triage") -> str:
        """The Triage database URL: DATABASE_URL, or the embedded server's socket URL."""
        if self.database_url is not None:
            return self.database_url
        return f"postgresql://postgres@/{database}?host={self.pg_data_dir}&port={self.pg_port}"

    @property
    def worker_onnx_threads(self) -> int:
        """onnxruntime intra-op threads per classify thread of the stream worker."""
        return max(1, self.serving_threads // self.classify_parallelism)

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap_servers or f"127.0.0.1:{self.kafka_port}"

    @property
    def llm_url(self) -> str | None:
        """Base URL of the LLM server: TRIAGE_LLM_BASE_URL, else the local one once `make llm` has finished."""
        if self.llm_base_url:
            return self.llm_base_url.rstrip("/")
        if (self.llm_python.parent.parent / ".installed").exists():
            return f"http://127.0.0.1:{self.llm_port}/v1"
        return None

    @property
    def allow_list(self) -> tuple[str, ...]:
        return tuple(v.strip() for v in self.draft_allow_list.split(",") if v.strip())


def env_name(field: str) -> str:
    return _ENV_OVERRIDES.get(field, PREFIX + field.upper())


def known_env_names() -> dict[str, str]:
    """Environment variable -> settings field."""
    return {env_name(f): f for f in Settings.model_fields}


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build Settings from an environment mapping; raise SettingsError naming the variable and the fix."""
    known = known_env_names()
    for key in environ:
        if key.startswith(PREFIX) and key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]}?" if close else "see .env.example for the known settings"
            raise SettingsError(f"unknown setting {key}: {hint}")
    values: dict[str, Any] = {}
    for var, field in known.items():
        raw = environ.get(var)
        if raw is not None and raw != "":
            values[field] = raw
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "?"
        raise SettingsError(
            f"setting {env_name(field)}={values.get(field)!r} is invalid: {err['msg']}; "
            "fix the value or unset it to use the default"
        ) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from os.environ on first use."""
    return load_settings(os.environ)
