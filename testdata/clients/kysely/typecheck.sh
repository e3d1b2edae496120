#!/usr/bin/env bash
# Type-checks run.ts with tsc (a type error in a query is a failure of the
# scenario). tsc takes seconds, so a pass is remembered for the same sources
# in node_modules/.cache; npm ci (make deps-clients) runs this once as the
# postinstall script, so run.sh normally finds the pass already there.
set -euo pipefail
cd "$(dirname "$0")"
out=node_modules/.cache/dsqlgate-client
mkdir -p "$out"
stamp="$out/typecheck-$(cat run.ts ../shared/report.mjs tsconfig.json package-lock.json | sha256sum | cut -c1-16)"
[ -e "$stamp" ] && exit 0
if ! timeout 180 node_modules/.bin/tsc -p tsconfig.json >&2; then
  echo "kysely: tsc found type errors in run.ts" >&2
  exit 1
fi
rm -f "$out"/typecheck-*
touch "$stamp"
