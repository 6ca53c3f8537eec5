"""What a cycle publishes: the typed, immutable Report (``model``), the one catalogue that turns
it into metric families and names every metric (``catalogue``), the families' immutable
snapshot and its text / OpenMetrics rendering that scrapes serve (``snapshot``)."""
