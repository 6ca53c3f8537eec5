"""mlmon-exporter: a Prometheus exporter for the quality of machine-learning models in production."""

__version__ = "0.1.0"
