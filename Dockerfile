# syntax=docker/dockerfile:1
# twitch-ingestion: Twitch chat → Kafka.
#   docker build -t twitch-ingestion .
#   docker compose up -d            (with the kafka service from docker-compose.yml)

# Debian trixie: its apt `cargo`/`rustc` (1.85) build the compiled hot path (native/,
# rust-version 1.85); bookworm's 1.63 would not.
ARG PYTHON_IMAGE=python:3.11-slim-trixie

# --- builder: a self-contained virtualenv in /opt/venv ---------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /build

# Dependencies first, so editing the source does not re-download them: the runtime
# dependencies named in pyproject.toml, every one (and every dependency of theirs) pinned by
# requirements.lock, exactly as `make install` pins them. Each ships manylinux wheels
# (confluent-kafka bundles librdkafka), so this stage needs no compiler.
COPY pyproject.toml requirements.lock ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > requirements.txt \
    && pip install --constraint requirements.lock --requirement requirements.txt

# The compiled hot path (HOT_PATH=auto uses it): Debian's Rust toolchain and the pinned
# maturin build it into the venv here; the runtime stage copies the venv, not the compiler.
# Crates come from crates.io at the versions in native/Cargo.lock (--locked). Before the
# Python source: editing src/ then reuses this (slow) layer from the build cache.
COPY native ./native
RUN apt-get update \
    && apt-get install -y --no-install-recommends cargo \
    && rm -rf /var/lib/apt/lists/* \
    && pip install -c requirements.lock maturin \
    && maturin build --release --locked --manifest-path native/Cargo.toml --out /tmp/wheels \
    && pip install --no-deps /tmp/wheels/*.whl \
    && pip uninstall -y maturin \
    && python -c "import twitch_ingestion_native" \
    && rm -rf /tmp/wheels native/target /root/.cargo/registry

# The service itself, last: what changes most often (README.md is its package description).
COPY README.md ./
COPY src ./src
RUN pip install --no-deps . \
    && twitch-ingestion --help >/dev/null

# --- runtime: the venv and nothing else ---------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ARG APP_UID=10001
ARG APP_GID=10001

# Settings the image fixes; everything else (TWITCH_*, KAFKA_*) comes from the environment.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HEALTH_PORT=8080 \
    BUFFER_DIR=/var/lib/twitch-ingestion

RUN groupadd --system --gid "${APP_GID}" twitch-ingestion \
    && useradd --system --uid "${APP_UID}" --gid twitch-ingestion \
        --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin twitch-ingestion \
    && install -d -o "${APP_UID}" -g "${APP_GID}" -m 0750 /var/lib/twitch-ingestion

COPY --from=builder /opt/venv /opt/venv

# The durable buffer: messages Kafka has not acknowledged yet must survive a container restart,
# so it lives on a volume. The directory is created above owned by the app user, and a fresh
# named volume copies that ownership.
VOLUME ["/var/lib/twitch-ingestion"]
# Not the volume: the settings loader also reads ./.env, and nothing in the data volume
# should be able to turn into configuration.
WORKDIR /app

USER ${APP_UID}:${APP_GID}

# /healthz and /metrics (Prometheus).
EXPOSE 8080

# No curl in the slim image; the venv's Python is already there. urlopen raises on a refused
# connection or a non-2xx status, which exits non-zero.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('HEALTH_PORT', '8080') + '/healthz', timeout=4)"]

# Exec form: the service is PID 1 and receives SIGTERM itself, so it can flush the producer
# and the buffer before `docker stop`'s grace period runs out (SHUTDOWN_TIMEOUT_S, 30 s).
STOPSIGNAL SIGTERM
CMD ["twitch-ingestion", "run"]
