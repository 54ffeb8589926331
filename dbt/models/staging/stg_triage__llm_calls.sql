with source as (
    select * from {{ source('triage', 'llm_calls') }}
),

renamed as (
    select
        call_id,
        ticket_id,
        workflow,
        provider,
        model as llm_model,
        prompt_id,
        prompt_version,
        status as call_status,
        finish_reason,
        tokens_in,
        tokens_out,
        tokens_in + tokens_out as tokens_total,
        cost_usd::numeric(14, 6) as cost_usd,
        latency_ms,
        created_at as called_at
    from source
)

select * from renamed
