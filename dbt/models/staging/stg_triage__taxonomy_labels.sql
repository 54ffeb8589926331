-- Every label of every registered model version (view triage.taxonomy_labels, filled from the
-- taxonomy stored with each version): the accepted values of intent and urgency, per model.
with source as (
    select * from {{ source('triage', 'taxonomy_labels') }}
)

select
    model_name || ':v' || model_version::text as model_version_key,
    model_name,
    model_version,
    status as model_status,
    taxonomy_name,
    head,
    label,
    position as label_position,
    position < 0 as is_out_of_scope
from source
