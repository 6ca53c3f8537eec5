"""The running process: the Exporter's threads, reload, shutdown, signals, logging and atomic
checkpoints."""
