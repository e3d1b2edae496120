#!/usr/bin/env bash
# postgres.js client scenario; see run.js. Dependencies come from
# `make deps-clients` (npm ci here).
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -d node_modules/postgres ]; then
  echo "postgres-js: node_modules is missing: run 'make deps-clients' (or npm ci in $(pwd))" >&2
  exit 2
fi
exec timeout -k 5 90 node run.js
