#!/usr/bin/env bash
# A Cloudflare Worker (src/worker.js: pg over the Workers socket API) run in
# workerd and driven over HTTP by driver.mjs; see docs in those files.
# Dependencies come from `make deps-clients` (npm ci here).
set -euo pipefail
cd "$(dirname "$0")"
for m in pg pg-cloudflare workerd esbuild; do
  if [ ! -d "node_modules/$m" ]; then
    echo "worker: node_modules is missing ($m): run 'make deps-clients' (or npm ci in $(pwd))" >&2
    exit 2
  fi
done

run=$(mktemp -d "${TMPDIR:-/tmp}/dsqlgate-worker.XXXXXX")
driver=
cleanup() {
  # The driver stops workerd itself; this is for a driver that was killed.
  if [ -n "$driver" ]; then kill -TERM "$driver" 2>/dev/null || true; wait "$driver" 2>/dev/null || true; fi
  if [ -f "$run/workerd.pid" ]; then
    pid=$(cat "$run/workerd.pid")
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = workerd ]; then kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# The bundle: Node built-ins stay external and are
# served by src/shim.js's global require; cloudflare:sockets is the runtime's.
externals=()
for m in events crypto dns fs net path stream string_decoder tls util util/types; do
  externals+=("--external:$m")
done
timeout 60 node_modules/.bin/esbuild src/worker.js --bundle --format=esm --platform=neutral \
  --main-fields=module,main --conditions=workerd,worker,browser \
  --external:cloudflare:sockets '--external:node:*' "${externals[@]}" \
  --log-level=warning --outfile="$run/worker.js" >&2

# In the background so that a TERM reaches the trap at once.
timeout -k 5 90 node driver.mjs "$run" &
driver=$!
rc=0
wait "$driver" || rc=$?
driver=
exit "$rc"
