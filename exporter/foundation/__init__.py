"""Values and small mechanisms every layer may use, and which import nothing else of the exporter.

The one home of the shared vocabulary (the clock type, the numpy array aliases, the severity tiers,
the reject reasons of the ``reason`` label, the HTTP response value a route returns) and of the
atomic file write that checkpoints, retraining state and history share.
"""
