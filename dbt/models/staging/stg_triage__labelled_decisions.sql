with source as (
    select * from {{ source('triage', 'labelled_decisions') }}
),

renamed as (
    select
        ticket_id,
        feedback_event_id,
        feedback_kind,
        reviewer,
        label_intent,
        label_urgency,
        label_route,
        feedback_events,
        is_overridden,
        first_feedback_at,
        labelled_at as last_feedback_at
    from source
)

select * from renamed
