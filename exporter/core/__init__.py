"""Per-model and per-version state and the cycle that updates it.

Classes, the bounded join, bucketed windows, drift and reference state, per-version statistics,
and the pipeline: poll -> parse -> join -> update -> publish.
"""
