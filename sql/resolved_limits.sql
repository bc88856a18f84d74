{#- bmrs_mels_resolved / bmrs_mils_resolved: Elexon's resolved position (docs/mil_mel_resolution.md in
    elexon-data/insights-docs) from every declaration in `unified`, IRIS's raw files and the API's already
    resolved rows alike.

    At each instant of a unit, of the declarations covering it the latest by the registry's order
    (`order`: notificationSequence, then notificationTime, then the observation order) holds, which is
    what applying valid redeclarations one after another gives, whatever order the files came in.
    Levels are the holding declaration's own (never interpolated); only times move. Resolved pieces are
    cut at settlement-period boundaries (UTC half-hours) and merged where consecutive pieces repeat one
    segment (same sequence, time and levels). A declaration with no duration (timeTo <= timeFrom, or
    either missing) covers no instant and is ignored; one is resolved over its first `horizon_periods`
    settlement periods at most, so a mistyped timeTo (year 9999) cannot make the view fail for everyone.

    Cost: every join and window is within one unit and one settlement period (`_unit`, `_period`), so
    the work grows with the declarations, not with units x declarations. -#}
{% set half_hour_us = "1800000000" %}
{% set day = d.london_date(d.from_epoch_seconds("_period * 1800")) %}
WITH declared AS (
  SELECT
    {{ unit }} AS _unit,
    {{ d.int_div(d.epoch_micros("r." ~ d.q("timeFrom")), half_hour_us) }} AS _first_period,
    LEAST({{ d.int_div(d.epoch_micros("r." ~ d.q("timeTo")) ~ " - 1", half_hour_us) }},
      {{ d.int_div(d.epoch_micros("r." ~ d.q("timeFrom")), half_hour_us) }} + {{ horizon_periods - 1 }}) AS _last_period,
    r.{{ carried | join(",\n    r.") }}
  FROM {{ unified }} AS r
  WHERE r.{{ d.q("timeFrom") }} < r.{{ d.q("timeTo") }} AND {{ unit }} IS NOT NULL
),

-- Each declaration cut into its settlement periods (_period: half-hours since 1970, UTC).
pieces AS (
  SELECT
    dc._unit,
    p AS _period,
    GREATEST(dc.{{ d.q("timeFrom") }}, {{ d.from_epoch_seconds("p * 1800") }}) AS _from,
    LEAST(dc.{{ d.q("timeTo") }}, {{ d.from_epoch_seconds("(p + 1) * 1800") }}) AS _to,
    dc.{{ carried | join(",\n    dc.") }}
  FROM declared AS dc
  CROSS JOIN {{ d.unnest(d.integer_series("dc._first_period", "dc._last_period"), "p") }}
),

-- Elementary intervals: between consecutive boundaries of any piece of the unit in the period.
boundaries AS (
  SELECT DISTINCT _unit, _period, _at
  FROM (
    SELECT _unit, _period, _from AS _at FROM pieces
    UNION ALL
    SELECT _unit, _period, _to AS _at FROM pieces
  ) AS ends
),
elementary AS (
  SELECT _unit, _period, _at AS _from,
    LEAD(_at) OVER (PARTITION BY _unit, _period ORDER BY _at) AS _to
  FROM boundaries
),

-- Of the pieces covering an elementary interval, the latest holds it.
held AS (
  SELECT
    e._unit, e._period, e._from, e._to,
    p.{{ carried | join(",\n    p.") }},
    ROW_NUMBER() OVER (
      PARTITION BY e._unit, e._period, e._from
      ORDER BY {{ order | join(", ") }}
    ) AS _holder_rank
  FROM elementary AS e
  JOIN pieces AS p
    ON p._unit = e._unit AND p._period = e._period AND p._from <= e._from AND p._to >= e._to
  WHERE e._to IS NOT NULL
),

-- Gaps and islands: a new resolved piece starts wherever the segment changes or time jumps.
starts AS (
  SELECT h.*,
    CASE WHEN LAG(h._to) OVER w = h._from
{% for name in segment %}
      AND LAG(h.{{ name }}) OVER w IS NOT DISTINCT FROM h.{{ name }}
{% endfor %}
    THEN 0 ELSE 1 END AS _starts
  FROM held AS h
  WHERE h._holder_rank = 1
  WINDOW w AS (PARTITION BY h._unit, h._period ORDER BY h._from)
),
islands AS (
  SELECT s.*,
    SUM(s._starts) OVER (
      PARTITION BY s._unit, s._period ORDER BY s._from ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
    ) AS _island
  FROM starts AS s
)

SELECT
  -- provenance of the island's first piece (a merged piece may join the same segment from two files)
{% for name in provenance[:2] %}
  MAX(CASE WHEN _starts = 1 THEN {{ name }} END) AS {{ name }},
{% endfor %}
  {{ day }} AS {{ d.q("settlementDate") }},
  _period - {{ d.int_div(d.epoch_seconds(d.london_midnight(day)), "1800") }} + 1 AS {{ d.q("settlementPeriod") }},
  MIN(_from) AS {{ d.q("timeFrom") }},
  MAX(_to) AS {{ d.q("timeTo") }},
{% for name in segment %}
  MAX({{ name }}) AS {{ name }},
{% endfor %}
{% for name in provenance[2:] %}
  MAX(CASE WHEN _starts = 1 THEN {{ name }} END) AS {{ name }}{{ "," if not loop.last }}
{% endfor %}
FROM islands
GROUP BY _unit, _period, _island
