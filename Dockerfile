# One image for the web and worker services of compose.yaml.
FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm source-extractor \
    && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir uv
WORKDIR /app
COPY pyproject.toml uv.lock package.json package-lock.json dev ./
COPY pipeline ./pipeline
COPY jobs ./jobs
COPY web ./web
COPY templates ./templates
COPY static ./static
COPY alembic ./alembic
COPY alembic.ini README.md ./
RUN ./dev setup
ENV PATH="/app/.venv/bin:$PATH"
