with source as (
    select * from {{ source('triage', 'model_versions') }}
),

renamed as (
    select
        name || ':v' || version::text as model_version_key,
        name as model_name,
        version as model_version,
        status as model_status,
        base_model,
        data_fingerprint,
        metrics,
        artifact_path,
        changed_by,
        reason as status_reason,
        created_at,
        updated_at
    from source
)

select * from renamed
