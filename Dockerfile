# tokenbot: slim Python, non-root, data on a volume.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TOKENBOT_DATA_DIR=/data

RUN useradd --create-home --uid 10001 tokenbot \
    && mkdir -p /data && chown tokenbot:tokenbot /data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY adapters ./adapters
RUN pip install --no-cache-dir .

USER tokenbot
VOLUME ["/data"]
EXPOSE 3000
ENTRYPOINT ["tokenbot"]
CMD ["run"]
