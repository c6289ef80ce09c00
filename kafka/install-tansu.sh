#!/usr/bin/env bash
# Installs tansu (a Kafka-protocol broker, Apache-2.0, crates.io) into the project's .tools/tansu
# if it is not there yet, and prints the path of the `tansu` command. `cargo install` builds it
# from source: about 11 minutes on 2 cores, once (CI caches nothing else: a clean clone pays it).
# The features are the durable storage engines (sqlite:// through libsql; dynostore).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/.tools/tansu"
version=0.6.0
if [ ! -x "$dest/bin/tansu" ]; then
  echo "installing tansu $version into $dest (cargo install: about 11 minutes)" >&2
  cargo install -q tansu --version "$version" --features dynostore,libsql --root "$dest" >&2
fi
echo "$dest/bin/tansu"
