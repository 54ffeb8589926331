"""Classify a micro-batch with the model set and turn each prediction into a routed `Decision`.

`classify` is blocking (onnxruntime) and runs in a worker thread; `build_decision` is pure.
Who acts: the champion, except for the canary's sticky share of ticket ids, where the canary acts.
`prediction` and `model_version` are always the acting model's; `challenger` holds the other
model's prediction (the canary's or shadow's, or the champion's for a canary-arm ticket).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from streams.models import LoadedModel, ModelSet, in_canary, top3
from streams.prepare import Prepared
from triage.policy import Facts, RoutingPolicy, decide
from triage.schemas import Decision, HeadPrediction, Prediction


@dataclass(frozen=True)
class Classified:
    champion: Prediction | None
    challenger: Prediction | None
    inference_ms: float
    challenger_ms: float


def _run(model: LoadedModel, texts: list[str]) -> tuple[list[Prediction], float]:
    result = model.classifier.predict(texts)
    preds = [Prediction(model_name=model.name, model_version=model.version, heads=top3(heads))
             for heads in result.predictions]
    return preds, float(result.latency_ms)


def classify(models: ModelSet, items: list[Prepared]) -> list[Classified]:
    """Predictions of the champion and the challenger (if any) for the maskable tickets of a batch."""
    todo = [i for i, p in enumerate(items) if not p.mask_failed]
    out = [Classified(None, None, 0.0, 0.0) for _ in items]
    if not todo or models.champion is None:
        return out
    texts = [items[i].text for i in todo]
    champ, champ_ms = _run(models.champion, texts)
    chal: list[Prediction | None] = [None] * len(todo)
    chal_ms = 0.0
    if models.challenger is not None:
        chal_preds, chal_ms = _run(models.challenger, texts)
        chal = list(chal_preds)
    for j, i in enumerate(todo):
        out[i] = Classified(champ[j], chal[j], champ_ms, chal_ms)
    return out


def _head(pred: Prediction | None, head: str) -> HeadPrediction | None:
    return pred.heads.get(head) if pred is not None else None


def build_decision(item: Prepared, result: Classified, models: ModelSet, policy: RoutingPolicy, fallback_model: str,
                   timings: dict[str, float], now: datetime | None = None) -> Decision:
    """The audited decision for one ticket: acting model, route choice, both predictions, latencies."""
    ticket = item.ticket
    acting, other, arm = result.champion, result.challenger, "champion"
    if (models.mode == "canary" and result.challenger is not None
            and in_canary(ticket.ticket_id, models.percent)):
        acting, other, arm = result.challenger, result.champion, "canary"
    if acting is None:
        champ = models.champion
        acting = Prediction(model_name=champ.name if champ else fallback_model,
                            model_version=champ.version if champ else 0, heads={})
    facts = Facts(channel=ticket.channel, intent=_head(acting, "intent"), urgency=_head(acting, "urgency"),
                  pii_failed=item.mask_failed, no_model=models.champion is None)
    choice = decide(policy, facts)
    decided_at = now or datetime.now(UTC)
    latency = dict(timings)
    latency["inference"] = result.challenger_ms if arm == "canary" else result.inference_ms
    if other is not None:  # the other model's time on the same batch: what a shadow's latency is judged on
        latency["challenger_inference"] = result.inference_ms if arm == "canary" else result.challenger_ms
    latency["e2e"] = max(0.0, (decided_at - ticket.received_at).total_seconds() * 1000.0)
    return Decision(
        ticket_id=ticket.ticket_id, channel=ticket.channel, route=choice.route, rule_id=choice.rule_id,
        policy_version=policy.version, reason=choice.reason, model_name=acting.model_name,
        model_version=acting.model_version, arm=arm, prediction=acting,  # type: ignore[arg-type]
        challenger=other, challenger_mode=models.mode if other is not None else None,
        masked_text=item.text, pii_counts=item.pii_counts, latency_ms={k: round(v, 3) for k, v in latency.items()},
        received_at=ticket.received_at, decided_at=decided_at,
    )
