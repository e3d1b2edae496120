#!/usr/bin/env bash
# node-postgres (pg) client scenario; see run.js. Dependencies come from
# `make deps-clients` (npm ci here).
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -d node_modules/pg ] || [ ! -d node_modules/pg-copy-streams ]; then
  echo "node-pg: node_modules is missing: run 'make deps-clients' (or npm ci in $(pwd))" >&2
  exit 2
fi
exec timeout -k 5 90 node run.js
