# The two set-up commands of the README: `make demo` and `make test`. Both create .venv first.
VENV := .venv
PYTHON := $(VENV)/bin/python
PYTEST_ARGS ?=
# Test worker processes (pytest-xdist, whole files per worker). One by default: with two on
# 2 cores, timing-sensitive serving tests (a version swap under load) failed from contention.
TEST_WORKERS ?= 1

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
	$(PYTEST) -m "not slow" $(PYTEST_ARGS)

test-slow: venv system-deps
	$(PYTEST) -m slow $(PYTEST_ARGS)

test-all: venv system-deps
	$(PYTEST) $(PYTEST_ARGS)

lock: venv
	$(VENV)/bin/uv pip compile requirements/requirements.in --python-version 3.10 -o requirements/lock.txt

clean:
	rm -rf demo_output .pytest_cache
