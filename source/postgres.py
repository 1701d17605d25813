"""What every PostgreSQL database tagflow connects to shares, the source and tagflow's own state
database alike: the conninfo of a session (the URL parsed, tagflow's options and keepalives
added), why a connect failed in words free of hosts and users, and the connect-with-retries
loop. Each database names itself in the messages and raises its own error types."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from psycopg import conninfo as pg_conninfo

from tagflow.errors import TagflowError

log = logging.getLogger(__name__)
T = TypeVar("T")

# SQLSTATE classes that no retry will fix: bad credentials, unknown database.
_PERMANENT_SQLSTATES = {"28000", "28P01", "3D000"}

# A TCP peer that vanishes (host down, network partition) is noticed within about a minute
# instead of the kernel's two hours; a URL's own settings win, Unix sockets ignore them.
_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 60_000,
}


def url_params(url: str, *, unparsable: TagflowError) -> dict[str, Any]:
    """The parameters of `url` (a libpq URI or conninfo); `unparsable` is raised when it cannot
    be parsed (the driver's message would quote the URL, password included)."""
    try:
        return pg_conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise unparsable from None


def session_conninfo(
    params: dict[str, Any], *, options: str, connect_timeout_s: int, application_name: str
) -> str:
    """The conninfo of `params` with tagflow's session `options` (the URL's own kept, ours
    appended so they win), connect timeout, keepalives, and `application_name` unless the
    URL names one."""
    params = dict(params)
    params["options"] = " ".join(p for p in (str(params.get("options") or ""), options) if p)
    params["connect_timeout"] = connect_timeout_s
    params["application_name"] = params.get("application_name") or application_name
    for name, value in _KEEPALIVES.items():
        params.setdefault(name, value)
    return pg_conninfo.make_conninfo("", **params)


def connect_failure(exc: Exception, database: str, *, tells_refused: bool = False) -> str:
    """Why a connection to `database` ("the source database") failed, without the driver's
    text (it names hosts, socket paths and users). With `tells_refused`, a server that is not
    listening is told apart from one that cannot be reached."""
    text = str(exc).lower()
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate in {"28000", "28P01"} or "authentication failed" in text:
        return f"{database} rejected the credentials"
    if sqlstate == "3D000" or ("database" in text and "does not exist" in text):
        return f"{database} named in the URL does not exist"
    if "timeout" in text or "timed out" in text:
        return f"connecting to {database} timed out"
    if tells_refused and (
        "refused" in text or "no such file" in text or "could not translate host" in text
    ):
        return f"no {database.removeprefix('the ')} server is listening at the configured address"
    return f"{database} could not be reached"


def _is_permanent(exc: Exception, database: str) -> bool:
    # A failed connect often carries no SQLSTATE: judged by the reason read from its text too.
    return getattr(exc, "sqlstate", None) in _PERMANENT_SQLSTATES or connect_failure(
        exc, database
    ) in {
        f"{database} rejected the credentials",
        f"{database} named in the URL does not exist",
    }


def connect_with_retries(
    open_once: Callable[[], T],
    *,
    database: str,
    give_up: Callable[[str, int, bool], TagflowError],
    attempts: int,
    backoff_s: float,
    max_backoff_s: float = float("inf"),
    budget_s: float = float("inf"),
    transient: tuple[type[Exception], ...] = (psycopg.OperationalError,),
    tells_refused: bool = False,
) -> T:
    """Call `open_once` until it connects, sleeping backoff_s, 2·backoff_s, … (capped at
    `max_backoff_s`) between attempts, starting none that would begin after `budget_s`.
    Failures of the `transient` types that no retry can fix end it at once. It ends with
    `give_up(reason, attempts made, permanent)`, raised without the driver's error, whose
    message and chained traceback name hosts and paths."""
    attempts = max(1, attempts)
    began = time.monotonic()
    for attempt in range(attempts):
        try:
            return open_once()
        except transient as exc:
            reason = connect_failure(exc, database, tells_refused=tells_refused)
            delay = min(backoff_s * 2**attempt, max_backoff_s)
            permanent = _is_permanent(exc, database)
            out_of_time = time.monotonic() - began + delay > budget_s
            if permanent or out_of_time or attempt == attempts - 1:
                raise give_up(reason, attempt + 1, permanent) from None
            log.warning("connecting to %s failed (%s); retrying in %.1f s", database, reason, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")
