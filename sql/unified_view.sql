{#- bmrs_<code>_unified: the historic table and the IRIS table as one timeline.

    Each source's columns are brought to the registry's types (legacy layouts are cast safely: NULL
    where a value does not convert), tagged with `source` (HISTORIC or IRIS) and `_observed_at` (IRIS:
    the publish time in the file name, else the load time; history: the fetch time). Then one row per
    natural key survives, latest by the registry's order, so there is neither a gap nor a double at the
    seam, and no cutoff date. -#}
WITH unioned AS (
{% for s in sources %}
  SELECT
{% for name, expr in s.columns %}
    {{ expr }} AS {{ d.q(name) }},
{% endfor %}
    {{ d.string(s.label) }} AS {{ d.q("source") }},
    {{ s.observed_at }} AS {{ d.q("_observed_at") }}
  FROM {{ s.ref }}
{% if not loop.last %}
  UNION ALL
{% endif %}
{% endfor %}
)
{% with rows = "unioned" %}{% include "latest_rows.sql" %}{% endwith %}
