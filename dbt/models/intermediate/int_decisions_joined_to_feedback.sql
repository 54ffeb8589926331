-- One row per decision with its reviewers' verdict. What counts as a production label and as an
-- override is the view triage.labelled_decisions (migration 0004), read here as a source: dbt does
-- not re-derive the rule.
with decisions as (
    select * from {{ ref('stg_triage__decisions') }}
),

labelled as (
    select * from {{ ref('stg_triage__labelled_decisions') }}
)

select
    decisions.ticket_id,
    coalesce(labelled.feedback_events, 0) as feedback_events,
    labelled.ticket_id is not null as is_reviewed,
    coalesce(labelled.is_overridden, false) as is_overridden,
    labelled.label_intent,
    labelled.last_feedback_at
from decisions
left join labelled on decisions.ticket_id = labelled.ticket_id
