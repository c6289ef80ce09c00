#!/usr/bin/env bash
# What `make e2e-receivers` needs, installed when missing:
#   Debian packages clickhouse-server (18.16 in Debian 12) and prometheus (2.42, with promtool),
#     system-wide through apt-get (root);
#   the CloudEvents SDK (PyPI cloudevents, pinned) and PyYAML in .tools/receivers-venv.
# Prints the venv's python.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
missing=()
command -v clickhouse-server >/dev/null || missing+=(clickhouse-server)
command -v prometheus >/dev/null && command -v promtool >/dev/null || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (apt-get)" >&2
  apt-get update -qq >&2
  # The packages' services are not started: the tests run their own instances.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
venv="$root/.tools/receivers-venv"
want="cloudevents==2.2.0 PyYAML==6.0.2"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.installed" 2>/dev/null)" != "$want" ]; then
  echo "installing $want into $venv" >&2
  python3 -m venv "$venv" >&2
  # shellcheck disable=SC2086
  "$venv/bin/pip" install -q --disable-pip-version-check $want >&2
  echo "$want" > "$venv/.installed"
fi
echo "$venv/bin/python"
