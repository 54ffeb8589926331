"""The product's own label sets (channels, routes, statuses), shared by the code, the policy and dbt's tests.

A support team's intents and urgencies are not here: they are its taxonomy (`triage.taxonomy`).
"""

from __future__ import annotations

from typing import Final, Literal

# A team's intents and urgencies are data (`triage.taxonomy`, the workspace's taxonomy.yaml), not code.
# These are the heads the product knows: the label columns a model may have, one head each.
LABEL_HEADS: Final = ("intent", "urgency")

Channel = Literal["email", "chat", "internal"]
CHANNELS: Final = ("email", "chat", "internal")

Route = Literal["auto_resolve", "draft_for_review", "human_queue", "escalate"]
ROUTES: Final = ("auto_resolve", "draft_for_review", "human_queue", "escalate")

# Which model answered: the champion acts; a canary acts for its share; a shadow only predicts.
Arm = Literal["champion", "canary"]
ARMS: Final = ("champion", "canary")
DeploymentMode = Literal["canary", "shadow"]
DEPLOYMENT_MODES: Final = ("canary", "shadow")

# Who may do what in the review console: a reviewer works tickets, a lead also sees everyone's work and
# the metrics, an admin also manages users (each role can do all that the ones before it can).
Role = Literal["reviewer", "lead", "admin"]
ROLES: Final = ("reviewer", "lead", "admin")

# The reviewer of labels seeded from a team's history by `triage import` (no decision behind them).
IMPORT_REVIEWER: Final = "import"

FeedbackKind = Literal["confirm", "correct", "reroute", "escalate"]
FEEDBACK_KINDS: Final = ("confirm", "correct", "reroute", "escalate")

ModelStatus = Literal["candidate", "canary", "champion", "retired", "rejected"]
MODEL_STATUSES: Final = ("candidate", "canary", "champion", "retired", "rejected")

ActionStatus = Literal["pending", "delivered", "failed", "parked"]
ACTION_STATUSES: Final = ("pending", "delivered", "failed", "parked")

LLMCallStatus = Literal["ok", "error", "fallback", "skipped"]
LLM_CALL_STATUSES: Final = ("ok", "error", "fallback", "skipped")

