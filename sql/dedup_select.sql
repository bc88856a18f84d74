{#- The rows of one range of settlement days of a `bmrs_<code>_dedup` table: the unified view's (already
    one per natural key), with the dataset's flags. `unified` is the view, `day_column` the partition. -#}
SELECT
  u.*{% for name, expr in flags %},
  {{ expr }} AS {{ d.q(name) }}{% endfor %}

FROM {{ unified }} AS u
WHERE u.{{ d.q(day_column) }} >= {{ first }} AND u.{{ d.q(day_column) }} < {{ end }}
{% for column, low, high in key_bounds %}
  AND u.{{ d.q(column) }} >= {{ low }} AND u.{{ d.q(column) }} < {{ high }}
{% endfor %}
