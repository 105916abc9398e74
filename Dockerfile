# stageflow API and worker (one image; docker-compose.yml picks the command).
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    STAGEFLOW_DATA_DIR=/data

RUN groupadd --system --gid 10001 stageflow \
 && useradd --system --uid 10001 --gid stageflow --home-dir /app --shell /usr/sbin/nologin stageflow \
 && mkdir -p /data \
 && chown stageflow:stageflow /data

WORKDIR /app
COPY . .
RUN pip install '.[postgres]' \
 && rm -rf build *.egg-info

USER stageflow
EXPOSE 8000 9100
# On SIGTERM uvicorn stops accepting connections and gives the requests it has up to 20 s to finish.
CMD ["uvicorn", "api.main:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000", "--loop", "uvloop", "--http", "httptools", "--timeout-graceful-shutdown", "20"]
