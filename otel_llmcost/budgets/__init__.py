"""Spend guardrails: budgets that reserve a call's worst-case cost before it is sent.

Declare budgets in YAML (``LLMCOST_BUDGETS_FILE``, read when the instrumentation starts)
or in code with `configure`. Each call is checked against every budget that covers it;
a call that would cross an enforced hard limit raises `BudgetExceeded` before any request
is sent. After the call, its reservation is replaced by its actual cost (failed calls
cost what they reported, usually nothing; an abandoned stream what it streamed).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

from otel_llmcost import semconv as sc
from otel_llmcost.budgets._ledger import (
    BudgetError, BudgetExceeded, BudgetStatus, BudgetUnavailable, Hold, Ledger, Notification,
    activate, active)
from otel_llmcost.budgets._spec import Budget, Settings, from_mapping, load

__all__ = ("Budget", "BudgetError", "BudgetExceeded", "BudgetStatus", "BudgetUnavailable",
           "Hold", "Ledger",
           "Notification", "Settings", "active", "configure", "from_mapping", "load")

_LOG = logging.getLogger("otel_llmcost.budgets")
_lock = threading.Lock()


def configure(settings: Settings | str | Path | None, *,
              on_notify: Callable[[Notification], None] | None = None,
              meter_provider: Any = None, clock: Callable[[], float] = time.time
              ) -> Ledger | None:
    """Put budgets in force (a `Settings`, or the path of a YAML file); None removes them.

    Raises ValueError for an invalid configuration, and ``StoreUnavailable`` when the
    SQLite file cannot be opened. ``on_notify`` is called once per soft-limit threshold
    crossed per budget, subject and period. ``clock`` (Unix seconds) decides periods and
    leases: the wall clock, or a simulated one.
    """
    if isinstance(settings, (str, Path)):
        settings = load(settings)
    ledger = None if settings is None else Ledger(settings, on_notify=on_notify,
                                                  meter_provider=meter_provider, clock=clock)
    with _lock:
        previous = activate(ledger)
    if previous is not None:
        previous.close()
    return ledger


def configure_from_env(meter_provider: Any = None) -> None:
    """At instrument time: load ``LLMCOST_BUDGETS_FILE`` unless budgets are already set.

    A bad file is logged as an error and budgets stay off: the app runs, but loudly."""
    path = os.environ.get(sc.ENV_BUDGETS_FILE, "").strip()
    if not path or active() is not None:
        return
    try:
        configure(path, meter_provider=meter_provider)
    except Exception as error:  # noqa: BLE001 - a bad file must not stop the app
        _LOG.error("otel-llmcost: %s=%s not used, budgets are OFF: %s", sc.ENV_BUDGETS_FILE,
                   path, error)
    else:
        _LOG.info("otel-llmcost: budgets from %s in force", path)
