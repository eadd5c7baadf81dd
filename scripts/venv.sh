#!/usr/bin/env bash
# Creates or refreshes .venv from the committed lock file; a no-op when it is up to date.
set -euo pipefail
cd "$(dirname "$0")/.."

find_python310() {
  if python3.10 -c 'import sys' >/dev/null 2>&1; then command -v python3.10; return; fi
  local root="${PYENV_ROOT:-$HOME/.pyenv}" candidate
  for candidate in "$root"/versions/3.10*/bin/python3.10 /usr/bin/python3.10 /usr/local/bin/python3.10; do
    if [ -x "$candidate" ]; then echo "$candidate"; return; fi
  done
  echo "error: Python 3.10 not found (tried python3.10, $root/versions/3.10*/bin); install it with pyenv." >&2
  exit 1
}

stamp=.venv/.installed
if [ -f "$stamp" ] && [ "$stamp" -nt requirements/lock.txt ] && [ "$stamp" -nt setup.py ]; then
  exit 0
fi
if [ ! -x .venv/bin/python ]; then
  "$(find_python310)" -m venv .venv
fi
# uv resolves and installs the locked set in seconds; pip inside the venv stays, because TFX
# installs user-module wheels with `python -m pip`.
.venv/bin/python -m pip install --quiet --disable-pip-version-check "uv==0.13.9"
.venv/bin/uv pip install --quiet --python .venv/bin/python -r requirements/lock.txt
.venv/bin/uv pip install --quiet --python .venv/bin/python --no-deps -e .
touch "$stamp"
