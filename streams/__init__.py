"""The real-time triage worker: a faust-streaming app from `tickets.raw` to audited, routed decisions.

Each stage is a pure module (`ingest`, `normalise`, `policy`, `canary`) that tests call without
services; `pipeline` strings them together over a micro-batch; `app` holds the thin faust agents.
"""
