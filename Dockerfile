# stockup-tui as a container: `docker compose up -d` runs it headless next to Kafka, InfluxDB and
# Grafana (docker-compose.yaml); `docker run -it --rm IMAGE` opens the dashboard in the terminal.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY stockup_tui ./stockup_tui
COPY themes ./themes
# constraints.txt pins the screen's libraries to the versions the tests render with.
RUN pip install -c constraints.txt . \
    && rm -rf /src

# Not root: the app needs no privilege; its config and state go to the user's home.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin stockup
USER stockup
WORKDIR /home/stockup

ENTRYPOINT ["stockup-tui"]
CMD ["--headless"]
