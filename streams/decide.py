"""Classify a micro-batch with the model set and turn each prediction into a routed `Decision`.

`classify` is blocking (onnxruntime) and runs in a worker thread; `build_decision` is pure.
Who acts: the champion, except for the canary's sticky share of ticket ids, where the canary acts.
Each model runs only where it is needed, so a canary costs its share of the traffic, not all of it:
in canary mode the champion classifies the champion arm and the canary its own arm (one model per
ticket); in shadow mode the champion classifies every ticket and the shadow a sticky sample of them
(`shadow_percent`, the same hash as the canary share), whose champion/shadow pairs the shadow is
judged on. `prediction` and `model_version` are always the acting model's; `challenger` holds the
shadow's prediction where it ran, and is empty in canary mode (each arm is judged on its own tickets).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from streams.models import LoadedModel, ModelSet, in_canary, top3
from streams.prepare import Prepared
from triage.labels import Arm
from triage.policy import Facts, RoutingPolicy, decide
from triage.schemas import Decision, HeadPrediction, Prediction


@dataclass(frozen=True)
class Classified:
    """One ticket's predictions: the acting model's, and the shadow's where the shadow ran on it."""

    acting: Prediction | None
    shadow: Prediction | None = None
    arm: Arm = "champion"
    inference_ms: float = 0.0  # the acting model's time on the (sub-)batch this ticket was in
    shadow_ms: float = 0.0


def _run(model: LoadedModel, texts: list[str]) -> tuple[list[Prediction], float]:
    if not texts:
        return [], 0.0
    result = model.classifier.predict(texts)
    preds = [Prediction(model_name=model.name, model_version=model.version, heads=top3(heads))
             for heads in result.predictions]
    return preds, float(result.latency_ms)


def classify(models: ModelSet, items: list[Prepared], shadow_percent: float = 100.0) -> list[Classified]:
    """Predictions for the maskable tickets of a batch, each model run only on the tickets it serves."""
    out = [Classified(None) for _ in items]
    todo = [i for i, p in enumerate(items) if not p.mask_failed]
    if not todo or models.champion is None:
        return out
    chal = models.challenger
    canary = [i for i in todo if chal is not None and models.mode == "canary"
              and in_canary(items[i].ticket.ticket_id, models.percent)]
    in_canary_arm = set(canary)
    champion_arm = [i for i in todo if i not in in_canary_arm]
    champ, champ_ms = _run(models.champion, [items[i].text for i in champion_arm])
    for i, pred in zip(champion_arm, champ, strict=True):
        out[i] = Classified(pred, inference_ms=champ_ms)
    if chal is None:
        return out
    if models.mode == "canary":
        preds, ms = _run(chal, [items[i].text for i in canary])
        for i, pred in zip(canary, preds, strict=True):
            out[i] = Classified(pred, arm="canary", inference_ms=ms)
    else:
        sampled = [i for i in champion_arm if in_canary(items[i].ticket.ticket_id, shadow_percent)]
        preds, ms = _run(chal, [items[i].text for i in sampled])
        for i, pred in zip(sampled, preds, strict=True):
            out[i] = Classified(out[i].acting, pred, inference_ms=out[i].inference_ms, shadow_ms=ms)
    return out


def _head(pred: Prediction | None, head: str) -> HeadPrediction | None:
    return pred.heads.get(head) if pred is not None else None


def build_decision(item: Prepared, result: Classified, models: ModelSet, policy: RoutingPolicy, fallback_model: str,
                   timings: dict[str, float], now: datetime | None = None) -> Decision:
    """The audited decision for one ticket: acting model, route choice, the shadow's prediction, latencies."""
    ticket = item.ticket
    acting = result.acting
    if acting is None:
        champ = models.champion
        acting = Prediction(model_name=champ.name if champ else fallback_model,
                            model_version=champ.version if champ else 0, heads={})
    facts = Facts(channel=ticket.channel, intent=_head(acting, "intent"), urgency=_head(acting, "urgency"),
                  pii_failed=item.mask_failed, no_model=models.champion is None)
    choice = decide(policy, facts)
    decided_at = now or datetime.now(UTC)
    latency = dict(timings)
    latency["inference"] = result.inference_ms
    if result.shadow is not None:  # the shadow's time on the same tickets: what its latency is judged on
        latency["challenger_inference"] = result.shadow_ms
    latency["e2e"] = max(0.0, (decided_at - ticket.received_at).total_seconds() * 1000.0)
    return Decision(
        ticket_id=ticket.ticket_id, channel=ticket.channel, route=choice.route, rule_id=choice.rule_id,
        policy_version=policy.version, reason=choice.reason, model_name=acting.model_name,
        model_version=acting.model_version, arm=result.arm, prediction=acting,
        challenger=result.shadow, challenger_mode=models.mode if result.shadow is not None else None,
        masked_text=item.text, pii_counts=item.pii_counts, latency_ms={k: round(v, 3) for k, v in latency.items()},
        received_at=ticket.received_at, decided_at=decided_at,
    )
