"""Records to columnar batches: the JSON parsers (per-record reference and block fast path),
timestamps, hashed ids and the vectorised batch operations the cycle applies to them."""
