#!/usr/bin/env bash
# The client scenario for psycopg 3 (Debian's python3-psycopg, so Debian's
# Python: /usr/bin/python3, whatever python3 comes first in PATH).
set -euo pipefail
cd "$(dirname "$0")"
exec /usr/bin/python3 -u scenario.py
