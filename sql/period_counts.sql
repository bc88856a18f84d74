{#- Per settlement day (and series, e.g. MID's data provider): how many distinct periods, the first and
    the last. Python compares them with the day's 46, 48 or 50. -#}
SELECT
  {{ d.q("settlementDate") }} AS day,
  {{ series_expr }} AS series,
  COUNT(DISTINCT {{ d.q("settlementPeriod") }}) AS periods,
  MIN({{ d.q("settlementPeriod") }}) AS first_period,
  MAX({{ d.q("settlementPeriod") }}) AS last_period
FROM {{ table }}
WHERE {{ d.q("settlementDate") }} IS NOT NULL
  {% if where %}
  AND {{ where }}
  {% endif %}

GROUP BY 1, 2
ORDER BY 1, 2
