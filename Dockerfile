# One image for every dataplane process (api, scheduler, workers, migrate, flower).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DATAPLANE_DATA_DIR=/data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY scheduler ./scheduler
COPY worker ./worker
COPY api ./api
COPY dataplane ./dataplane
RUN pip install '.[flower]' \
    && useradd --create-home --uid 10001 dataplane \
    && mkdir -p /data && chown dataplane /data

# Workers run untrusted NQL in DuckDB: never as root.
USER dataplane
EXPOSE 8000 5555
CMD ["dataplane", "--help"]
