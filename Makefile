# The two set-up commands of the README: `make demo` and `make test`. Both create .venv first.
VENV := .venv
PYTHON := $(VENV)/bin/python
PYTEST_ARGS ?=
# Test worker processes (pytest-xdist, whole files per worker). The tests marked serial
# (timing-sensitive: read timeouts, a version swap under load) always run after the others in
# one process: with a second worker on 2 cores they failed from contention.
TEST_WORKERS ?= 2

.PHONY: venv system-deps demo test test-slow test-all lock clean

venv:
	@scripts/venv.sh

system-deps:
	@scripts/system-deps.sh

demo: venv
	$(VENV)/bin/recs demo --workdir demo_output

PYTEST := $(PYTHON) -m pytest $(if $(filter-out 1,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile)

# The default run leaves out the tests marked slow (whole pipelines, multi-worker and
# multi-process runs, CLI protocols end to end); CI (.ci/run) runs both.
test: venv system-deps
	$(PYTEST) -m "not slow and not serial" $(PYTEST_ARGS)
	$(PYTHON) -m pytest -m "serial and not slow" $(PYTEST_ARGS)

test-slow: venv system-deps
	$(PYTHON) -m pytest -m slow $(PYTEST_ARGS)

test-all: venv system-deps
	$(PYTEST) -m "not serial" $(PYTEST_ARGS)
	$(PYTHON) -m pytest -m serial $(PYTEST_ARGS)

lock: venv
	$(VENV)/bin/uv pip compile requirements/requirements.in --python-version 3.10 -o requirements/lock.txt

clean:
	rm -rf demo_output .pytest_cache
