#!/usr/bin/env bash
# Installs the official OpenAI, Anthropic and Google Gen AI Python SDKs and grpcio (the fake
# rate limit service of make e2e-llm) from PyPI, pinned, into .tools/llm-venv if they are not
# there yet, and prints the path of that venv's python. Nothing system-wide.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.tools/llm-venv"
pins="openai==3.57.0 anthropic==2.14.0 google-genai==3.6.1 grpcio==1.85.4"
check="import importlib.metadata as m, sys
want = dict(p.split('==') for p in sys.argv[1:])
sys.exit(0 if all(m.version(n) == v for n, v in want.items()) else 1)"
# shellcheck disable=SC2086
if ! "$venv/bin/python" -c "$check" $pins 2>/dev/null; then
  echo "installing $pins into $venv" >&2
  python3 -m venv "$venv" >&2
  # shellcheck disable=SC2086
  "$venv/bin/pip" install -q --disable-pip-version-check $pins >&2
fi
echo "$venv/bin/python"
