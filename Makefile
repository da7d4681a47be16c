# The two commands: `make demo` and `make test`. Everything they need is installed here.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BENCH_MODE ?= full

.PHONY: install phoenix system-deps test lint demo bench bench-smoke bench-scale clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Arize Phoenix, the real OpenTelemetry backend the OTLP tests export to, in a virtualenv of its
# own (its pins clash with ours); tests/fixtures/phoenix.py starts it.
PHOENIX_VENV ?= .venv-phoenix
PHOENIX_VERSION ?= 20.26.1
$(PHOENIX_VENV)/.installed:
	$(PYTHON) -m venv $(PHOENIX_VENV)
	$(PHOENIX_VENV)/bin/python -m pip install -q 'arize-phoenix==$(PHOENIX_VERSION)'
	touch $@

phoenix: $(PHOENIX_VENV)/.installed

# What the tests start themselves: PostgreSQL and Redis servers, headless Chromium (Debian).
system-deps:
	@need=""; \
	command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need="$$need postgresql"; \
	command -v redis-server >/dev/null 2>&1 || need="$$need redis-server"; \
	command -v chromium >/dev/null 2>&1 || need="$$need chromium"; \
	if [ -n "$$need" ]; then \
	  echo "installing system packages:$$need"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$need >/dev/null; \
	fi

lint: install
	$(VENV)/bin/ruff check src tests benchmarks

test: install system-deps phoenix lint
	$(VENV)/bin/pytest -q

demo: install
	$(VENV)/bin/e2i-obs demo

bench: install system-deps
	$(PY) -m benchmarks.run --mode $(BENCH_MODE)

bench-smoke:
	$(MAKE) bench BENCH_MODE=smoke

# The figures behind BENCHMARKS.md's "Scale on paper" (PostgreSQL, ~2 min).
bench-scale: install system-deps
	$(PY) -m benchmarks.scale_on_paper 100000 1000000

clean:
	rm -rf $(VENV) $(PHOENIX_VENV) .e2i_obs .pytest_cache .ruff_cache
