{#
  Accepted values from the registry instead of a literal list: each non-null value of `column_name`
  must be a label of head `head` in the taxonomy of the model version named by `model_key` (the model
  that made the decision), or, without `model_key`, of any registered model version (a reviewer's label).
  Rows of model versions the registry does not know are not judged (there is no label set to judge by).
#}
{% test label_in_taxonomy(model, column_name, head, model_key=none) %}
{% set labels = ref('stg_triage__taxonomy_labels') %}
select row_to_check.{{ column_name }} as unknown_label
from {{ model }} as row_to_check
where row_to_check.{{ column_name }} is not null
  and exists (
      select 1 from {{ labels }} as known
      where known.head = '{{ head }}'
      {% if model_key %}and known.model_version_key = row_to_check.{{ model_key }}{% endif %}
  )
  and not exists (
      select 1 from {{ labels }} as known
      where known.head = '{{ head }}'
        and known.label = row_to_check.{{ column_name }}
        {% if model_key %}and known.model_version_key = row_to_check.{{ model_key }}{% endif %}
  )
{% endtest %}
