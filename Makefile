# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CHAOS_STAMP := $(VENV)/.installed-chaos
PROMTOOL := $(BIN)/promtool

.PHONY: run test lint typecheck unit chaos bench bench-engine bench-all demo-model clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

## run: the engine on embedded defaults (starts a broker and Redis if none is reachable) with a demo stream
run: $(STAMP)
	$(BIN)/nudge dev --demo

## test: lint, type-check and the whole test suite (unit + integration on a real broker and Redis)
test: lint typecheck $(PROMTOOL)
	$(BIN)/pytest

# promtool checks the alert rules in the tests. It comes from Debian's prometheus package,
# unpacked rather than installed (installing starts a Prometheus service). Without apt the
# build goes on with a note, and the promtool tests skip.
$(PROMTOOL): | $(STAMP)
	@tmp=$$(mktemp -d) && chmod 755 $$tmp && \
	if (cd $$tmp && apt-get download -q prometheus >/dev/null 2>&1) \
		&& dpkg-deb -x $$tmp/prometheus_*.deb $$tmp/root \
		&& install -m 755 $$tmp/root/usr/bin/promtool $@; then \
		echo "promtool: $$($@ --version 2>&1 | head -n 1)"; \
	else \
		echo "note: could not fetch promtool (apt-get download prometheus); its tests will skip"; \
	fi; \
	rm -rf $$tmp

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -m "not integration"

## chaos: at-least-once under faults (workers killed, paused and rebalanced, Redis crashed, away
## and slow, the broker paused and restarted) with the workload in flight, every send accounted for; CHAOS_USERS=200 for a quick run
chaos: $(CHAOS_STAMP)
	$(BIN)/pytest tests/chaos --chaos -q

# the broker restart scenario keeps the broker's data in an S3 endpoint (moto's server)
$(CHAOS_STAMP): $(STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,chaos]'
	touch $@

## bench: throughput of `nudge worker` against a bare Faust agent on the same broker;
## BENCH_MODE=scale|latency|timers|memory runs another mode, BENCH_ARGS adds options
BENCH_MODE ?= throughput
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/python bench/run.py --mode $(BENCH_MODE) $(BENCH_ARGS)

## bench-engine: the engine's CPU per event, in-process, no broker (BENCH_ARGS: e.g. --redis --profile)
bench-engine: $(STAMP)
	$(BIN)/python bench/engine.py $(BENCH_ARGS)

## bench-all: every benchmark at its default size, one after another (about half an hour on 2 cores)
bench-all: $(STAMP)
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/engine.py --redis
	set -e; for mode in throughput scale latency timers memory; do \
		$(BIN)/python bench/run.py --mode $$mode; done
	$(BIN)/python bench/run.py --mode latency --rate 1000

## demo-model: retrain the shipped demo prediction model (config/models/demo) on a synthetic shop year
DEMO_HISTORY := $(or $(TMPDIR),/tmp)/nudge-demo-history.jsonl.gz
demo-model: $(STAMP)
	$(BIN)/nudge model generate --users 3000 --days 365 --seed 7 \
		--start 2026-01-01T00:00:00Z --out $(DEMO_HISTORY)
	rm -rf config/models/demo.new
	$(BIN)/nudge model train --events $(DEMO_HISTORY) --as-of 2027-01-01T00:00:00Z \
		--classifier logistic_regression --config config --out config/models/demo.new
	rm -f config/models/demo.new/report.html  # report.md and its plots stay
	rm -rf config/models/demo && mv config/models/demo.new config/models/demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
