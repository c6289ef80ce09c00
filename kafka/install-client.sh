#!/usr/bin/env bash
# Installs kafka-python and the lz4 codec it reads our batches with (pinned; pure Python, a Kafka client independent of librdkafka, with
# the Java client's murmur2 partitioner) into the project's .tools/kafka-venv if it is not there
# yet, and prints the venv's python. Nothing is installed system-wide.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.tools/kafka-venv"
version=3.0.12
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import kafka, lz4, sys; sys.exit(kafka.__version__ != '$version')" 2>/dev/null; then
  echo "installing kafka-python==$version into $venv" >&2
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check "kafka-python==$version" "lz4==4.4.5" >&2
fi
echo "$venv/bin/python"
