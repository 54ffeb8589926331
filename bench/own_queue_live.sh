#!/usr/bin/env bash
# The own-queue and console flows on a live stack (issues 13 and 14): from a fresh clone with `make install`
# done, run from its root with Banking77 at ../shared/data/banking77/. About 10 minutes on 2 cores; it runs
# `make up` in the background and `make down` at the end. Prints each step with the seconds since the start.
set -euo pipefail
B77=../shared/data/banking77
T0=$(date +%s)
say() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
rm -rf ws .triage
say "1. init"
.venv/bin/triage init ws --from $B77/train.csv --intent-col category | tail -12
export TRIAGE_WORKSPACE=$PWD/ws
say "2. make up"
nohup make up > up.log 2>&1 &
until grep -q "All parts healthy" up.log; do
  if grep -q "exited with code\|Traceback" up.log; then tail -30 up.log; exit 1; fi
  sleep 5
done
grep -E "ready|running|healthy|champion|training" up.log | head -20
say "3. train on the first 4000 rows"
.venv/bin/triage train --data $B77/train.csv --intent-col category --limit 4000 -o ws/model --register --no-progress 2>&1 | tail -8
say "4. promote"
V=$(.venv/bin/triage models list | awk '$2 == "candidate" {print $1}' | tail -1)
.venv/bin/triage models list
.venv/bin/triage models promote "$V" --reason "trained on our history"
sleep 8
say "5. tickets from confluent-kafka: Banking77 test rows"
python3 - > tickets.jsonl <<'PY'
import csv, json, datetime
rows = list(csv.DictReader(open("../shared/data/banking77/test.csv")))[::40][:60]
now = datetime.datetime.now(datetime.UTC).isoformat()
for i, r in enumerate(rows):
    print(json.dumps({"ticket_id": f"b77-{i}", "channel": "chat", "subject": "", "body": r["text"], "received_at": now}))
json.dump([r["category"] for r in rows], open("truth.json", "w"))
PY
.venv-stream/bin/python -m tests.support.confluent_produce 127.0.0.1:9092 tickets.raw --key ticket_id < tickets.jsonl
sleep 15
Q() { .venv/bin/python -c "from triage import db; from triage.settings import get_settings; c=db.connect(get_settings().db_url()); print(c.execute(\"$1\").fetchall())"; }
Q "SELECT count(*) AS decisions, count(DISTINCT intent) AS intents, min(model_version) AS v_min, max(model_version) AS v_max FROM triage.decisions WHERE ticket_id LIKE 'b77-%'"
Q "SELECT route, count(*) FROM triage.decisions WHERE ticket_id LIKE 'b77-%' GROUP BY 1"
say "6. feedback naming Banking77 intents, from confluent-kafka"
python3 - > feedback.jsonl <<'PY'
import json, datetime
truth = json.load(open("truth.json"))
now = datetime.datetime.now(datetime.UTC).isoformat()
for i, cat in enumerate(truth):
    print(json.dumps({"event_id": f"fb-b77-{i}", "ticket_id": f"b77-{i}", "kind": "correct", "intent": cat, "reviewer": "ana", "created_at": now}))
PY
.venv-stream/bin/python -m tests.support.confluent_produce 127.0.0.1:9092 tickets.feedback --key ticket_id < feedback.jsonl
sleep 10
Q "SELECT count(*) FROM triage.feedback WHERE event_id LIKE 'fb-b77-%'"
Q "SELECT count(*) FROM triage.dead_letters WHERE source_topic = 'tickets.feedback'"
say "7. console: a user, a token, reviews through the API"
printf '%s\n' 'live-run-password' | .venv/bin/triage users add ana --role lead --password-stdin
TOKEN=$(.venv/bin/triage users token ana)
curl -s -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8090/api/queue | python3 -c "import json,sys; d=json.load(sys.stdin); print('queue', d['count']); json.dump([i['ticket_id'] for i in d['items'] if i['has_draft']][:5] + [i['ticket_id'] for i in d['items'] if not i['has_draft']][:5], open('picked.json','w'))"
for t in $(python3 -c "import json; print(' '.join(json.load(open('picked.json'))))"); do
  curl -s -o /dev/null -w "claim %{http_code} " -X POST -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8090/api/tickets/$t/claim
  DRAFT=$(curl -s -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8090/api/tickets/$t | python3 -c "import json,sys; d=json.load(sys.stdin); print(json.dumps((d['draft'] or {}).get('text') or None))")
  curl -s -o /dev/null -w "review %{http_code}\n" -X POST -H "Authorization: Bearer $TOKEN" -H "Idempotency-Key: live-$t" -H "Content-Type: application/json" -d "{\"kind\": \"confirm\", \"reply\": $DRAFT}" http://127.0.0.1:8090/api/tickets/$t/review
done
sleep 10
Q "SELECT count(*) FROM triage.feedback WHERE reviewer = 'ana' AND event_id LIKE 'console-%'"
Q "SELECT count(*) FROM triage.reviews"
Q "SELECT count(*) FROM triage.replies r JOIN triage.reviews v ON v.reply_action_key = r.idempotency_key"
say "8. dbt build and the dashboard"
.venv/bin/python -c "from monitoring.rollup import build; r = build(); print(r.as_dict())"
Q "SELECT count(DISTINCT intent) FROM analytics.fct_decisions WHERE ticket_id LIKE 'b77-%'"
Q "SELECT reviewer, tickets_handled, human_minutes_per_case FROM analytics.agg_reviewer_daily"
P=$(.venv/bin/triage dashboard | tail -1); echo "$P"
.venv/bin/python - "$P" <<'PY'
import sys
from triage import db
from triage.settings import get_settings
page = open(sys.argv[1], encoding="utf-8").read()
with db.connect(get_settings().db_url()) as c:
    decided = {r["intent"] for r in c.execute("SELECT DISTINCT intent FROM analytics.fct_decisions "
                                               "WHERE ticket_id LIKE 'b77-%' AND intent <> '(none)'").fetchall()}
print(f"Banking77 intents of these decisions on the dashboard: {sum(i in page for i in decided)} of {len(decided)}")
PY
say "9. make down"
make down | tail -3
say done
