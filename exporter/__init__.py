"""mlmon-exporter: a Prometheus exporter for the quality of machine-learning models in production."""

import os

import pyarrow

__version__ = "0.1.0"

# Arrow buffers (the join's ids) come from the C allocator the rest of the process uses, not
# pyarrow's default mimalloc pool: with mimalloc, concatenating the waiting predictions' id arrays
# took 5-14 ms each mid-run (0.1 ms alone), 9% of the pipeline thread while catching up
# (bench.ingest, binary, 4 paired runs: 0.62 against 0.68 s). ARROW_DEFAULT_MEMORY_POOL still wins.
if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
    pyarrow.set_memory_pool(pyarrow.system_memory_pool())
