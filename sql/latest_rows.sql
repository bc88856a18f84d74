{#- One row per `partition`: the first by `order` (the registry's "latest" rule). Included by the
    unified and latest views; `rows` is a table, view or CTE name, `output` the columns kept. -#}
SELECT
  {{ output | join(",\n  ") }}
FROM (
  SELECT r.*, ROW_NUMBER() OVER (
    PARTITION BY {{ partition | join(", ") }}
    ORDER BY {{ order | join(", ") }}
  ) AS _latest_rank
  FROM {{ rows }} AS r
) AS ranked
WHERE _latest_rank = 1
