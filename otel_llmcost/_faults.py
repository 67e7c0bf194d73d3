"""Catch our own faults so they never reach the application, and log each one once.

Instrumentation must never break the instrumented app: a bug or a surprising response
shape in our code is swallowed here. Logging is rate-limited per fault site, and the
set of sites is bounded, so a fault on every call cannot flood logs or grow memory.
"""

from __future__ import annotations

import logging
import threading
import time

_LOG = logging.getLogger("otel_llmcost")
_MAX_SITES = 256
_REPEAT_AFTER_S = 300.0
_last_logged: dict[str, float] = {}
_lock = threading.Lock()


def report(site: str, exc: BaseException | None = None) -> None:
    """Log an internal fault at ``site`` (at most once per site every 5 minutes)."""
    now = time.monotonic()
    with _lock:
        last = _last_logged.get(site)
        if last is not None and now - last < _REPEAT_AFTER_S:
            return
        if last is None and len(_last_logged) >= _MAX_SITES:
            _last_logged.pop(next(iter(_last_logged)))
        _last_logged[site] = now
    _LOG.warning("otel-llmcost: internal fault in %s; the call proceeds without it", site,
                 exc_info=exc)
