#!/usr/bin/env bash
# Installs tansu (a Kafka-protocol broker, Apache-2.0, crates.io) into the project's .tools/tansu
# if it is not there yet, and prints the path of the `tansu` command. `cargo install` builds it
# from source, once: a clean clone pays it (.ci/run starts it in the background at the start).
# Only the sqlite:// storage engine (the `libsql` feature) is built, and unoptimised without
# debug info (`--debug`): about 9 CPU-minutes instead of about 20 for the optimised build, and the
# suite's few thousand records do not notice (kafka e2e: 16 s either way).
# A lock makes a second caller wait for the first one's build instead of starting another.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/.tools/tansu"
version=0.6.0
mkdir -p "$root/.tools"
exec 9>"$root/.tools/tansu.lock"
flock 9
if [ ! -x "$dest/bin/tansu" ]; then
  echo "installing tansu $version into $dest (cargo install, unoptimised: about 5 minutes on 2 idle cores)" >&2
  CARGO_PROFILE_DEV_DEBUG=0 cargo install -q --debug tansu --version "$version" --features libsql \
    --root "$dest" >&2
fi
echo "$dest/bin/tansu"
