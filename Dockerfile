# One image for every Heaters service (web, workers, process manager, projection runner).
FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY domain domain
COPY commands commands
COPY projections projections
COPY processors processors
COPY web web
COPY infra infra
COPY entrypoints entrypoints
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu . \
    && useradd --create-home heaters
USER heaters
ENTRYPOINT ["heaters"]
CMD ["up", "--host", "0.0.0.0"]
