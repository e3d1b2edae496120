#!/usr/bin/env bash
# Kysely over pg client scenario; see run.ts. Dependencies come from
# `make deps-clients` (npm ci here). The scenario is type-checked (tsc) and
# bundled (esbuild, into node_modules/.cache) before it runs.
set -euo pipefail
cd "$(dirname "$0")"
for m in kysely pg typescript esbuild; do
  if [ ! -d "node_modules/$m" ]; then
    echo "kysely: node_modules is missing ($m): run 'make deps-clients' (or npm ci in $(pwd))" >&2
    exit 2
  fi
done
out=node_modules/.cache/dsqlgate-client
mkdir -p "$out"
./typecheck.sh
# One bundle per run, so that runs in both pool modes can overlap.
bundle="$out/run-$$.mjs"
trap 'rm -f "$bundle"' EXIT
timeout 30 node_modules/.bin/esbuild run.ts --bundle --platform=node --format=esm --target=node20 \
  --packages=external --log-level=warning --outfile="$bundle" >&2
timeout -k 5 90 node "$bundle"
