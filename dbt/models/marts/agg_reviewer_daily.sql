-- Human work per day and reviewer: tickets handled, human minutes per case, override rate, and the
-- share of drafts sent unedited (a label for drafting). From the console's reviews.
with reviews as (
    select r.*, d.intent as decided_intent
    from {{ ref('stg_triage__reviews') }} as r
    left join {{ ref('stg_triage__decisions') }} as d using (ticket_id)
)

select
    date_trunc('day', reviewed_at) as period_start,
    reviewer,
    count(*) as tickets_handled,
    percentile_cont(0.5) within group (order by handling_minutes) as median_handling_minutes,
    avg(handling_minutes) as human_minutes_per_case,
    sum(coalesce(handling_minutes, 0)) as human_minutes,
    round(avg(is_override::int), 4) as override_rate,
    round(avg(case when sent_reply then (not is_reply_edited)::int end), 4) as drafts_unedited_rate
from reviews
group by 1, 2
