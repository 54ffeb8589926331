-- One row per review in the console (apps/console): who, what, how long from claim to review.
with source as (
    select * from {{ source('triage', 'reviews') }}
)

select
    review_key,
    ticket_id,
    reviewer,
    kind as review_kind,
    intent as label_intent,
    urgency as label_urgency,
    route as label_route,
    reply is not null as sent_reply,
    reply_edited as is_reply_edited,
    kind <> 'confirm' as is_override,
    handling_ms / 60000.0 as handling_minutes,
    claimed_at,
    created_at as reviewed_at
from source
