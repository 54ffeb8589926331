with source as (
    select * from {{ source('triage', 'actions') }}
),

renamed as (
    select
        action_id,
        ticket_id,
        kind as action_kind,
        adapter,
        status as action_status,
        attempts,
        created_at,
        delivered_at
    from source
)

select * from renamed
