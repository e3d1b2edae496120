"""The client scenario for SQLAlchemy (internal/clients/doc.go has the
protocol and the steps).

SQLAlchemy 1.4 (Debian's) with psycopg2, through one ORM Session on an
engine whose pool holds exactly one connection: that DBAPI connection is the
session, and the scenario checks that it stays the same object throughout.
psycopg2 runs every statement in a transaction (SQLAlchemy's autobegin), so
each step ends with commit() or rollback(), as applications do, and the
session is idle between steps.
"""

import os
import sys
import threading
import time

import psycopg2
import sqlalchemy as sa
from sqlalchemy import Column, Integer, Text, insert, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, declarative_base
from sqlalchemy.pool import NullPool

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "shared"))
import scenario_steps  # noqa: E402
from scenario_steps import Skip, emit, kill_all_upstreams, want  # noqa: E402

SCHEMA = os.environ["DSQLGATE_TEST_SCHEMA"]
TZ = "America/New_York"

URL = sa.engine.URL.create(
    "postgresql+psycopg2",
    username=os.environ["DSQLGATE_TEST_USER"],
    password=os.environ["DSQLGATE_TEST_PASSWORD"],
    host=os.environ["DSQLGATE_TEST_HOST"],
    port=int(os.environ["DSQLGATE_TEST_PORT"]),
    database=os.environ["DSQLGATE_TEST_DATABASE"],
    query={"sslmode": "verify-full", "sslrootcert": os.environ["DSQLGATE_TEST_CA_FILE"]},
)


def _rollback():
    if session is not None:
        session.rollback()


def step(name):
    """Runs the decorated function as step name and reports it; the session
    is rolled back after a failure so that the next step starts clean."""
    return scenario_steps.step(name, after_failure=_rollback)


def expect_sqlstate(what, code, fn):
    try:
        fn()
    except DBAPIError as e:
        got = getattr(e.orig, "pgcode", None)
        if got != code:
            raise AssertionError(f"{what}: SQLSTATE {got}: {e.orig}, want {code}") from e
        return e
    raise AssertionError(f"{what}: succeeded, want SQLSTATE {code}")


Base = declarative_base()


class Item(Base):
    __tablename__ = "items"
    __table_args__ = {"schema": SCHEMA}
    id = Column(Integer, primary_key=True, autoincrement=False)
    name = Column(Text, nullable=False)
    qty = Column(Integer, nullable=False)


class Bulk(Base):
    __tablename__ = "bulk"
    __table_args__ = {"schema": SCHEMA}
    id = Column(Integer, primary_key=True, autoincrement=False)
    payload = Column(Text, nullable=False)


emit(version=f"SQLAlchemy {sa.__version__}, psycopg2 {psycopg2.__version__.split()[0]}")

engine = sa.create_engine(URL, future=True, pool_size=1, max_overflow=0, pool_timeout=10)
session = None
dbapi_conn = None  # the session's one DBAPI connection


def the_connection():
    """The DBAPI connection the session uses now."""
    return session.connection().connection.dbapi_connection


@step("connect_tls")
def connect_tls():
    global session, dbapi_conn
    session = Session(engine, future=True)
    dbapi_conn = the_connection()
    want("TLS in use", dbapi_conn.info.ssl_in_use, True)
    session.commit()
    # One table per transaction: DSQL allows one DDL statement in each
    # (metadata.create_all would put both in one).
    Item.__table__.create(engine)
    Bulk.__table__.create(engine)
    return "verify-full, ssl_in_use"


@step("param_query")
def param_query():
    row = session.execute(
        text("select CAST(:a AS int8) + CAST(:b AS int8), upper(CAST(:w AS text)) || ' ' || :u, CAST(:f AS bool), CAST(:n AS text)"),
        {"a": 40, "b": 2, "w": "dsql", "u": "ünïcode", "f": True, "n": None},
    ).one()
    want("row", tuple(row), (42, "DSQL ünïcode", True, None))
    items = session.scalars(select(Item).where(Item.id > 0, Item.name != "x")).all()
    want("items", items, [])
    session.commit()
    return "text() with 6 parameters, ORM select with 2 (psycopg2 interpolates them client-side)"


DOUBLE = text("select CAST(:i AS int) * 2")


@step("prepared_reuse")
def prepared_reuse():
    for i in range(50):
        want(f"execution {i}", session.execute(DOUBLE, {"i": i}).scalar_one(), 2 * i)
    session.commit()
    raise Skip(
        "psycopg2, SQLAlchemy 1.4's driver here, has no server-side prepared statements "
        "(50 executions through SQLAlchemy's compiled cache pass)"
    )


@step("tx_commit")
def tx_commit():
    session.add_all([Item(id=i, name=f"item {i}", qty=i * 10) for i in range(1, 4)])
    session.commit()
    want("rows", tuple(session.execute(text(f"select count(*), sum(qty) from {SCHEMA}.items")).one()), (3, 60))
    session.commit()
    other = sa.create_engine(URL, future=True, poolclass=NullPool)
    with other.connect() as c:
        want("rows seen by another session", c.execute(select(sa.func.count()).select_from(Item)).scalar_one(), 3)
    other.dispose()
    return "Session.add_all + commit, seen by another session"


@step("tx_rollback")
def tx_rollback():
    session.add(Item(id=100, name="rolled back", qty=1))
    session.flush()
    inside = session.execute(select(sa.func.count()).select_from(Item)).scalar_one()
    session.rollback()
    want("rows inside", inside, 4)
    want("rows after", session.execute(select(sa.func.count()).select_from(Item)).scalar_one(), 3)
    session.commit()
    return "flush, then Session.rollback"


@step("error_recovery")
def error_recovery():
    def duplicate():
        session.add(Item(id=1, name="duplicate", qty=0))
        session.flush()

    expect_sqlstate("duplicate key", "23505", duplicate)
    session.rollback()
    want("after the error", session.execute(text("select 'alive'")).scalar_one(), "alive")
    session.commit()
    expect_sqlstate("division by zero", "22012", lambda: session.execute(text("select 1/0")))
    expect_sqlstate("in the failed transaction", "25P02", lambda: session.execute(text("select 1")))
    session.rollback()
    want("rows", session.execute(select(sa.func.count()).select_from(Item)).scalar_one(), 3)
    session.commit()
    return "23505, then 22012 and 25P02 in a transaction"


def check_settings():
    want("same DBAPI connection", (the_connection() is dbapi_conn, dbapi_conn.closed), (True, 0))
    want("rows in items (unqualified)", session.execute(text("select count(*) from items")).scalar_one(), 3)
    row = session.execute(text("select current_setting('search_path'), current_setting('TimeZone')")).one()
    want("settings", tuple(row), (f"{SCHEMA}, public", TZ))
    stamp = session.execute(text("select CAST(CAST('2024-01-15 12:00:00+00' AS timestamptz) AS text)")).scalar_one()
    want("timestamptz text", stamp, "2024-01-15 07:00:00-05")
    want("SHOW TimeZone", session.execute(text("show TimeZone")).scalar_one(), TZ)
    session.commit()


@step("set_observed")
def set_observed():
    # Inside SQLAlchemy's transaction: the SETs count once it commits.
    session.execute(text(f"SET search_path TO {SCHEMA}, public"))
    session.execute(text(f"SET TimeZone TO '{TZ}'"))
    session.commit()
    check_settings()
    return "search_path, TimeZone (SET in a committed transaction)"


@step("bulk_insert")
def bulk_insert():
    session.execute(insert(Bulk), [{"id": i, "payload": f"payload {i}"} for i in range(1, 1001)])
    session.commit()
    row = session.execute(text("select count(*), sum(id) from bulk")).one()
    want("rows", tuple(row), (1000, 500500))
    session.commit()
    return "insert() with 1000 parameter sets (executemany; SQLAlchemy has no COPY)"


@step("cancel")
def cancel():
    raw = the_connection()
    timer = threading.Timer(0.5, raw.cancel)
    timer.start()
    start = time.monotonic()
    try:
        expect_sqlstate("pg_sleep(30)", "57014", lambda: session.execute(text("select pg_sleep(30)")))
    finally:
        timer.cancel()
    took = time.monotonic() - start
    session.rollback()
    if took > 10:
        raise AssertionError(f"the cancel took {took:.1f} s")
    check_settings()
    return f"connection.cancel(): 57014 after {took * 1000:.0f} ms"


@step("survive_replacement")
def survive_replacement():
    want("before the kill", session.get(Item, 2).name, "item 2")
    session.commit()
    kill_all_upstreams()
    check_settings()
    want("after the kill", session.get(Item, 3).name, "item 3")
    session.commit()
    return "search_path, TimeZone, the same DBAPI connection"


if session is not None:
    session.close()
engine.dispose()
