# syntax=docker/dockerfile:1
# The quantscope image: one image for the API, the scheduler, the simulator and one-off commands
# (`docker compose run --rm api quantscope backfill ...`). Built by compose.yaml.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # A regular (non-editable) install: point the settings at the shipped config and a writable home.
    QUANTSCOPE_CONFIG_DIR=/app/config \
    QUANTSCOPE_K6_DIR=/app/k6 \
    QUANTSCOPE_HOME=/var/lib/quantscope

RUN groupadd --system --gid 10001 quantscope \
 && useradd --system --uid 10001 --gid quantscope --home-dir /var/lib/quantscope --create-home quantscope

WORKDIR /app
# Dependencies first so a code change does not reinstall them (the layer is keyed on pyproject.toml).
COPY pyproject.toml README.md ./
RUN mkdir -p src/quantscope && touch src/quantscope/__init__.py \
 && pip install . \
 && pip uninstall -y quantscope \
 && rm -rf src
COPY src ./src
COPY config ./config
COPY k6 ./k6
COPY scripts ./scripts
RUN pip install --no-deps . && rm -rf build src/*.egg-info

USER quantscope
EXPOSE 8000 8600 9464
CMD ["quantscope", "serve", "--host", "0.0.0.0", "--port", "8000"]
