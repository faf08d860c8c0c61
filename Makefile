# lsnwal — the commands. Every target creates .venv on first use, so a fresh
# machine with only python3 and make can run any of them.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: run test lint stress bench docs clean

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -e .
	touch $@

$(VENV)/.test: $(VENV)/.base
	$(PIP) install -e '.[test,cli]'
	touch $@

$(VENV)/.lint: $(VENV)/.test
	$(PIP) install -e '.[lint]'
	touch $@

$(VENV)/.bench: $(VENV)/.base
	$(PIP) install -e '.[bench,cli]'
	touch $@

$(VENV)/.docs: $(VENV)/.base
	$(PIP) install -e '.[docs]'
	touch $@

run: $(VENV)/.base
	$(PY) -m lsnwal demo

test: $(VENV)/.test
	$(PY) -m pytest -q

lint: $(VENV)/.lint
	$(VENV)/bin/ruff check lsnwal tests stress
	$(VENV)/bin/mypy

stress: $(VENV)/.test
	LSNWAL_STRESS=1 $(PY) -m pytest -q tests/test_crash_states.py tests/test_packaging.py \
		tests/test_recovery_damage.py tests/test_recovery_watermark.py
	$(PY) stress/crash_loop.py --cycles 500
	$(PY) stress/soak.py --seconds 60

bench: $(VENV)/.bench
	$(PY) stress/bench_append.py
	$(PY) stress/bench_commit.py
	$(PY) stress/bench_replay.py

docs: $(VENV)/.docs
	$(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) site build *.egg-info
