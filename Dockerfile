# mlmon-exporter container image.
#
#   docker build -t mlmon-exporter:0.1.0 .
#   docker run --rm -p 9741:9741 mlmon-exporter:0.1.0 demo          # try it, no config needed
#   docker run --rm -p 9741:9741 -v "$PWD/config.yaml:/etc/mlmon/config.yaml:ro" mlmon-exporter:0.1.0
#
# Runs as the numeric user 10001 in group 0 (so Kubernetes can verify runAsNonRoot and
# OpenShift's arbitrary UIDs, always in group 0, can write the state directory), works with a
# read-only root filesystem (writes only to /var/lib/mlmon and /tmp), and runs under tini so
# SIGTERM reaches the exporter and zombies are reaped.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build stage: a self-contained virtualenv with the exporter and its dependencies ----
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# A C compiler for the JSON line scanner and the join/drift kernels (exporter/ingest/_linescan.c,
# exporter/core/_kernels.c, built by setup.py); the slim image has Python's headers but no gcc.
# Only this stage has it: the final image gets the compiled modules inside the virtualenv and no
# build tools.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc=4:12.* libc6-dev=2.36-* \
    && rm -rf /var/lib/apt/lists/*
# The venv gets no pip of its own: the base image's pip installs into it, so the final
# image carries neither pip nor setuptools nor any build cache.
RUN python -m venv --without-pip /opt/mlmon
COPY pyproject.toml setup.py README.md ./
COPY exporter ./exporter
RUN python -m pip --python /opt/mlmon/bin/python install --no-cache-dir .

# ---- final stage: only the virtualenv, tini and an empty state directory ----
FROM ${PYTHON_IMAGE}

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="mlmon-exporter" \
      org.opencontainers.image.description="Prometheus exporter for ML model quality: accuracy, drift, confidence, retraining alerts" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

# tini as PID 1 forwards SIGTERM/SIGINT to the exporter and reaps zombies.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini=0.19.* \
    && rm -rf /var/lib/apt/lists/*

COPY --from=build /opt/mlmon /opt/mlmon

# State directory and config directory: owned by group 0 and group-writable (OpenShift
# runs the container with an arbitrary UID whose group is always 0).
RUN mkdir -p /var/lib/mlmon /etc/mlmon \
    && chgrp -R 0 /var/lib/mlmon /etc/mlmon \
    && chmod -R g=u /var/lib/mlmon /etc/mlmon

# MALLOC_ARENA_MAX=2: glibc's per-thread malloc arenas otherwise keep freed batch memory of
# the pipeline, HTTP and checkpoint threads apart, which costs tens of MiB of RSS for nothing.
ENV PATH="/opt/mlmon/bin:${PATH}" \
    MALLOC_ARENA_MAX=2 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp

USER 10001:0
WORKDIR /var/lib/mlmon
EXPOSE 9741

# Docker only (Kubernetes uses the chart's probes). /-/healthy is never behind basic auth.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9741/-/healthy', timeout=3)"]

ENTRYPOINT ["/usr/bin/tini", "--", "mlmon-exporter"]
CMD ["--config.file=/etc/mlmon/config.yaml", "--state.directory=/var/lib/mlmon"]
