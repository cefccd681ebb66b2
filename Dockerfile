# cityline in a container: `docker compose up` (see docker-compose.yml) or on its own:
#   docker build -t cityline . && docker run -e REDIS_URL=redis://redis-host:6379/0 -p 8080:8080 cityline
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what the package needs: a stray .venv or data/ in the checkout never enters the image.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY router ./router
COPY queues ./queues
COPY channels ./channels
COPY ivr_flows ./ivr_flows
# The packaged example config becomes /etc/cityline/cityline.yaml; mount your own over it.
RUN pip install . \
    && cd / \
    && rm -rf /src \
    && useradd --system --home-dir /var/lib/cityline --shell /usr/sbin/nologin cityline \
    && mkdir -p /var/lib/cityline /etc/cityline \
    && chown cityline:cityline /var/lib/cityline \
    && python -c "import shutil; from router.config import default_config_path; \
shutil.copy(default_config_path(), '/etc/cityline/cityline.yaml')"

WORKDIR /var/lib/cityline
USER cityline
# In a container the server must listen beyond loopback; data (embedded Redis, attachments)
# goes to a volume. Both are ordinary CITYLINE_* overrides of the config file.
ENV CITYLINE_HTTP__HOST=0.0.0.0 \
    CITYLINE_HTTP__PORT=8080 \
    CITYLINE_DATA_DIR=/var/lib/cityline
EXPOSE 8080
VOLUME ["/var/lib/cityline"]

HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=2)"]

CMD ["cityline", "serve", "--config", "/etc/cityline/cityline.yaml"]
