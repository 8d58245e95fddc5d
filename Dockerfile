# The bot in a container: one image for every shard process (docker-compose.yml runs several).
# It installs with the README's own command, so the image runs what `python -m bot` runs anywhere.
FROM python:3.11-slim

WORKDIR /app
# Only what the package needs (bot, cogs, tools); secrets come from the environment at run time.
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY cogs ./cogs
COPY tools ./tools
COPY deploy/container.toml ./deploy/container.toml
RUN python3 -m venv .venv && .venv/bin/pip install -q . \
    && useradd --system --home-dir /app --shell /usr/sbin/nologin bot \
    && mkdir -p /app/data && chown bot /app/data

USER bot
ENV PYTHONUNBUFFERED=1 \
    BOT_METRICS_PORT=9100
EXPOSE 9100
# Ready once every shard of the process is connected to Discord (see README, "Health and metrics").
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD [".venv/bin/python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9100/healthz', timeout=2).status != 200)"]
CMD [".venv/bin/python", "-m", "bot", "--config", "deploy/container.toml"]
