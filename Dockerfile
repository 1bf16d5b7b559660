# adpipe service image: `adpipe serve` (FastAPI on uvicorn) on port 8000, as a non-root user.
#
#   docker build -t adpipe:0.1.0 .
#   docker build --build-arg EXTRAS=service,otel -t adpipe:0.1.0-otel .    # with OpenTelemetry export
#
# Two stages: the builder installs the project (built as a wheel by pip) and its dependencies into a
# virtualenv; the runtime stage copies only that virtualenv onto a clean slim image (no compilers, no
# pip cache, no source tree). Both stages use the same base so the venv's interpreter paths match.

FROM python:3.11.13-slim-bookworm AS builder

# Which optional dependency groups of pyproject.toml to install (comma separated).
ARG EXTRAS=service

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH

WORKDIR /src
RUN python -m venv /opt/venv

# Only what the wheel needs: the metadata, the readme it embeds and the package itself.
COPY pyproject.toml README.md ./
COPY adpipe ./adpipe

# pip builds a wheel of the project, then installs it with its dependencies (binary wheels) into the venv.
# DL3013 (pin versions) is ignored: the target is this checkout, not a PyPI name; the dependency
# ranges live in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[${EXTRAS}]" \
    && adpipe --version


FROM python:3.11.13-slim-bookworm AS runtime

ARG VERSION=0.1.0

LABEL org.opencontainers.image.title="adpipe" \
      org.opencontainers.image.description="Plugin-based anomaly-detection pipelines: the adpipe HTTP service" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.13-slim-bookworm"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    ADPIPE_HOME=/var/lib/adpipe \
    ADPIPE_STORE=/var/lib/adpipe/models \
    MPLCONFIGDIR=/tmp/matplotlib \
    ADPIPE_SERVE_HOST=0.0.0.0 \
    ADPIPE_SERVE_PORT=8000

# A fixed numeric user and group, so Kubernetes' runAsUser/fsGroup can match them.
RUN groupadd --system --gid 10001 adpipe \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/adpipe --no-create-home \
       --shell /usr/sbin/nologin adpipe \
    && mkdir -p /var/lib/adpipe/models /etc/adpipe/keys /etc/adpipe/configs \
    && chown -R 10001:10001 /var/lib/adpipe

COPY --from=builder /opt/venv /opt/venv
# Default settings (root-owned, read-only for the service); mount your own over it to change them.
COPY deploy/serve.yaml /etc/adpipe/serve.yaml

WORKDIR /var/lib/adpipe
# Model store, signing key, run state: keep them on a volume.
VOLUME ["/var/lib/adpipe"]

USER 10001:10001
EXPOSE 8000

# Liveness only (no curl in slim images): readiness (models loaded) is the orchestrator's business.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/v1/health/live' % os.environ.get('ADPIPE_SERVE_PORT', '8000'), timeout=4)"]

ENTRYPOINT ["adpipe"]
CMD ["serve", "--settings", "/etc/adpipe/serve.yaml"]
