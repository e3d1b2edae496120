"""The client scenario for psycopg 3 (internal/clients/doc.go has the
protocol and the steps).

The session is one connection in autocommit mode, with explicit
transactions (conn.transaction() and BEGIN): psycopg's default, an implicit
transaction around every statement, would keep the session inside a
transaction between steps.
"""

import os
import sys
import threading
import time

import psycopg
from psycopg import errors

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "shared"))
from scenario_steps import Skip, emit, kill_all_upstreams, step, want  # noqa: E402

URL = os.environ["DSQLGATE_TEST_URL"]
SCHEMA = os.environ["DSQLGATE_TEST_SCHEMA"]
TZ = "America/New_York"


def expect_error(what, cls, fn):
    try:
        fn()
    except cls as e:
        return e
    except psycopg.Error as e:
        raise AssertionError(f"{what}: {type(e).__name__} ({e.sqlstate}): {e}, want {cls.__name__}") from e
    raise AssertionError(f"{what}: succeeded, want {cls.__name__}")


libpq = psycopg.pq.version()
emit(version=f"psycopg {psycopg.__version__} (libpq {libpq // 10000}.{libpq % 100})")

conn = None
DOUBLE = "select %s::int * 2, %s::text"


@step("connect_tls")
def connect_tls():
    global conn
    conn = psycopg.connect(URL, autocommit=True)
    want("TLS in use", conn.pgconn.ssl_in_use, True)
    conn.execute(f"create table {SCHEMA}.items (id int primary key, name text not null, qty int not null)")
    conn.execute(f"create table {SCHEMA}.bulk (id int primary key, payload text not null)")
    return "verify-full, PQsslInUse"


@step("param_query")
def param_query():
    row = conn.execute(
        "select %s::int8 + %s::int8, upper(%s::text) || ' ' || %s::text, %s::bool, %s::text",
        (40, 2, "dsql", "ünïcode", True, None),
    ).fetchone()
    want("row", row, (42, "DSQL ünïcode", True, None))
    return "6 parameters incl. NULL, bound server-side"


@step("prepared_reuse")
def prepared_reuse():
    for i in range(50):
        row = conn.execute(DOUBLE, (i, str(i)), prepare=True).fetchone()
        want(f"execution {i}", row, (2 * i, str(i)))
    # And psycopg's automatic preparation, after prepare_threshold uses.
    for i in range(2 * (conn.prepare_threshold or 5)):
        want(f"auto {i}", conn.execute("select %s::int + 1", (i,)).fetchone(), (i + 1,))
    # psycopg keeps at most prepared_max statements (100 by default) and,
    # with libpq before 17, drops the oldest with a SQL "DEALLOCATE name".
    # A cache of 4 and 10 distinct statements make it rotate.
    default_max = conn.prepared_max
    conn.prepared_max = 4
    try:
        for i in range(10):
            row = conn.execute(f"select %s::int + {i}", (1,), prepare=True).fetchone()
            want(f"rotating statement {i}", row, (1 + i,))
    finally:
        conn.prepared_max = default_max
    want("after the rotation", conn.execute(DOUBLE, (21, "x"), prepare=True).fetchone(), (42, "x"))
    return "prepare=True x50, automatic preparation, cache rotation (DEALLOCATE name)"


@step("tx_commit")
def tx_commit():
    with conn.transaction():
        for i in range(1, 4):
            conn.execute(f"insert into {SCHEMA}.items (id, name, qty) values (%s, %s, %s)", (i, f"item {i}", i * 10))
    want("rows", conn.execute(f"select count(*), sum(qty) from {SCHEMA}.items").fetchone(), (3, 60))
    with psycopg.connect(URL, autocommit=True) as other:
        want("rows seen by another session", other.execute(f"select count(*) from {SCHEMA}.items").fetchone(), (3,))
    return "conn.transaction(), 3 rows, seen by another session"


@step("tx_rollback")
def tx_rollback():
    inside = None
    with conn.transaction():
        conn.execute(f"insert into {SCHEMA}.items values (%s, %s, %s)", (100, "rolled back", 1))
        inside = conn.execute(f"select count(*) from {SCHEMA}.items").fetchone()
        raise psycopg.Rollback()
    want("rows inside", inside, (4,))
    want("rows after", conn.execute(f"select count(*) from {SCHEMA}.items").fetchone(), (3,))
    return "psycopg.Rollback"


@step("error_recovery")
def error_recovery():
    e = expect_error(
        "duplicate key",
        errors.UniqueViolation,
        lambda: conn.execute(f"insert into {SCHEMA}.items values (%s, %s, %s)", (1, "duplicate", 0)),
    )
    want("SQLSTATE", e.sqlstate, "23505")
    want("after the error", conn.execute("select 'alive'").fetchone(), ("alive",))
    conn.execute("begin")
    expect_error("division by zero", errors.DivisionByZero, lambda: conn.execute("select 1/0"))
    expect_error("in the failed transaction", errors.InFailedSqlTransaction, lambda: conn.execute("select 1"))
    conn.execute("rollback")
    want("rows", conn.execute(f"select count(*) from {SCHEMA}.items").fetchone(), (3,))
    return "23505, then 22012 and 25P02 in a transaction"


def check_settings():
    want("rows in items (unqualified)", conn.execute("select count(*) from items").fetchone(), (3,))
    want(
        "settings",
        conn.execute("select current_setting('search_path'), current_setting('TimeZone')").fetchone(),
        (f"{SCHEMA}, public", TZ),
    )
    want(
        "timestamptz text",
        conn.execute("select '2024-01-15 12:00:00+00'::timestamptz::text").fetchone(),
        ("2024-01-15 07:00:00-05",),
    )
    want("SHOW TimeZone", conn.execute("show TimeZone").fetchone(), (TZ,))
    want("ParameterStatus TimeZone", conn.info.parameter_status("TimeZone"), TZ)


@step("set_observed")
def set_observed():
    conn.execute(f"SET search_path TO {SCHEMA}, public")
    conn.execute(f"SET TimeZone TO '{TZ}'")
    check_settings()
    return "search_path, TimeZone (ParameterStatus too)"


@step("bulk_insert")
def bulk_insert():
    with conn.cursor() as cur:
        with cur.copy("COPY bulk (id, payload) FROM STDIN") as copy:
            for i in range(1, 1001):
                copy.write_row((i, f"payload {i}"))
    want("rows", conn.execute("select count(*), sum(id) from bulk").fetchone(), (1000, 500500))
    return "cursor.copy (COPY FROM STDIN)"


@step("cancel")
def cancel():
    timer = threading.Timer(0.5, conn.cancel)
    timer.start()
    start = time.monotonic()
    try:
        expect_error("pg_sleep(30)", errors.QueryCanceled, lambda: conn.execute("select pg_sleep(30)"))
    finally:
        timer.cancel()
    took = time.monotonic() - start
    if took > 10:
        raise AssertionError(f"the cancel took {took:.1f} s")
    check_settings()
    return f"conn.cancel(): 57014 after {took * 1000:.0f} ms"


@step("survive_replacement")
def survive_replacement():
    pid = conn.info.backend_pid  # the gateway's key, not an upstream's
    by_id = "select name from items where id = %s"
    want("before the kill", conn.execute(by_id, (2,), prepare=True).fetchone(), ("item 2",))
    kill_all_upstreams()
    check_settings()
    want("prepared after the kill", conn.execute(by_id, (3,), prepare=True).fetchone(), ("item 3",))
    want("prepared in prepared_reuse", conn.execute(DOUBLE, (21, "x"), prepare=True).fetchone(), (42, "x"))
    want("same client connection", (conn.closed, conn.info.backend_pid), (False, pid))
    return "search_path, TimeZone, 2 prepared statements"


if conn is not None:
    conn.close()
