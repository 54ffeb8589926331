-- One row per registered model version.
select
    model_version_key,
    model_name,
    model_version,
    model_status,
    base_model,
    data_fingerprint,
    metrics,
    artifact_path,
    changed_by,
    status_reason,
    created_at,
    updated_at
from {{ ref('stg_triage__model_versions') }}
