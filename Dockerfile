# syntax=docker/dockerfile:1
# Build stage: install dealwatch and its pinned dependencies into a virtualenv.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY service ./service
COPY alerts ./alerts
RUN /opt/venv/bin/pip install .

# Runtime stage: the virtualenv, config and migrations; runs as an unprivileged user.
FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DEALWATCH_CONFIG_DIR=/app/config \
    DEALWATCH_DATA_DIR=/data \
    DEALWATCH_DATABASE__URL=sqlite+aiosqlite:////data/dealwatch.db \
    DEALWATCH_API__HOST=0.0.0.0
RUN useradd --system --uid 10001 --home-dir /app dealwatch && mkdir -p /data && chown dealwatch /data
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY config ./config
COPY migrations ./migrations
USER dealwatch
EXPOSE 8000
VOLUME ["/data"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"
# `dealwatch init` is idempotent, so every container may run it before serving.
CMD ["sh", "-c", "dealwatch init && exec dealwatch serve --role ${DEALWATCH_ROLE:-all}"]
