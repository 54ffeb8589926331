-- A model knows the taxonomy it was trained on: the workspace's taxonomy.yaml is stored with every
-- model version (NULL for versions registered before: their label maps in `heads` are the label set).
ALTER TABLE triage.model_versions ADD COLUMN taxonomy jsonb;

-- Every label of every registered model version, one row each, in class-index order; the out-of-scope
-- label (which feedback may name but no head predicts) has position -1. dbt's label tests and the
-- quality suite read this view instead of literal lists.
CREATE VIEW triage.taxonomy_labels AS
SELECT m.name AS model_name,
       m.version AS model_version,
       m.status,
       coalesce(m.taxonomy ->> 'name', 'derived') AS taxonomy_name,
       h.key AS head,
       l.label,
       (l.ordinality - 1)::int AS position
FROM triage.model_versions m
CROSS JOIN LATERAL jsonb_each(m.heads) AS h(key, value)
CROSS JOIN LATERAL jsonb_array_elements_text(h.value) WITH ORDINALITY AS l(label, ordinality)
UNION ALL
SELECT m.name, m.version, m.status, coalesce(m.taxonomy ->> 'name', 'derived'), 'intent',
       coalesce(m.taxonomy ->> 'out_of_scope', 'out_of_scope'), -1
FROM triage.model_versions m;
