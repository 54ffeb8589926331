"""The baseline of `bench_stream.py`: the agent most first versions are, run in the ops environment.

One message at a time from `tickets.raw`: decode and validate, normalise and mask, classify with the
fp32 PyTorch model (the trained folder's `model.safetensors`, batch of one, torch's own threads), decide
with the same policy, and store the ticket, the decision and its actions with the worker's own SQL in
one transaction per message; offsets auto-committed.
Prints one JSON line: {"per_s": messages per second, "messages": n, "torch_threads": t}.

    .venv/bin/python bench/naive_agent.py --bootstrap 127.0.0.1:9092 --url postgresql://... --model DIR
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from aiokafka import AIOKafkaConsumer

from ml.modeling import load_trained
from ml.serving import Classifier, softmax
from streams.audit import AuditSink
from streams.decide import Classified, build_decision
from streams.ingest import Source, decode_ticket
from streams.models import LoadedModel, ModelSet
from streams.prepare import prepare
from triage.names import TOPIC_RAW
from triage.policy import bind, load_policy
from triage.schemas import DeadLetter, Prediction
from triage.settings import PROJECT_ROOT
from triage.taxonomy import bank

MODEL_NAME = "triage-classifier"


async def run(bootstrap: str, url: str, model_dir: Path, threads: int, limit: int, seconds: float) -> dict[str, float]:
    torch.set_num_threads(threads)
    model = load_trained(model_dir)
    # Label maps, temperatures, thresholds and the tokenizer of the folder (its int8 session is not used).
    labels = Classifier.load(model_dir, threads=1, int8=True)
    models = ModelSet(champion=LoadedModel(MODEL_NAME, 1, labels))
    policy = bind(load_policy(PROJECT_ROOT / "workspaces" / "bank" / "policy.yaml"), [("the bank", bank())])
    consumer = AIOKafkaConsumer(TOPIC_RAW, bootstrap_servers=bootstrap, group_id="bench-naive",
                                auto_offset_reset="earliest", enable_auto_commit=True)
    await consumer.start()
    sink = AuditSink(url)
    done, start = 0, None
    try:
        with torch.no_grad():
            async for msg in consumer:
                if start is None:
                    start = time.perf_counter()
                ticket = decode_ticket(msg.value, Source(msg.topic, msg.partition, msg.offset), max_body_chars=20_000)
                if not isinstance(ticket, DeadLetter):
                    item = prepare(ticket)
                    ids = labels.tokenizer.encode(item.text or ".").ids
                    logits = model(torch.tensor([ids]), torch.ones((1, len(ids)), dtype=torch.long))
                    probs = {h: softmax(lg.numpy().astype(np.float32), labels.temperatures.get(h, 1.0))
                             for h, lg in zip(model.head_names, logits, strict=True)}
                    heads = labels.predictions(probs)[0]
                    res = Classified(Prediction(model_name=MODEL_NAME, model_version=1, heads=heads))
                    decision = build_decision(item, res, models, policy, MODEL_NAME, {})
                    await sink.write_batch([item.row()], [decision], [])
                done += 1
                if done >= limit or time.perf_counter() - start > seconds:
                    break
    finally:
        await consumer.stop()
        await sink.close()
    elapsed = time.perf_counter() - (start or time.perf_counter())
    return {"per_s": round(done / elapsed, 1) if elapsed > 0 else 0.0, "messages": done, "torch_threads": threads}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--url", required=True, help="database URL (migrated)")
    parser.add_argument("--model", type=Path, required=True, help="trained model folder with model.safetensors")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    result = asyncio.run(run(args.bootstrap, args.url, args.model, args.threads, args.limit, args.seconds))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
