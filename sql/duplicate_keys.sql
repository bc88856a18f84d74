{#- Keys that more than one row of `table` shares: their number, and one of them. -#}
SELECT COUNT(*) AS keys, MIN(sample_key) AS example
FROM (
  SELECT {{ sample }} AS sample_key
  FROM {{ table }}
  {% if where %}
  WHERE {{ where }}
  {% endif %}
  GROUP BY {{ key | join(", ") }}
  HAVING COUNT(*) > 1
) AS shared
