# twitch-ingestion — the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The compiled hot path (native/, Rust): built into the venv when cargo is on PATH.
NATIVE_STAMP := $(VENV)/.native-stamp
NATIVE_SOURCES := native/Cargo.toml native/Cargo.lock native/pyproject.toml \
	$(wildcard native/src/*.rs native/src/*/*.rs)
# cargo on PATH, else where rustup puts it (a non-login shell, CI, may not have it on PATH).
CARGO := $(or $(shell command -v cargo 2>/dev/null),$(wildcard $(HOME)/.cargo/bin/cargo))
# REQUIRE_COMPILED=1 (CI: .ci/run): the compiled path must be built and tested — no cargo
# or a failed build is an error, and the tests that need the extension fail, not skip.
export REQUIRE_COMPILED

# promtool checks monitoring/ (make test-monitoring); built from the Go module proxy at this
# version (Prometheus 3.16.0, the image of docker-compose.yml's monitoring profile) once,
# into a cache outside the checkout (a fresh clone on the same machine reuses it; building
# takes minutes). Without go, those checks are skipped with one line.
PROMTOOL_VERSION := v0.316.0
TOOLS_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/twitch-ingestion
PROMTOOL := $(TOOLS_CACHE)/promtool-$(PROMTOOL_VERSION)/promtool
GO := $(or $(shell command -v go 2>/dev/null),$(wildcard /usr/local/go/bin/go))

# The local broker is started unless KAFKA_BROKERS (env, else .env) points elsewhere
# than the local default localhost:9092.
EFFECTIVE_BROKERS := $(or $(KAFKA_BROKERS),$(shell sed -n 's/^KAFKA_BROKERS=//p' .env 2>/dev/null | tail -n 1),localhost:9092)
LOCAL_BROKER := $(filter localhost:9092 127.0.0.1:9092,$(strip $(EFFECTIVE_BROKERS)))

.PHONY: help install broker broker-stop run demo simulate simulate-eventsub tail test test-unit \
        test-component test-buffer-model test-native lint format type-check build dev bench clean image-test promtool \
        test-monitoring tmux

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

# __init__.py holds the version: a new one is installed into the package metadata too.
$(STAMP): pyproject.toml requirements.lock src/twitch_ingestion/__init__.py
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	@touch $(STAMP)

# Without cargo, say so in one line and go on: the service runs the pure-Python path
# (HOT_PATH=auto); under REQUIRE_COMPILED that is an error. With cargo, a failed build is
# an error. Cargo caches the build in native/target, so a rebuild after `make clean`
# takes seconds.
$(NATIVE_STAMP): $(STAMP) $(NATIVE_SOURCES)
	@if [ -n "$(CARGO)" ]; then \
		export PATH="$(dir $(CARGO)):$$PATH"; \
		echo "building the compiled hot path (native/, cargo $$(cargo --version | cut -d' ' -f2))"; \
		VIRTUAL_ENV=$(abspath $(VENV)) $(BIN)/maturin develop --release --quiet \
			--manifest-path native/Cargo.toml && touch $@; \
	elif [ -n "$(filter-out 0,$(REQUIRE_COMPILED))" ]; then \
		echo "REQUIRE_COMPILED=$(REQUIRE_COMPILED) but cargo was found neither on PATH nor in ~/.cargo/bin: install Rust (rustup, or apt install cargo)" >&2; \
		exit 1; \
	else \
		echo "cargo not found: skipping the compiled hot path; the service runs pure Python (README: Prerequisites)"; \
	fi

install: $(STAMP) $(NATIVE_STAMP) ## create .venv, install the service with its dev tools (pinned) and build the compiled hot path

broker: install ## start the local single-node Kafka (KRaft) unless KAFKA_BROKERS is elsewhere
	@if [ -n "$(LOCAL_BROKER)" ]; then scripts/kafka-local start; \
	else echo "Using the Kafka cluster at KAFKA_BROKERS=$(EFFECTIVE_BROKERS)"; fi

broker-stop: ## stop the local Kafka broker
	scripts/kafka-local stop

# The settings are checked before the broker starts: a first run without .env learns
# what to set at once, not after Kafka's start-up.
run: install ## run the service on TWITCH_CHANNEL (settings from env and .env)
	@$(BIN)/twitch-ingestion check-config >/dev/null 2>&1 || $(BIN)/twitch-ingestion check-config >/dev/null
	@$(MAKE) --no-print-directory broker
	$(BIN)/twitch-ingestion run

demo: install broker ## offline demo: simulator → service → Kafka → printed (CORPUS=file: real lines)
	$(BIN)/twitch-ingestion demo $(if $(CORPUS),--corpus '$(CORPUS)')

simulate: install ## Twitch IRC simulator on port 6667 streaming the bundled chat (CORPUS=file: that)
	$(BIN)/twitch-ingestion simulate --port 6667 --replay $(if $(CORPUS),'$(CORPUS)') --loop 0

# The settings the EventSub simulator prints (a simulator-only token) also go to this file,
# for the service's terminal to source (README: "EventSub offline").
EVENTSUB_ENV ?= eventsub-simulator.env

simulate-eventsub: install ## Twitch EventSub simulator (WebSocket, OAuth, Helix) on port 7080, chat for channel demo; prints its settings, also into eventsub-simulator.env
	@$(BIN)/python -m twitch_ingestion.simulator.eventsub_server --port 7080 --channels demo | tee '$(EVENTSUB_ENV)'

tail: install ## print a topic's records (key<TAB>value) from the beginning (TOPIC=…, default chat)
	$(BIN)/twitch-ingestion tail $(if $(TOPIC),--topic '$(TOPIC)')

lint: install ## ruff check + ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install ## apply ruff's formatting and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

type-check: install ## mypy --strict over src, tests, bench and examples
	$(BIN)/mypy --strict

# With the compiled extension built, the suite runs on it (HOT_PATH=auto), then the tests
# whose outcome the path can change run again on the pure-Python reference: every unit and
# component test and the IRC end-to-end, event-routing and disk-buffer tests against the
# real broker.
PYTHON_PATH_TESTS := tests/unit tests/component tests/integration/test_end_to_end.py \
	tests/integration/test_event_routing.py tests/integration/test_buffer_disk_full.py

$(PROMTOOL):
	@if [ -n "$(GO)" ]; then \
		echo "building promtool $(PROMTOOL_VERSION) from the Go module proxy into $(dir $(PROMTOOL)) (once)"; \
		GOBIN=$(abspath $(dir $(PROMTOOL))) $(GO) install \
			github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION); \
	fi

promtool: $(PROMTOOL) ## build the pinned promtool (needs go) into ~/.cache/twitch-ingestion

test-monitoring: promtool ## promtool: check the scrape config and alert rules of monitoring/, run their unit tests
	@if [ -x $(PROMTOOL) ]; then \
		$(PROMTOOL) check config --lint=all monitoring/prometheus/prometheus.yml && \
		$(PROMTOOL) check rules --lint=all monitoring/prometheus/alerts.yml && \
		cd monitoring/prometheus && $(PROMTOOL) test rules alerts_test.yml; \
	else \
		echo "go not found: skipping promtool's checks of monitoring/ (install Go ≥ 1.24 to run them)"; \
	fi

# tmux drives `twitch-ingestion top` in its test: installed with apt-get when missing and
# running as root; otherwise that test is skipped, and this says why.
tmux:
	@command -v tmux >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing tmux (apt-get) for the top command's screen test"; \
			apt-get install -y -qq tmux >/dev/null 2>&1 || \
			{ apt-get update -qq >/dev/null && apt-get install -y -qq tmux >/dev/null; }; \
		else \
			echo "tmux not found (and not root to apt-get it): the top screen test is skipped"; \
		fi; \
	}

test: install broker lint type-check test-native test-monitoring tmux ## everything: lint, types, Rust checks, promtool, unit + integration tests (real Kafka), on both hot paths
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)
	@if [ -z "$(PYTEST_ARGS)" ] && $(BIN)/python -c 'import twitch_ingestion_native' 2>/dev/null; then \
		echo "again on the pure-Python hot path (HOT_PATH=python), the reference:"; \
		HOT_PATH=python $(BIN)/python -m pytest -q $(PYTHON_PATH_TESTS); \
	fi

test-unit: install ## only the unit tests: no sockets, no sleeps, no broker
	$(BIN)/python -m pytest -q tests/unit $(PYTEST_ARGS)

test-component: install ## only the component tests: real sockets (simulator, health server, TCP) and the clock, no broker
	$(BIN)/python -m pytest -q tests/component $(PYTEST_ARGS)

# The buffers against their model (tests/unit/test_buffer_model.py), on both framers, with
# a budget: `make test` runs it with a small one and a fixed seed.
BUFFER_MODEL_EXAMPLES ?= 2000
BUFFER_MODEL_STEPS ?= 80
BUFFER_MODEL_SEED ?= 20261207

test-buffer-model: install ## long model-based run of the buffers (BUFFER_MODEL_EXAMPLES, _STEPS, _SEED)
	BUFFER_MODEL_EXAMPLES=$(BUFFER_MODEL_EXAMPLES) BUFFER_MODEL_STEPS=$(BUFFER_MODEL_STEPS) \
		BUFFER_MODEL_SEED=$(BUFFER_MODEL_SEED) \
		$(BIN)/python -m pytest -q -p no:cacheprovider -o timeout=0 tests/unit/test_buffer_model.py

test-native: ## the compiled hot path's Rust checks: cargo fmt --check, clippy -D warnings, cargo test
	@CARGO='$(CARGO)' scripts/check-native

# Not part of `make test` (it takes minutes and needs root): .ci/run runs it after.
image-test: install ## build the image with Podman on a stand-in Debian base, run it against the local Kafka and the simulator, check it (scripts/image-test)
	scripts/image-test

build: install ## build the wheel into dist/
	$(BIN)/python -m pip wheel --quiet --no-deps --wheel-dir dist .

dev: install broker ## run the service and restart it when a source file changes
	$(BIN)/watchfiles --filter python '$(BIN)/twitch-ingestion run' src

bench: install broker ## run the benchmarks (bench/README.md)
	$(BIN)/python -m bench

clean: ## remove the venv, caches and build output (keeps the broker's jar cache)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build dist src/*.egg-info
	@# native/target (cargo's build cache) is kept: `rm -rf native/target` for a cold build
