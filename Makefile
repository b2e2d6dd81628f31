# xlt_plugin: two commands for a newcomer (`make demo`, `make test`), plus the full study.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The stamp depends on the install inputs, so editing them re-runs setup.
STAMP := $(VENV)/.xlt-installed

.PHONY: setup demo test test-fast study lint clean

setup: $(STAMP)

# Extras: dev (tests, linters), lm (KenLM), synth (the embedded corpus, with zh),
# study (its report); a user with their own Common Voice needs none but zh for
# Cantonese transfer (setup.cfg says what each brings).
$(STAMP): setup.cfg setup.py pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-c constraints.txt -e '.[dev,lm,synth,study]'
	touch $(STAMP)

# The main job on the embedded corpus (2 CPU cores, within 30 minutes).
demo: setup
	$(BIN)/xlt study --profile demo --out results/study

# The full study: every table with seeds, ~16 h on 2 CPU cores; resumable.
# `make study SEEDS=1` is the one-seed cut (~6 h): directions, no verdicts.
# `make study FROM=packs/study-full` first puts a pack's finished runs in place
# (`xlt unpack`), so the study reuses them and trains the rest.
SEEDS ?= 3
FROM ?=
study: setup
	$(if $(FROM),$(BIN)/xlt unpack $(FROM) --out results/study-full)
	$(BIN)/xlt study --profile full --seeds $(SEEDS) \
		--out results/study-full

# Lint first (seconds), then the suite; pytest's exit 5 (no tests) fails like any.
test: setup lint
	$(BIN)/python -m pytest -q

# Unit tests and doctests only (no training runs): a couple of minutes.
test-fast: setup lint
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check xlt_plugin tests recipes benchmarks setup.py
	$(BIN)/ruff format --check xlt_plugin tests recipes benchmarks setup.py
	$(BIN)/yamllint -s recipes
	$(BIN)/lint-imports setup.cfg --no-cache --no-logo

clean:
	rm -rf results out .pytest_cache
