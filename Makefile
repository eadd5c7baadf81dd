# The two set-up commands of the README: `make demo` and `make test`. Both create .venv first.
VENV := .venv
PYTHON := $(VENV)/bin/python
PYTEST_ARGS ?=
# Test worker processes (pytest-xdist), each taking whole files so module fixtures build once;
# the suite is mostly single-threaded, so two workers use both cores of the 2-core machines.
TEST_WORKERS ?= 2

.PHONY: venv system-deps demo test test-fast lock clean

venv:
	@scripts/venv.sh

system-deps:
	@scripts/system-deps.sh

demo: venv
	$(VENV)/bin/recs demo --workdir demo_output

test: venv system-deps
	$(PYTHON) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-fast: venv system-deps
	$(PYTHON) -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not slow" $(PYTEST_ARGS)

lock: venv
	$(VENV)/bin/uv pip compile requirements/requirements.in --python-version 3.10 -o requirements/lock.txt

clean:
	rm -rf demo_output .pytest_cache
