-- One row per decision with its reviewers' verdict. An override is a feedback event whose human label
-- (intent, urgency or route) differs from the decision's, or a reroute / an escalation of a ticket the
-- policy had not escalated.
with decisions as (
    select * from {{ ref('stg_triage__decisions') }}
),

feedback as (
    select * from {{ ref('stg_triage__feedback') }}
),

judged as (
    select
        feedback.ticket_id,
        feedback.feedback_id,
        feedback.feedback_at,
        feedback.label_intent,
        (
            feedback.feedback_kind = 'reroute'
            or (feedback.feedback_kind = 'escalate' and decisions.route <> 'escalate')
            or (feedback.label_route is not null and feedback.label_route <> decisions.route)
            or (feedback.label_intent is not null and feedback.label_intent is distinct from decisions.intent)
            or (feedback.label_urgency is not null and feedback.label_urgency is distinct from decisions.urgency)
        ) as is_override
    from feedback
    inner join decisions on feedback.ticket_id = decisions.ticket_id
),

per_ticket as (
    select
        ticket_id,
        count(*) as feedback_events,
        bool_or(is_override) as is_overridden,
        max(feedback_at) as last_feedback_at,
        (array_agg(label_intent order by feedback_at desc, feedback_id desc)
            filter (where label_intent is not null))[1] as label_intent
    from judged
    group by ticket_id
)

select
    decisions.ticket_id,
    coalesce(per_ticket.feedback_events, 0) as feedback_events,
    per_ticket.ticket_id is not null as is_reviewed,
    coalesce(per_ticket.is_overridden, false) as is_overridden,
    per_ticket.label_intent,
    per_ticket.last_feedback_at
from decisions
left join per_ticket on decisions.ticket_id = per_ticket.ticket_id
