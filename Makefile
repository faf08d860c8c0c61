# lsnwal — the commands. Every target creates .venv on first use, so a fresh
# machine with only python3 and make can run any of them.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: run test lint stress bench bench-docs bench-quick docs clean

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

$(VENV)/.bench: $(VENV)/.test
	$(PIP) install -e '.[bench,cli]'
	touch $@

$(VENV)/.docs: $(VENV)/.base
	$(PIP) install -e '.[docs]'
	touch $@

run: $(VENV)/.base
	$(PY) -m lsnwal demo

test: $(VENV)/.test
	$(PY) -m pytest -q -n 2

lint: $(VENV)/.lint
	$(VENV)/bin/ruff check lsnwal tests stress
	$(VENV)/bin/mypy

stress: $(VENV)/.test
	LSNWAL_STRESS=1 $(PY) -m pytest -q tests/test_crash_states.py tests/test_packaging.py \
		tests/test_store.py tests/test_store_read.py tests/test_ship.py \
		tests/test_commit_path.py tests/test_rename_order.py tests/test_close_waiters.py \
		tests/test_append_kill9.py tests/test_commit_faults.py \
		tests/test_reader.py tests/test_reader_moves.py tests/test_reader_live.py tests/test_block_crc.py \
		tests/test_recovery_damage.py tests/test_recovery_watermark.py
	$(PY) stress/crash_loop.py --cycles 500
	$(PY) stress/soak.py --seconds 60

# Reports (markdown + JSON) and plots go to $(BENCH_OUT); `make bench-docs` writes them where
# docs/benchmarks.md takes its figures from and rewrites the page from its template
# (stress/benchmarks_page.md.in: read its prose again after a new run);
# `make bench-quick` is a seconds-long smoke run.
BENCH_OUT ?= .bench-tmp/results
BENCH_IMG ?= $(BENCH_OUT)
bench: $(VENV)/.bench
	$(PY) stress/bench_append.py --out $(BENCH_OUT)
	$(PY) stress/bench_commit.py --out $(BENCH_OUT) --plot $(BENCH_IMG)/commits.png
	$(PY) stress/bench_replay.py --out $(BENCH_OUT) --plot $(BENCH_IMG)/scans.png
	$(PY) stress/reader_latency.py --out $(BENCH_OUT)
	$(PY) stress/bench_ship.py

bench-docs:
	$(MAKE) bench BENCH_OUT=docs/results BENCH_IMG=docs/img
	$(PY) stress/bench_page.py

bench-quick: $(VENV)/.bench
	$(PY) stress/bench_append.py --quick
	$(PY) stress/bench_commit.py --quick
	$(PY) stress/bench_replay.py --quick
	$(PY) stress/reader_latency.py --commits 50

docs: $(VENV)/.docs
	$(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) site build *.egg-info
