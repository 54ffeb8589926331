-- One row per decision with what it cost (every LLM call is paid for, whatever its status) and what its
-- actions did.
with decisions as (
    select ticket_id from {{ ref('stg_triage__decisions') }}
),

llm as (
    select
        ticket_id,
        count(*) as llm_calls,
        count(*) filter (where call_status in ('error', 'fallback')) as llm_failed_calls,
        sum(tokens_in) as tokens_in,
        sum(tokens_out) as tokens_out,
        sum(tokens_total) as tokens_total,
        sum(cost_usd) as cost_usd,
        sum(latency_ms) as llm_latency_ms
    from {{ ref('stg_triage__llm_calls') }}
    group by ticket_id
),

acts as (
    select
        ticket_id,
        count(*) as actions,
        count(*) filter (where action_status = 'delivered') as actions_delivered,
        count(*) filter (where action_status = 'delivered' and action_kind = 'reply') as replies_delivered,
        count(*) filter (where action_status in ('failed', 'parked')) as actions_failed,
        count(*) filter (where action_status = 'pending') as actions_pending
    from {{ ref('stg_triage__actions') }}
    group by ticket_id
)

select
    decisions.ticket_id,
    coalesce(llm.llm_calls, 0) as llm_calls,
    coalesce(llm.llm_failed_calls, 0) as llm_failed_calls,
    coalesce(llm.tokens_in, 0) as tokens_in,
    coalesce(llm.tokens_out, 0) as tokens_out,
    coalesce(llm.tokens_total, 0) as tokens_total,
    coalesce(llm.cost_usd, 0)::numeric(14, 6) as cost_usd,
    llm.llm_latency_ms,
    coalesce(acts.actions, 0) as actions,
    coalesce(acts.actions_delivered, 0) as actions_delivered,
    coalesce(acts.replies_delivered, 0) as replies_delivered,
    coalesce(acts.actions_failed, 0) as actions_failed,
    coalesce(acts.actions_pending, 0) as actions_pending
from decisions
left join llm on decisions.ticket_id = llm.ticket_id
left join acts on decisions.ticket_id = acts.ticket_id
