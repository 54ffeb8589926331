"""Every Kafka topic and database table name, defined once.

dbt's `_sources.yml` names the same tables; a test checks they agree.
"""

from __future__ import annotations

from typing import Final

# Kafka topics
TOPIC_RAW: Final = "tickets.raw"
TOPIC_DLQ: Final = "tickets.dlq"
TOPIC_FEEDBACK: Final = "tickets.feedback"
TOPIC_DECISIONS: Final = "triage.decisions"
TOPIC_DRAFTS: Final = "triage.drafts"
TOPICS: Final = (TOPIC_RAW, TOPIC_DLQ, TOPIC_FEEDBACK, TOPIC_DECISIONS, TOPIC_DRAFTS)

# Consumer group of the stream workers (faust app id)
WORKER_GROUP: Final = "triage-worker"

# Database schemas
SCHEMA: Final = "triage"
ANALYTICS_SCHEMA: Final = "analytics"

# Operational tables in the `triage` schema
T_TICKETS: Final = "tickets"
T_DECISIONS: Final = "decisions"
T_FEEDBACK: Final = "feedback"
T_MODEL_VERSIONS: Final = "model_versions"
T_MODEL_EVENTS: Final = "model_events"
T_DEPLOYMENTS: Final = "deployments"
T_LLM_CALLS: Final = "llm_calls"
T_ACTIONS: Final = "actions"
T_WORK_QUEUE: Final = "work_queue"
T_REPLIES: Final = "replies"
T_DEAD_LETTERS: Final = "dead_letters"
T_DRIFT_REPORTS: Final = "drift_reports"
T_QUALITY_RESULTS: Final = "quality_results"
T_BUDGETS: Final = "budgets"
T_USERS: Final = "users"
T_API_TOKENS: Final = "api_tokens"
T_CLAIMS: Final = "claims"
T_REVIEWS: Final = "reviews"
T_MIGRATIONS: Final = "schema_migrations"
# Views: production labels and overrides, the one rule that Python and dbt both read
V_LABELLED_DECISIONS: Final = "labelled_decisions"
# Every label of every registered model version: what dbt tests and the quality suite check against
V_TAXONOMY_LABELS: Final = "taxonomy_labels"

TABLES: Final = (
    T_TICKETS,
    T_DECISIONS,
    T_FEEDBACK,
    T_MODEL_VERSIONS,
    T_MODEL_EVENTS,
    T_DEPLOYMENTS,
    T_LLM_CALLS,
    T_ACTIONS,
    T_WORK_QUEUE,
    T_REPLIES,
    T_DEAD_LETTERS,
    T_DRIFT_REPORTS,
    T_QUALITY_RESULTS,
    T_BUDGETS,
    T_USERS,
    T_API_TOKENS,
    T_CLAIMS,
    T_REVIEWS,
)
VIEWS: Final = (V_LABELLED_DECISIONS, V_TAXONOMY_LABELS)


def qualified(table: str) -> str:
    """`triage.<table>`, for SQL text."""
    return f"{SCHEMA}.{table}"
