"""Seeded decisions and human labels for the model-lifecycle tests (retrain, canary, DAGs).

Texts and true labels come from the simulator; a "model" is the truth with a chosen accuracy,
PII is masked as the stream masks it, and every labelled ticket gets the reviewer's verdict
(confirm when the model was right, else a correction with the true labels).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path

from psycopg.types.json import Jsonb

from apps.simulator import TicketGenerator
from triage import db
from triage.settings import Settings, load_settings
from triage.taxonomy import bank

INTENTS = bank().intent_names

MODEL = "triage-classifier"


def settings_for(db_url: str, state_dir: Path, **extra: str) -> Settings:
    env = {"DATABASE_URL": db_url, "TRIAGE_STATE_DIR": str(state_dir)}
    env.update({f"TRIAGE_{k.upper()}": v for k, v in extra.items()})
    return load_settings(env)


def _masked(t: object) -> str:
    text: str = t.text  # type: ignore[attr-defined]
    for kind, values in t.pii.items():  # type: ignore[attr-defined]
        for v in values:
            text = text.replace(v, f"<{kind}>")
    return text


def _prediction(name: str, version: int, intent: str, urgency: str, conf: float, abstained: bool) -> dict:
    return {"model_name": name, "model_version": version, "heads": {
        "intent": {"label": intent, "confidence": conf, "top_k": [{"label": intent, "score": conf}],
                   "abstained": abstained},
        "urgency": {"label": urgency, "confidence": conf, "top_k": [{"label": urgency, "score": conf}],
                    "abstained": False}}}


def seed_decisions(url: str, start: datetime, end: datetime, n: int, *, seed: int, accuracy: float = 0.6,
                   version: int = 1, arm: str = "champion", label_rate: float = 1.0, latency_ms: float = 10.0,
                   shadow: tuple[int, float] | None = None, shadow_latency_ms: float | None = None,
                   prefix: str = "T", only: tuple[str, ...] | None = None, swap: tuple[str, str] | None = None) -> int:
    """`n` decisions of model `version` in [start, end), labelled by reviewers 2 minutes later.

    `shadow=(version, accuracy)` adds a shadow challenger's prediction to every decision, with its
    inference time around `shadow_latency_ms` (default: the champion's `latency_ms`). `only` keeps
    tickets of those intents (the others are drawn and passed over); `swap=(a, b)`: the model names
    each of the two intents as the other (a confused pair; the other intents right by `accuracy`).
    """
    gen, rng, shadow_rng = TicketGenerator(seed=seed), random.Random(seed), random.Random(-seed)
    span = (end - start).total_seconds()
    with db.connect(url) as conn, conn.cursor() as cur:
        for i in range(n):
            t = gen.generate()
            while only is not None and t.intent not in only:
                t = gen.generate()
            decided = start + timedelta(seconds=span * (i + 0.5) / n)
            intent = t.intent if rng.random() < accuracy else rng.choice([x for x in INTENTS if x != t.intent])
            if swap is not None and t.intent in swap:
                intent = swap[1] if t.intent == swap[0] else swap[0]
            urgency = t.urgency
            tid = f"{prefix}-{seed}-{i}"
            challenger = mode = None
            if shadow is not None:
                s_intent = t.intent if rng.random() < shadow[1] else rng.choice([x for x in INTENTS if x != t.intent])
                challenger, mode = Jsonb(_prediction(MODEL, shadow[0], s_intent, t.urgency, 0.9, False)), "shadow"
            inference = latency_ms * rng.uniform(0.8, 1.2)
            latencies: dict[str, float] = {"inference": inference}
            if shadow is not None:  # its own generator, so the labels drawn below stay the same
                latencies["challenger_inference"] = (shadow_latency_ms or latency_ms) * shadow_rng.uniform(0.8, 1.2)
            cur.execute(
                "INSERT INTO triage.decisions (ticket_id, channel, route, rule_id, policy_version, model_name, "
                "model_version, arm, intent, intent_confidence, urgency, urgency_confidence, abstained, prediction, "
                "challenger, challenger_mode, masked_text, latency_ms, e2e_latency_ms, inference_ms, received_at, "
                "decided_at) "
                "VALUES (%s,%s,'human_queue','r-queue','v1',%s,%s,%s,%s,0.8,%s,0.8,false,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                (tid, t.message["channel"], MODEL, version, arm, intent, urgency,
                 Jsonb(_prediction(MODEL, version, intent, urgency, 0.8, False)), challenger, mode, _masked(t),
                 Jsonb(latencies), latency_ms * 3, inference, decided - timedelta(milliseconds=50), decided),
            )
            if rng.random() < label_rate:
                right = intent == t.intent and urgency == t.urgency
                cur.execute(
                    "INSERT INTO triage.feedback (event_id, ticket_id, kind, intent, urgency, created_at) "
                    "VALUES (%s,%s,%s,%s,%s,%s)",
                    (f"F-{tid}", tid, "confirm" if right else "correct", t.intent, t.urgency,
                     decided + timedelta(minutes=2)),
                )
        conn.commit()
    return n


def seed_arms(url: str, start: datetime, end: datetime, n: int, *, champion: tuple[int, float],
              challenger: tuple[int, float], seed: int, challenger_latency_ms: float = 10.0) -> None:
    """A canary window: `n` champion-arm and `n` canary-arm decisions, (version, accuracy) each."""
    seed_decisions(url, start, end, n, seed=seed, version=champion[0], accuracy=champion[1], prefix="CH")
    seed_decisions(url, start, end, n, seed=seed + 1, version=challenger[0], accuracy=challenger[1], arm="canary",
                   latency_ms=challenger_latency_ms, prefix="CA")


_built: dict[str, Path] = {}


def beatable_champion(tmp_path_factory: object) -> Path:
    """A tiny model whose label maps are rotated by one (every prediction names the wrong class): a champion
    that a retrain beats by a wide margin, deterministically. Built once per test process."""
    if "champion" not in _built:
        import json
        import shutil

        from ml import layout
        from tests.support.tiny_model import build_tiny_model

        base = tmp_path_factory.mktemp("champion")  # type: ignore[attr-defined]
        tiny = build_tiny_model(base / "tiny", seed=0)
        out = base / "rotated"
        shutil.copytree(tiny, out)
        maps = {}
        for head, labels in layout.read_heads(out).items():
            rotated = labels[1:] + labels[:1]
            maps[head] = {"id2label": {str(i): lab for i, lab in enumerate(rotated)},
                          "label2id": {lab: i for i, lab in enumerate(rotated)}}
        (out / layout.LABEL_MAPS).write_text(json.dumps(maps, indent=2), encoding="utf-8")
        _built["champion"] = out
    return _built["champion"]


# The pair of intents the confused champion mixes up: a card that has not arrived, a card that is lost.
CONFUSED_PAIR = ("card_arrival", "card_lost_or_stolen")


def confused_champion(tmp_path_factory: object, pair: tuple[str, str] = CONFUSED_PAIR) -> Path:
    """A tiny model trained on 3,000 simulator tickets (so its holdout has 10 or more rows of most intents), whose
    label map then swaps the two intents of `pair`: it names each as the other, as a model trained with those
    labels swapped would, and is right about the rest. Its stored base data keeps the true labels. Built once per
    test process (about 40 s on 2 cores)."""
    if "confused" not in _built:
        import json
        import shutil

        from ml import layout
        from tests.support.tiny_model import build_tiny_model

        base = tmp_path_factory.mktemp("confused")  # type: ignore[attr-defined]
        tiny = build_tiny_model(base / "tiny", seed=0, rows=3000, epochs=3)
        out = base / "swapped"
        shutil.copytree(tiny, out)
        heads = layout.read_heads(out)
        a, b = (heads["intent"].index(x) for x in pair)
        heads["intent"][a], heads["intent"][b] = heads["intent"][b], heads["intent"][a]
        (out / layout.LABEL_MAPS).write_text(json.dumps(layout.label_maps(heads), indent=2), encoding="utf-8")
        _built["confused"] = out
    return _built["confused"]
