-- One row per ticket: the decision, its outcome (automated completion, review, override), cost and latency.
with decisions as (
    select * from {{ ref('stg_triage__decisions') }}
),

feedback as (
    select * from {{ ref('int_decisions_joined_to_feedback') }}
),

effects as (
    select * from {{ ref('int_decisions_joined_to_llm_calls_and_actions') }}
)

select
    decisions.ticket_id,
    decisions.decided_at,
    (date_trunc('hour', decisions.decided_at at time zone 'UTC') at time zone 'UTC') as decided_hour,
    (date_trunc('day', decisions.decided_at at time zone 'UTC') at time zone 'UTC') as decided_day,
    decisions.received_at,
    decisions.channel,
    decisions.route,
    decisions.rule_id,
    decisions.policy_version,
    decisions.model_version_key,
    decisions.model_name,
    decisions.model_version,
    decisions.arm,
    coalesce(decisions.intent, '(none)') as intent,
    decisions.intent_confidence,
    decisions.urgency,
    decisions.is_abstained,
    feedback.is_reviewed,
    feedback.is_overridden,
    feedback.label_intent,
    -- Done with no person involved: auto-resolved, its reply delivered (by the webhook or the reply
    -- outbox), no action failed, nobody overrode it.
    (
        decisions.route = 'auto_resolve'
        and effects.replies_delivered > 0
        and effects.actions_failed = 0
        and not feedback.is_overridden
    ) as is_automated_completion,
    effects.llm_calls,
    effects.tokens_in,
    effects.tokens_out,
    effects.tokens_total,
    effects.cost_usd,
    effects.actions,
    effects.actions_delivered,
    effects.replies_delivered,
    effects.actions_failed,
    decisions.e2e_latency_ms,
    decisions.inference_ms
from decisions
inner join feedback on decisions.ticket_id = feedback.ticket_id
inner join effects on decisions.ticket_id = effects.ticket_id
