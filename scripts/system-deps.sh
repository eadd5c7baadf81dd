#!/usr/bin/env bash
# System packages the tests start for real: Debian's redis-server (the event queue and the
# shared profile store). A no-op when already installed.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q redis-server >/dev/null 2>&1 || {
  $SUDO apt-get update -q >/dev/null
  $SUDO apt-get install -y -q redis-server >/dev/null
}
command -v redis-server
