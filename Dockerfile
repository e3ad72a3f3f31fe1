# gptsbot in a container (see "Deploy" in the README):
#   docker build -t gptsbot .                            SQLite on the /data volume
#   docker build -t gptsbot --build-arg EXTRAS=postgres .  also PostgreSQL (compose.yaml)
# The image holds a virtual environment and nothing else of the build: no compiler, no sources.
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# Optional dependencies of pyproject.toml to install, e.g. "postgres".
ARG EXTRAS=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/gptsbot
COPY pyproject.toml README.md ./
COPY core ./core
COPY bots ./bots
COPY storage ./storage
RUN /opt/gptsbot/bin/pip install ".${EXTRAS:+[$EXTRAS]}"

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 gptsbot \
    && useradd --system --uid 10001 --gid gptsbot --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin gptsbot \
    && mkdir /data \
    && chown gptsbot:gptsbot /data
COPY --from=build /opt/gptsbot /opt/gptsbot
# The database (and an optional /data/config.toml) live on the volume; /metrics, /healthz and
# /readyz listen on every interface of the container (publish the port only where needed).
ENV PATH=/opt/gptsbot/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/data \
    GPTSBOT_DATABASE_URL=sqlite+aiosqlite:////data/gptsbot.db \
    GPTSBOT_METRICS_LISTEN=0.0.0.0:9464
WORKDIR /data
VOLUME ["/data"]
USER 10001:10001
EXPOSE 9464
# Alive: the process answers /healthz (readiness, /readyz, is for orchestrators that route).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; port = os.environ['GPTSBOT_METRICS_LISTEN'].rpartition(':')[2]; r.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]
# SIGTERM (docker stop) lets answers in progress finish for [bot] shutdown_grace_s (10 s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["gptsbot"]
CMD ["run"]
