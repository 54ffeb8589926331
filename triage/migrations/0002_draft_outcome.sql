-- What drafting did with a routed decision, on the decision itself: the llm_calls status of its draft,
-- the route the ticket finally took (human_queue when no draft could be made) and why (over budget,
-- breaker open, guardrail, PII gate). NULL until the drafting agent has handled the decision.
ALTER TABLE triage.decisions
    ADD COLUMN draft_status text CHECK (draft_status IN ('ok', 'fallback', 'error', 'skipped')),
    ADD COLUMN draft_route  text CHECK (draft_route IN ('auto_resolve', 'draft_for_review', 'human_queue', 'escalate')),
    ADD COLUMN draft_reason text;
