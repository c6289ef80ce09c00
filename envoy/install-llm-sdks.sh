#!/usr/bin/env bash
# Installs the official OpenAI and Anthropic Python SDKs (PyPI, pinned) into .tools/llm-venv if
# they are not there yet, and prints the path of that venv's python. Nothing system-wide.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.tools/llm-venv"
want="openai==3.57.0 anthropic==2.14.0"
if ! "$venv/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(0 if (m.version("openai"), m.version("anthropic")) == ("3.57.0", "2.14.0") else 1)' 2>/dev/null; then
  echo "installing $want into $venv" >&2
  python3 -m venv "$venv" >&2
  # shellcheck disable=SC2086
  "$venv/bin/pip" install -q --disable-pip-version-check $want >&2
fi
echo "$venv/bin/python"
