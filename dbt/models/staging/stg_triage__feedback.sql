with source as (
    select * from {{ source('triage', 'feedback') }}
),

renamed as (
    select
        event_id as feedback_id,
        ticket_id,
        kind as feedback_kind,
        intent as label_intent,
        urgency as label_urgency,
        route as label_route,
        reviewer,
        created_at as feedback_at
    from source
)

select * from renamed
