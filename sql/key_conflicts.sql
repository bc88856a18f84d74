{#- Keys whose rows differ in value: two facts under one key, so the key misses a column. -#}
SELECT COUNT(*) AS keys, MIN(sample_key) AS example
FROM (
  SELECT {{ sample }} AS sample_key
  FROM {{ table }}
  GROUP BY {{ key | join(", ") }}
  HAVING COUNT(DISTINCT {{ fingerprint }}) > 1
) AS conflicting
