# Helpdesk in one container: web, REST API, websockets, SMTP listener and workers.
#   docker build -t helpdesk .
#   docker run -p 8000:8000 -p 2525:2525 -v helpdesk-data:/data \
#     -e HELPDESK_ENV=production -e HELPDESK_SECRET_KEY=$(openssl rand -hex 32) helpdesk
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HELPDESK_DATA_DIR=/data/files \
    HELPDESK_DATABASE_URL=sqlite+aiosqlite:////data/helpdesk.db \
    HELPDESK_HTTP_PORT=8000 \
    HELPDESK_SMTP_LISTEN=0.0.0.0:2525 \
    HELPDESK_LOG_FORMAT=json

# The source stays in /app: migrations/ and widget/ are found next to the app package,
# so the project is installed in place (editable) rather than copied into site-packages.
WORKDIR /app
COPY . /app
RUN pip install -e . \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin helpdesk \
    && mkdir -p /data \
    && chown helpdesk:helpdesk /data \
    && chmod 0755 /app/docker/entrypoint.sh

USER helpdesk
VOLUME ["/data"]
EXPOSE 8000 2525

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('HELPDESK_HTTP_PORT', '8000'), timeout=4)"]

ENTRYPOINT ["/app/docker/entrypoint.sh"]
