with source as (
    select * from {{ source('triage', 'decisions') }}
),

renamed as (
    select
        ticket_id,
        channel,
        route,
        rule_id,
        policy_version,
        model_name,
        model_version,
        model_name || ':v' || model_version::text as model_version_key,
        arm,
        intent,
        intent_confidence,
        urgency,
        urgency_confidence,
        abstained as is_abstained,
        challenger_mode,
        e2e_latency_ms,
        inference_ms,
        received_at,
        decided_at
    from source
)

select * from renamed
