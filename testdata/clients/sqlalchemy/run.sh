#!/usr/bin/env bash
# The client scenario for SQLAlchemy (Debian's python3-sqlalchemy 1.4 with
# python3-psycopg2, its PostgreSQL driver there; SQLAlchemy 1.4 has no
# psycopg 3 dialect). Debian's Python: /usr/bin/python3.
set -euo pipefail
cd "$(dirname "$0")"
exec /usr/bin/python3 -u scenario.py
