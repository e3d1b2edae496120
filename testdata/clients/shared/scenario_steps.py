"""The shape of a Python client run (psycopg, sqlalchemy), as
internal/clients/doc.go defines it: one JSON line per step on stdout, each
step bounded in time, and the emulator's control API to cut upstreams.
"""

import json
import os
import signal
import urllib.request

CONTROL_URL = os.environ["DSQLGATE_TEST_CONTROL_URL"]
STEP_SECONDS = 30


def emit(**line):
    print(json.dumps(line), flush=True)


class Skip(Exception):
    """A step the client cannot do; the message says why."""


class StepTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise StepTimeout(f"the step took more than {STEP_SECONDS} s")


def step(name, after_failure=None):
    """Runs the decorated function as step name and reports it;
    after_failure, if given, runs after a failed step (to leave the session
    clean for the next one)."""

    def run(fn):
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.alarm(STEP_SECONDS)
        try:
            detail = fn() or ""
            emit(step=name, ok=True, detail=detail)
        except Skip as e:
            emit(step=name, ok=True, detail=f"skipped: {e}")
        except BaseException as e:  # noqa: BLE001 - every failure is a row
            emit(step=name, ok=False, detail=f"{type(e).__name__}: {e}".strip())
            if after_failure is not None:
                try:
                    after_failure()
                except Exception:  # noqa: BLE001
                    pass
        finally:
            signal.alarm(0)
        return fn

    return run


def want(what, got, expected):
    if got != expected:
        raise AssertionError(f"{what}: got {got!r}, want {expected!r}")


def kill_all_upstreams():
    """Asks the emulator to cut every upstream connection it holds."""
    req = urllib.request.Request(CONTROL_URL + "/kill?all=1", data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        killed = json.load(resp)["killed"]
    if killed < 1:
        raise AssertionError("the emulator had no upstream to cut")
