# The nudge image: `nudge worker` by default; `nudge collector` and `nudge mailer` run from
# the same image (docker-compose.yml does both). Built in two stages so the runtime image
# carries the installed package and its dependencies, not pip's caches or the source tree.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/nudge
WORKDIR /src
# the dependencies are pinned (==) in pyproject.toml; a regular (non-editable) install, so
# the image does not need this source tree at run time
COPY pyproject.toml README.md ./
COPY profiles ./profiles
COPY render ./render
COPY triggers ./triggers
COPY streams ./streams
RUN /opt/nudge/bin/pip install . \
    && /opt/nudge/bin/nudge --help >/dev/null

FROM ${PYTHON_IMAGE}
# a fixed uid, so volumes and Kubernetes' runAsNonRoot can name it
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/nudge --create-home \
        --shell /usr/sbin/nologin nudge
COPY --from=build /opt/nudge /opt/nudge
# the shipped rules, templates, catalog and demo model, read only by the processes
COPY config /app/config
ENV PATH=/opt/nudge/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NUDGE_CONFIG_DIR=/app/config \
    NUDGE_DATA_DIR=/var/lib/nudge/data \
    NUDGE_WEB_HOST=0.0.0.0 \
    NUDGE_WEB_PORT=6066 \
    NUDGE_COLLECTOR_HOST=0.0.0.0 \
    MPLCONFIGDIR=/var/lib/nudge/matplotlib
WORKDIR /var/lib/nudge
USER 10001:10001
# worker health and /metrics, the collector, the mailer's health and /metrics
EXPOSE 6066 8080 6068
# the worker's readiness (partitions assigned, Redis answering); slim has no curl. The
# collector and mailer serve on other ports: docker-compose.yml gives them their own check.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=4 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/ready' % os.environ.get('NUDGE_WEB_PORT', '6066'), timeout=3)"]
ENTRYPOINT ["nudge"]
CMD ["worker"]
