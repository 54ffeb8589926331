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

from pydantic import BaseModel, ConfigDict, Field, ValidationError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PREFIX = "TRIAGE_"
# Fields whose environment variable is not TRIAGE_<FIELD>.
_ENV_OVERRIDES = {
    "database_url": "DATABASE_URL",
    "kafka_bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
}


class SettingsError(ValueError):
    """A setting is unknown or has a value that cannot be used."""


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
    kafka_partitions: int = Field(4, ge=1, le=256, description="Partitions per topic created by Triage")
    airflow: bool = Field(True, description="Start Airflow with `triage up`")
    simulator_rate: float = Field(5.0, gt=0, description="Tickets per second that `triage up` simulates")
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
    max_body_chars: int = Field(20_000, ge=100, description="Longer ticket bodies go to the DLQ")
    policy_path: Path = Field(PROJECT_ROOT / "streams" / "policy.yaml", description="Routing policy YAML")

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

    # Data quality gate (Great Expectations)
    quality_max_latency_ms: float = Field(2_000.0, gt=0, description="Decision latency bound checked by the gate")
    quality_max_duplicate_rate: float = Field(
        0.05, ge=0, le=1, description="Largest share of tickets labelled more than once"
    )

    @property
    def models_dir(self) -> Path:
        return self.model_store or self.state_dir / "models"

    @property
    def reports_path(self) -> Path:
        return self.reports_dir or self.state_dir / "reports"

    @property
    def embedded_postgres(self) -> bool:
        return self.database_url is None

    @property
    def embedded_kafka(self) -> bool:
        return self.kafka_bootstrap_servers is None

    @property
    def pg_data_dir(self) -> Path:
        return self.state_dir / "pg"

    def db_url(self, database: str = "triage") -> str:
        """The Triage database URL: DATABASE_URL, or the embedded server's socket URL."""
        if self.database_url is not None:
            return self.database_url
        return f"postgresql://postgres@/{database}?host={self.pg_data_dir}&port={self.pg_port}"

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap_servers or f"127.0.0.1:{self.kafka_port}"


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
