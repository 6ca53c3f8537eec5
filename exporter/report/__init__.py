"""What a cycle publishes: the immutable snapshot of metric families, the catalogue that names
every metric, and the text / OpenMetrics rendering scrapes serve."""
