# syntax=docker/dockerfile:1
# tokenbot: a pinned slim Python, dependencies in their own cached layer, the code installed
# read-only into site-packages, a non-root user owning every path it writes.
FROM python:3.11.11-slim-bookworm

# EXTRAS=sim adds the simulators (compose.yaml's try-out); a production image leaves it empty.
ARG EXTRAS=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin tokenbot \
    && mkdir -p /data && chown tokenbot:tokenbot /data

WORKDIR /src
# Dependencies first: this layer is rebuilt only when pyproject.toml changes, not on code edits.
COPY pyproject.toml README.md ./
RUN mkdir -p bot adapters && touch bot/__init__.py adapters/__init__.py \
    && pip install ".${EXTRAS:+[$EXTRAS]}" && pip uninstall --yes tokenbot \
    && rm -rf bot adapters
COPY bot ./bot
COPY adapters ./adapters
RUN pip install --no-deps . && rm -rf /src/build /src/*.egg-info

# Everything tokenbot writes lives under /data, owned by the tokenbot user: the store, the master
# key and images in /data/tokenbot-data, console output in /data/tokenbot-out. The data dir's
# default (./tokenbot-data, also what config/tokenbot.example.env sets) resolves here, so an env
# file copied from the example cannot point it somewhere unwritable.
WORKDIR /data
USER tokenbot
VOLUME ["/data"]
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('TOKENBOT_HTTP_PORT', '3000'), timeout=4)"]
# tokenbot stops on SIGTERM: jobs are left resumable and resume at the next start.
STOPSIGNAL SIGTERM
ENTRYPOINT ["tokenbot"]
CMD ["run"]
