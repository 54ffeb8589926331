with source as (
    select * from {{ source('triage', 'drift_reports') }}
),

renamed as (
    select
        id as drift_report_id,
        model_name,
        model_version,
        window_start,
        window_end,
        n_current as decisions_in_window,
        metrics ->> 'status' as report_status,
        drift_detected as is_drift_detected,
        reasons,
        report_path,
        created_at
    from source
)

select * from renamed
