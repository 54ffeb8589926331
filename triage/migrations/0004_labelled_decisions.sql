-- Production labels and overrides, defined once. One row per decision that people have reviewed:
-- the latest feedback event decides the label (a confirmation keeps the decision's own intent and
-- urgency), and the decision counts as overridden when any event disagreed with it (a reroute, an
-- escalation of a ticket the policy had not escalated, or a label that differs from the decision's).
-- Retraining, the canary statistics, drift and dbt all read this view; none re-derives the rule.
CREATE VIEW triage.labelled_decisions AS
SELECT d.ticket_id,
       d.model_name,
       d.model_version,
       d.decided_at,
       latest.event_id AS feedback_event_id,
       latest.kind AS feedback_kind,
       latest.reviewer,
       latest.created_at AS labelled_at,
       coalesce(latest.intent, CASE WHEN latest.kind = 'confirm' THEN d.intent END) AS label_intent,
       coalesce(latest.urgency, CASE WHEN latest.kind = 'confirm' THEN d.urgency END) AS label_urgency,
       latest.route AS label_route,
       history.feedback_events,
       history.first_feedback_at,
       history.is_overridden
FROM triage.decisions d
JOIN LATERAL (
    SELECT f.event_id, f.kind, f.intent, f.urgency, f.route, f.reviewer, f.created_at
    FROM triage.feedback f
    WHERE f.ticket_id = d.ticket_id
    ORDER BY f.created_at DESC, f.event_id DESC
    LIMIT 1
) latest ON true
JOIN LATERAL (
    SELECT count(*) AS feedback_events,
           min(g.created_at) AS first_feedback_at,
           coalesce(bool_or(
               g.kind = 'reroute'
               OR (g.kind = 'escalate' AND d.route <> 'escalate')
               OR (g.route IS NOT NULL AND g.route <> d.route)
               OR (g.intent IS NOT NULL AND g.intent IS DISTINCT FROM d.intent)
               OR (g.urgency IS NOT NULL AND g.urgency IS DISTINCT FROM d.urgency)
           ), false) AS is_overridden
    FROM triage.feedback g
    WHERE g.ticket_id = d.ticket_id
) history ON true;
