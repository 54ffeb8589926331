"""Label sets shared by the simulator, the classifier, the policy and dbt's accepted_values tests."""

from __future__ import annotations

from typing import Final, Literal

# Intents of a retail-bank support desk (the simulator's traffic and the default model's heads).
INTENTS: Final = (
    "card_arrival",
    "card_lost_or_stolen",
    "card_declined",
    "pin_blocked",
    "transfer_failed",
    "transfer_pending",
    "refund_request",
    "dispute_charge",
    "account_access",
    "change_personal_details",
    "close_account",
    "fees_and_charges",
    "exchange_rate",
    "top_up_failed",
    "statement_request",
    "fraud_report",
    "loan_inquiry",
    "complaint",
)
# Rows that belong to no intent; used to tune abstention, never predicted as a class.
OOD_LABEL: Final = "out_of_scope"

URGENCIES: Final = ("low", "normal", "high", "critical")

Channel = Literal["email", "chat", "internal"]
CHANNELS: Final = ("email", "chat", "internal")

Route = Literal["auto_resolve", "draft_for_review", "human_queue", "escalate"]
ROUTES: Final = ("auto_resolve", "draft_for_review", "human_queue", "escalate")

# Which model answered: the champion acts; a canary acts for its share; a shadow only predicts.
Arm = Literal["champion", "canary"]
ARMS: Final = ("champion", "canary")
DeploymentMode = Literal["canary", "shadow"]
DEPLOYMENT_MODES: Final = ("canary", "shadow")

FeedbackKind = Literal["confirm", "correct", "reroute", "escalate"]
FEEDBACK_KINDS: Final = ("confirm", "correct", "reroute", "escalate")

ModelStatus = Literal["candidate", "canary", "champion", "retired", "rejected"]
MODEL_STATUSES: Final = ("candidate", "canary", "champion", "retired", "rejected")

ActionStatus = Literal["pending", "delivered", "failed", "parked"]
ACTION_STATUSES: Final = ("pending", "delivered", "failed", "parked")

LLMCallStatus = Literal["ok", "error", "fallback", "skipped"]
LLM_CALL_STATUSES: Final = ("ok", "error", "fallback", "skipped")

HEADS: Final = {"intent": INTENTS, "urgency": URGENCIES}
