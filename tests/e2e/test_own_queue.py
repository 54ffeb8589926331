"""A team's own queue, end to end, with no code change: Banking77's intents instead of the simulator's bank.

From a labelled export: `triage init` writes a workspace, a (tiny) model is trained on it and promoted
with `triage models promote`, a worker runs on that workspace, tickets from confluent-kafka (a client no
one here wrote) get Banking77 decisions, feedback naming Banking77 intents is stored, `dbt build` passes
and the marts and the dashboard show those intents. Then each way to break it is refused with one line
naming the file and the line, and the running worker keeps its model and policy.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.banking77 import banking77
from tests.support.stream_helpers import STREAM_PYTHON, WorkerProcess, count, rows, wait_for
from triage.names import TOPIC_FEEDBACK, TOPIC_RAW
from triage.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration

CATEGORIES = ("card_arrival", "age_limit", "atm_support", "exchange_rate", "pin_blocked", "top_up_limits")
PER_CATEGORY = 45  # training rows each; the next 5 of each category are the live tickets
OPS_BIN = PROJECT_ROOT / ".venv" / "bin"
MODEL = "triage-classifier"


def _sample(tmp_path: Path) -> tuple[Path, list[dict[str, str]]]:
    """The team's export (Banking77's own columns: text, category) and the rows kept for live traffic."""
    seen: dict[str, int] = {}
    train, live = [], []
    with banking77("train").open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            cat = row["category"]
            if cat not in CATEGORIES:
                continue
            seen[cat] = seen.get(cat, 0) + 1
            if seen[cat] <= PER_CATEGORY:
                train.append(row)
            elif seen[cat] <= PER_CATEGORY + 5:
                live.append(row)
    export = tmp_path / "export.csv"
    with export.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["text", "category"])
        w.writeheader()
        w.writerows(train)
    return export, live


def _triage(args: list[str], env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    """The `triage` command as a user runs it (ops environment, its own process)."""
    result = subprocess.run([str(OPS_BIN / "triage"), *args], env=env, cwd=PROJECT_ROOT, capture_output=True,
                            text=True, timeout=300, check=False)
    if check:
        assert result.returncode == 0, f"triage {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def _produce(bootstrap: str, topic: str, events: list[dict[str, Any]], key: str | None) -> None:
    lines = "".join(json.dumps(e) + "\n" for e in events)
    cmd = [str(STREAM_PYTHON), "-m", "tests.support.confluent_produce", bootstrap, topic]
    result = subprocess.run([*cmd, *(["--key", key] if key else [])], input=lines, cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["sent"] == len(events)


def _touch(path: Path, text: str) -> None:
    """Write `text` with a later mtime, so the worker's stat-based reload sees the change at once."""
    path.write_text(text, encoding="utf-8")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def test_a_teams_own_taxonomy_runs_end_to_end(db_url: str, broker: str, tmp_path: Path, tiny_model: Path) -> None:
    from ml import registry
    from monitoring import rollup
    from monitoring.dashboard import render_dashboard
    from tests.support.tiny_model import build_tiny_model

    export, live = _sample(tmp_path)
    ws = tmp_path / "b77"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    env.update({"DATABASE_URL": db_url, "TRIAGE_STATE_DIR": str(tmp_path / "state"),
                "TRIAGE_MODEL_STORE": str(tmp_path / "models"), "PATH": f"{OPS_BIN}:{env.get('PATH', '')}"})
    bank_env = dict(env)
    env["TRIAGE_WORKSPACE"] = str(ws)

    # 1. A starter workspace from the export: intents from its label column.
    out = _triage(["init", str(ws), "--from", str(export), "--intent-col", "category"], env)
    assert (ws / "taxonomy.yaml").is_file() and (ws / "policy.yaml").is_file(), out.stdout
    from triage.taxonomy import load_taxonomy

    taxonomy = load_taxonomy(ws / "taxonomy.yaml")
    assert set(taxonomy.intent_names) == set(CATEGORIES) and taxonomy.urgencies == []

    # 2. A tiny model trained on the export with that taxonomy, registered as a candidate.
    data = tmp_path / "train.csv"
    with export.open(encoding="utf-8") as src, data.open("w", encoding="utf-8") as dst:
        dst.write(src.read().replace("text,category", "text,intent", 1))
    model_dir = build_tiny_model(tmp_path / "model", data=data, label_cols=("intent",), taxonomy=ws / "taxonomy.yaml",
                                 epochs=6)
    mv = registry.register(db_url, model_dir, name=MODEL, changed_by="test", reason="banking77 sample",
                           models_dir=tmp_path / "models")
    assert registry.taxonomy_of(mv).intent_names == taxonomy.intent_names and "urgency" not in mv.heads

    # 3. Promoting it under the bank's policy is refused with the line; under its own workspace it goes through.
    refused = _triage(["models", "promote", str(mv.version), "--reason", "try"], bank_env, check=False)
    assert refused.returncode != 0
    line = refused.stderr.strip().splitlines()[-1]
    assert "refusing to promote triage-classifier v1: the active policy would break: " in line, line
    assert "workspaces/bank/policy.yaml: line " in line and "unknown intent" in line, line
    _triage(["models", "promote", str(mv.version), "--reason", "the team's own model"], env)
    assert registry.champion(db_url, MODEL) is not None

    # 4. The worker on the team's workspace; tickets and feedback from confluent-kafka.
    worker = WorkerProcess(db_url, broker, tmp_path / "state",
                           {"TRIAGE_WORKSPACE": str(ws), "TRIAGE_MODEL_STORE": str(tmp_path / "models")}).start()
    try:
        wait_for(lambda: worker.health().get("partitions"), 90, "the worker to hold its partitions")
        now = datetime.now(UTC).isoformat()
        tickets = [{"ticket_id": f"b77-{i}", "channel": "chat", "subject": "", "body": r["text"], "received_at": now}
                   for i, r in enumerate(live)]
        _produce(broker, TOPIC_RAW, tickets, key="ticket_id")
        wait_for(lambda: count(db_url, "SELECT count(*) FROM triage.decisions") == len(tickets), 90,
                 "a decision per ticket")
        decided = {r[0] for r in rows(db_url, "SELECT DISTINCT intent FROM triage.decisions WHERE intent IS NOT NULL")}
        assert decided <= set(CATEGORIES) and len(decided) >= 2, decided

        feedback = [{"event_id": f"fb-{i}", "ticket_id": f"b77-{i}", "kind": "correct", "intent": r["category"],
                     "reviewer": "ana", "created_at": now} for i, r in enumerate(live)]
        feedback.append({"event_id": "fb-bank", "ticket_id": "b77-0", "kind": "correct",
                         "intent": "fraud_report", "reviewer": "ana", "created_at": now})
        _produce(broker, TOPIC_FEEDBACK, feedback, key="ticket_id")
        wait_for(lambda: count(db_url, "SELECT count(*) FROM triage.feedback") == len(live), 60,
                 "the Banking77 feedback stored")
        wait_for(lambda: count(db_url, "SELECT count(*) FROM triage.dead_letters "
                                       "WHERE source_topic = 'tickets.feedback'") == 1, 60, "the bank label refused")
        reason = rows(db_url, "SELECT reason FROM triage.dead_letters WHERE source_topic = 'tickets.feedback'")[0][0]
        assert "unknown intent (not a label of model triage-classifier v1; they know age_limit, atm_support" in reason

        # 5. dbt builds on these labels; the marts and the dashboard show Banking77's intents.
        built = rollup.build(db_url, target_path=tmp_path / "dbt")  # raises RollupError naming a failing node
        assert any(r["unique_id"].startswith("test.triage.label_in_taxonomy_") for r in built.results), built
        marts = {r[0] for r in rows(db_url, "SELECT DISTINCT intent FROM analytics.fct_decisions "
                                            "WHERE intent <> '(none)'")}
        assert marts == decided
        page = render_dashboard(db_url, tmp_path / "dashboard.html").read_text(encoding="utf-8")
        assert all(i in page for i in decided)

        # 6. Each way to break it is refused with its line; the worker keeps its model and policy.
        policy_file = ws / "policy.yaml"
        good_policy = policy_file.read_text(encoding="utf-8")
        before = worker.health()["policy"]["version"]
        assert "\nrules:\n- id: " in good_policy  # the starter policy's list style
        _touch(policy_file, good_policy.replace("\nrules:\n", "\nrules:\n- id: bank-rule\n  when: {intent: "
                                                "[fraud_report]}\n  route: escalate\n", 1))
        err = wait_for(lambda: worker.health()["policy"]["error"], 20, "the policy naming a bank intent refused")
        assert f"{policy_file}: line " in err and "unknown intent 'fraud_report'" in err, err
        assert worker.health()["policy"]["version"] == before
        # The team's own rule (Banking77's age_limit): valid for its model, and the bank's model lacks it.
        own_policy = good_policy.replace("\nrules:\n", "\nrules:\n- id: age-limit-to-human\n  when: {intent: "
                                         "[age_limit]}\n  route: human_queue\n", 1)
        _touch(policy_file, own_policy)
        wait_for(lambda: worker.health()["policy"]["version"] != before, 20, "the team's own rule loaded")
        assert worker.health()["policy"]["error"] is None

        v2 = registry.register(db_url, tiny_model, name=MODEL, changed_by="test", reason="the bank's model",
                               models_dir=tmp_path / "models")
        refused = _triage(["models", "promote", str(v2.version), "--reason", "wrong taxonomy"], env, check=False)
        assert refused.returncode != 0 and f"{policy_file}: line " in refused.stderr, refused.stderr
        assert registry.champion(db_url, MODEL).version == mv.version  # type: ignore[union-attr]
        time.sleep(3)  # two registry polls: the worker still runs v1
        assert worker.health()["model"]["champion"]["version"] == mv.version
    finally:
        worker.stop()
