{#- Hourly and daily KPIs. `breakdown` says which dimension a row is cut by: `overall` (one row per period),
    `route`, `intent`, `model_version` (model_name, model_version, arm: champion vs canary), `channel`, or
    `detail` (all four). Dimensions not in the breakdown are null. -#}
{%- set grains = ["hour", "day"] -%}

with decisions as (
    select * from {{ ref('fct_decisions') }}
),

drift as (
    select window_start, window_end from {{ ref('stg_triage__drift_reports') }} where is_drift_detected
),

{% for grain in grains %}
by_{{ grain }} as (
    select
        '{{ grain }}'::text as grain,
        decided_{{ grain }} as period_start,
        case grouping(route, intent, model_version_key, channel)
            when 15 then 'overall'
            when 7 then 'route'
            when 11 then 'intent'
            when 13 then 'model_version'
            when 14 then 'channel'
            else 'detail'
        end as breakdown,
        route,
        intent,
        model_version_key,
        model_name,
        model_version,
        arm,
        channel,
        count(*) as tickets,
        count(*) filter (where is_automated_completion) as automated_completions,
        count(*) filter (where is_reviewed) as reviewed,
        count(*) filter (where is_overridden) as overrides,
        count(*) filter (where is_abstained) as abstentions,
        percentile_cont(0.50) within group (order by e2e_latency_ms) as e2e_latency_p50_ms,
        percentile_cont(0.95) within group (order by e2e_latency_ms) as e2e_latency_p95_ms,
        percentile_cont(0.99) within group (order by e2e_latency_ms) as e2e_latency_p99_ms,
        percentile_cont(0.50) within group (order by inference_ms) as inference_p50_ms,
        percentile_cont(0.95) within group (order by inference_ms) as inference_p95_ms,
        percentile_cont(0.99) within group (order by inference_ms) as inference_p99_ms,
        sum(llm_calls) as llm_calls,
        sum(tokens_in) as tokens_in,
        sum(tokens_out) as tokens_out,
        sum(tokens_total) as tokens_total,
        sum(cost_usd) as cost_usd_total
    from decisions
    group by
        decided_{{ grain }},
        grouping sets (
            (),
            (route),
            (intent),
            (model_version_key, model_name, model_version, arm),
            (channel),
            (route, intent, model_version_key, model_name, model_version, arm, channel)
        )
),
{% endfor %}

periods as (
    {% for grain in grains %}
    select * from by_{{ grain }}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
)

select
    {{ dbt.concat(["grain", "'|'", "period_start::text", "'|'", "breakdown", "'|'",
                   "coalesce(route, '*')", "'|'", "coalesce(intent, '*')", "'|'",
                   "coalesce(model_version_key, '*')", "'|'", "coalesce(arm, '*')", "'|'",
                   "coalesce(channel, '*')"]) }} as kpi_key,
    grain,
    period_start,
    period_start + case grain when 'hour' then interval '1 hour' else interval '1 day' end as period_end,
    breakdown,
    route,
    intent,
    model_version_key,
    model_name,
    model_version,
    arm,
    channel,
    tickets,
    automated_completions,
    round(automated_completions::numeric / tickets, 4) as automated_completion_rate,
    reviewed,
    overrides,
    -- Share of reviewed tickets whose reviewer overrode the decision (null: nobody reviewed any).
    round(overrides::numeric / nullif(reviewed, 0), 4) as override_rate,
    abstentions,
    round(abstentions::numeric / tickets, 4) as abstention_rate,
    e2e_latency_p50_ms,
    e2e_latency_p95_ms,
    e2e_latency_p99_ms,
    inference_p50_ms,
    inference_p95_ms,
    inference_p99_ms,
    llm_calls,
    tokens_in,
    tokens_out,
    tokens_total,
    cost_usd_total,
    round(cost_usd_total / tickets, 8) as cost_per_ticket_usd,
    round(1000 * cost_usd_total / tickets, 6) as cost_per_1k_tickets_usd,
    exists (
        select 1 from drift
        where drift.window_start < periods.period_start
            + case periods.grain when 'hour' then interval '1 hour' else interval '1 day' end
            and drift.window_end > periods.period_start
    ) as drift_flag
from periods
