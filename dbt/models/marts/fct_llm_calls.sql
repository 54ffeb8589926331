-- One row per generative-model call with the decision it served (route, model, channel).
with calls as (
    select * from {{ ref('stg_triage__llm_calls') }}
),

decisions as (
    select ticket_id, route, channel, model_version_key, arm from {{ ref('stg_triage__decisions') }}
)

select
    calls.call_id,
    calls.ticket_id,
    calls.called_at,
    (date_trunc('hour', calls.called_at at time zone 'UTC') at time zone 'UTC') as called_hour,
    calls.workflow,
    calls.provider,
    calls.llm_model,
    calls.prompt_id,
    calls.prompt_version,
    calls.call_status,
    calls.finish_reason,
    calls.tokens_in,
    calls.tokens_out,
    calls.tokens_total,
    calls.cost_usd,
    calls.latency_ms,
    decisions.route,
    decisions.channel,
    decisions.model_version_key,
    decisions.arm
from calls
left join decisions on calls.ticket_id = decisions.ticket_id
