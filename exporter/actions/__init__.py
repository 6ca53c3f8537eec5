"""What the exporter does with a cycle's numbers besides serving them: retraining requests
(filed when Alertmanager sends a drift alert) and Parquet history."""
