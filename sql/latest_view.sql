{#- bmrs_<code>_latest: of every kept version (settlement runs, forecast vintages, REMIT revisions), the
    latest per fact, by the registry's order. -#}
{% with rows = unified %}{% include "latest_rows.sql" %}{% endwith %}
