"""The ledger: reserves a call's worst-case cost before it is sent, settles its actual cost
after, and reports refusals, soft-limit crossings and its own blind spots.

Worst case = input tokens estimated with tiktoken (or bounded by the texts' UTF-8 bytes,
with ``input_estimate: bytes``), all priced as uncached input (cache discounts ignored),
plus ``max_tokens`` (or ``default_max_tokens``) at the output price.
The store (memory, SQLite or Redis) does each step atomically; the ledger decides which
budget lines a call falls under, talks to the store within its timeout, and turns
answers into exceptions, metrics, log records and callbacks.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping
from zoneinfo import ZoneInfo

from opentelemetry import metrics

from otel_llmcost import _faults, pricing, semconv as sc, tokens
from otel_llmcost._bounded import BoundedCache
from otel_llmcost.budgets import _period
from otel_llmcost.budgets._spec import Budget, Settings
from otel_llmcost.budgets._store import (
    NANO, THRESHOLD_80, THRESHOLD_100, Admission, Line, MemoryStore, Store, StoreUnavailable)
from otel_llmcost.version import __version__

_LOG = logging.getLogger("otel_llmcost.budgets")
_DAY_S = 86400.0
_RETRY_STORE_AFTER_S = 1.0  # after a store failure, calls skip it (fail mode) this long
_TOKEN_CACHE = 8192  # token counts of recent texts (conversations resend their history)
_LOGGED_MAX = 4096  # (budget line) refusals already logged
_ROUTES_MAX = 8192  # attributions (customer, tier, feature) whose budget lines are cached
_UNPRICED = {sc.LLMCOST_BUDGET_UNACCOUNTED_REASON: sc.UNACCOUNTED_UNPRICED}


class BudgetError(Exception):
    """A call was not sent because of budgets (base of the two cases below)."""


class BudgetExceeded(BudgetError):
    """The call's worst-case cost would cross an enforced budget's hard limit; nothing was
    sent. Amounts in USD; ``customer`` is set for per-customer budgets."""

    def __init__(self, budget: str, customer: str | None, period: str, spent: float,
                 reserved: float, requested: float, limit: float) -> None:
        self.budget, self.customer, self.period = budget, customer, period
        self.spent, self.reserved, self.requested, self.limit = spent, reserved, requested, limit
        who = f" for customer {customer}" if customer else ""
        super().__init__(
            f"budget {budget!r}{who} ({period}): spent ${spent:.6f} + reserved "
            f"${reserved:.6f} + this call's worst case ${requested:.6f} > hard limit "
            f"${limit:.2f}")


class BudgetUnavailable(BudgetError):
    """The budget store did not answer in time and budgets fail closed; nothing was sent."""


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """Where one budget counter stands in its current period, as this process last saw it."""

    budget: str
    customer: str | None
    period: str
    spent_usd: float
    reserved_usd: float
    soft_usd: float | None
    hard_usd: float


@dataclass(frozen=True, slots=True)
class Notification:
    """A soft-limit threshold crossed (``threshold`` 0.8 or 1.0), once per period."""

    budget: str
    customer: str | None
    period: str
    threshold: float
    spent_usd: float
    soft_usd: float


class _Compiled:
    """A budget with its limits in nano-USD and its current period cached."""

    __slots__ = ("budget", "hard", "soft", "tz", "_now")

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.hard = round(budget.hard_usd * NANO)
        self.soft = round(budget.soft_usd * NANO) if budget.soft_usd else 0
        self.tz = ZoneInfo(budget.timezone)
        self._now = ("", math.inf, -math.inf)  # (key, start, end) of the last period asked

    def period(self, now_s: float) -> tuple[str, float]:
        """The current period's key and end (one attribute: threads see all or nothing)."""
        found = self._now
        if not found[1] <= now_s < found[2]:
            found = self._now = _period.current(self.budget.period, self.tz, now_s)
        return found[0], found[2]

    def covers(self, customer: str | None, tier: str | None, feature: str | None
               ) -> str | None:
        """The subject of a call's counter ("*" or the customer), None if not covered."""
        b = self.budget
        if ((b.customer is not None and b.customer != customer)
                or (b.tier is not None and b.tier != tier)
                or (b.feature is not None and b.feature != feature)):
            return None
        if b.each_customer:
            return customer or None  # a call without a customer id has no counter here
        return "*"


class _Route:
    """The budget lines that calls with one attribution fall under, in the periods current
    from ``since`` to ``ends``, and the store's last word on them for the gauges:
    ``reading`` = (serial, (spent, reserved) per line, amount held on top of reserved)."""

    __slots__ = ("owners", "lines", "since", "ends", "reading")

    def __init__(self, owners: tuple[tuple[_Compiled, str], ...], lines: tuple[Line, ...],
                 since: float, ends: float) -> None:
        self.owners, self.lines, self.since, self.ends = owners, lines, since, ends
        self.reading: tuple[int, tuple[tuple[int, int], ...], int] | None = None


class Hold:
    """A granted reservation; `settle` replaces it by the actual cost (once)."""

    __slots__ = ("_ledger", "_ticket", "_route", "_amount", "_settled")

    def __init__(self, ledger: Ledger, ticket: str, route: _Route, amount: int) -> None:
        self._ledger, self._ticket, self._route, self._amount = ledger, ticket, route, amount
        self._settled = False

    def settle(self, actual_usd: float | None) -> None:
        """Record the call's actual cost; None (unknown) releases the reservation."""
        if self._settled:
            return
        self._settled = True
        self._ledger._settle(self._ticket, self._route, self._amount, actual_usd)


class Ledger:
    """Budgets in force in this process. Build with `configure` (or LLMCOST_BUDGETS_FILE)."""

    def __init__(self, settings: Settings, store: Store | None = None,
                 on_notify: Callable[[Notification], None] | None = None,
                 meter_provider: Any = None, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self._budgets = [_Compiled(b) for b in settings.budgets]
        self._store = store if store is not None else _open_store(settings)
        self._on_notify = on_notify
        self._clock = clock
        self._down_until = 0.0  # monotonic time until which the store is skipped
        self._ttl_s = settings.reservation_ttl_s
        self._estimate = self._count if settings.input_estimate == "tiktoken" else _utf8_bytes
        self._token_counts: BoundedCache[tuple[int, int], int] = BoundedCache(_TOKEN_CACHE)
        self._routes: BoundedCache[tuple[str | None, str | None, str | None], _Route] = (
            BoundedCache(_ROUTES_MAX))
        self._readings = itertools.count()  # orders the routes' readings of shared lines
        self._logged: BoundedCache[str, None] = BoundedCache(_LOGGED_MAX)
        meter = metrics.get_meter(sc.INSTRUMENTATION_SCOPE, __version__, meter_provider)
        self._refused = _counter(meter, sc.M_BUDGET_REFUSED)
        self._notifications = _counter(meter, sc.M_BUDGET_NOTIFICATIONS)
        self._unaccounted = _counter(meter, sc.M_BUDGET_UNACCOUNTED)
        # The gauges read whichever ledger is in force when they are collected: a meter
        # keeps the first instrument of a name, so a reconfigured ledger reuses them.
        for metric, observe in ((sc.M_BUDGET_SPENT, _observe_spent),
                                (sc.M_BUDGET_RESERVED, _observe_reserved),
                                (sc.M_BUDGET_LIMIT, _observe_limits)):
            meter.create_observable_gauge(metric.name, [observe], unit=metric.unit,
                                          description=metric.description)

    # --- the call path -------------------------------------------------------------
    def reserve(self, provider: str, operation: str, model: str | None,
                max_tokens: int | None, input_texts: Callable[[], Iterable[str]] | None,
                scope: Mapping[str, str]) -> Hold | None:
        """Reserve a call's worst case on every budget it falls under.

        Returns None when no budget covers it (or it cannot be reserved and is counted as
        unaccounted). Raises `BudgetExceeded` / `BudgetUnavailable` when it must not be
        sent. Our own faults are reported and the call proceeds.
        """
        try:
            now = self._clock()
            route = self._route(scope, now)
            if not route.lines:
                return None
            amount = self._worst_case(provider, operation, model, max_tokens, input_texts)
            if amount is None:
                self._unaccounted.add(1, _UNPRICED)
                return None
            if self._down_until and time.monotonic() < self._down_until:
                return self._store_failed(None)
            ticket = _tag + str(next(_serial))
            try:
                admission = self._store.reserve(ticket, route.lines, amount, now,
                                                now + self._ttl_s)
            except StoreUnavailable as error:
                return self._store_failed(error)
            route.reading = (next(self._readings), admission.totals,
                             amount if admission.granted else 0)
            if admission.over:
                self._over(route, admission, amount)
            return Hold(self, ticket, route, amount)
        except BudgetError:
            raise
        except Exception as fault:  # noqa: BLE001 - never break the app
            _faults.report("budgets.reserve", fault)
            return None

    def _over(self, route: _Route, admission: Admission, amount: int) -> None:
        """Count (and log once) the hard limits a call crosses; raise if it is refused."""
        refusal = None
        for index in admission.over:
            compiled, subject = route.owners[index]
            line = route.lines[index]
            spent, reserved = admission.totals[index]
            enforced = line.enforce and not admission.granted
            self._refused.add(1, {sc.LLMCOST_BUDGET_NAME: compiled.budget.name,
                                  sc.LLMCOST_BUDGET_ENFORCED: "true" if enforced else "false"})
            exceeded = BudgetExceeded(compiled.budget.name, _customer(subject),
                                      _period_of(line.key), spent / NANO, reserved / NANO,
                                      amount / NANO, line.hard / NANO)
            self._log_once(line.key, "otel-llmcost: %s%s", exceeded,
                           "" if enforced else " (not enforced: the call is sent)")
            if enforced and refusal is None:
                refusal = exceeded
        if refusal is not None:
            raise refusal

    def _settle(self, ticket: str, route: _Route, amount: int,
                actual_usd: float | None) -> None:
        try:
            if actual_usd is None:
                self._unaccounted.add(1, _UNPRICED)
            actual = max(0, round((actual_usd or 0.0) * NANO))
            try:
                settled = self._store.settle(ticket, route.lines, amount, actual, self._clock())
            except StoreUnavailable as error:
                self._store_failed(error, settling=True)
                return
            route.reading = (next(self._readings), settled.totals, 0)
            if any(settled.crossed):
                for (compiled, subject), line, (spent, _), new in zip(
                        route.owners, route.lines, settled.totals, settled.crossed):
                    if new:
                        self._crossed(compiled, subject, line, spent, new)
        except Exception as fault:  # noqa: BLE001 - never break the app
            _faults.report("budgets.settle", fault)

    def _crossed(self, compiled: _Compiled, subject: str, line: Line, spent: int,
                 new: int) -> None:
        for bit, threshold in ((THRESHOLD_80, 0.8), (THRESHOLD_100, 1.0)):
            if new & bit:
                self._notify(Notification(compiled.budget.name, _customer(subject),
                                          _period_of(line.key), threshold, spent / NANO,
                                          line.soft / NANO))

    def _route(self, scope: Mapping[str, str], now: float) -> _Route:
        """The budget lines of calls with this attribution, cached until a period ends."""
        who = (scope.get(sc.LLMCOST_CUSTOMER_ID), scope.get(sc.LLMCOST_CUSTOMER_TIER),
               scope.get(sc.LLMCOST_FEATURE))
        route = self._routes.get(who)
        if route is None or not route.since <= now < route.ends:
            owners, lines, until = [], [], math.inf
            for compiled in self._budgets:
                subject = compiled.covers(*who)
                if subject is not None:
                    period, ends = compiled.period(now)
                    owners.append((compiled, subject))
                    lines.append(Line(f"{compiled.budget.name}|{subject}|{period}",
                                      compiled.hard, compiled.soft, compiled.budget.enforce,
                                      ends + _DAY_S))
                    until = min(until, ends)
            route = _Route(tuple(owners), tuple(lines), now, until)
            self._routes.add(who, route)
        return route

    def _worst_case(self, provider: str, operation: str, model: str | None,
                    max_tokens: int | None, input_texts: Callable[[], Iterable[str]] | None
                    ) -> int | None:
        """The call's worst-case cost in nano-USD, None if its model has no price."""
        input_tokens = sum(map(self._estimate, input_texts())) if input_texts else 0
        if max_tokens is None:
            max_tokens = 0 if operation == sc.OP_EMBEDDINGS else self.settings.default_max_tokens
        cost = pricing.price_tokens(provider, model, input_tokens, max_tokens)
        return None if cost is None else math.ceil(cost * NANO)

    def _count(self, text: str) -> int:
        """Tokens of one text, cached by (length, hash): a conversation resends its history
        every turn, and tiktoken costs about 0.3 µs per token."""
        key = (len(text), hash(text))
        found = self._token_counts.get(key)
        if found is None:
            found = tokens.count(text)
            self._token_counts.add(key, found)
        return found

    def _store_failed(self, error: StoreUnavailable | None, settling: bool = False
                      ) -> Hold | None:
        if error is not None:
            self._down_until = time.monotonic() + _RETRY_STORE_AFTER_S
            _faults.report("budgets.store", error)
        self._unaccounted.add(1, {sc.LLMCOST_BUDGET_UNACCOUNTED_REASON: sc.UNACCOUNTED_STORE})
        if not settling and self.settings.on_store_error == "closed":
            raise BudgetUnavailable(f"budget store unavailable ({error or 'recently failed'})"
                                    "; budgets fail closed")
        return None

    # --- reporting ----------------------------------------------------------------
    def _notify(self, notification: Notification) -> None:
        self._notifications.add(1, {sc.LLMCOST_BUDGET_NAME: notification.budget,
                                    sc.LLMCOST_BUDGET_THRESHOLD: str(notification.threshold)})
        _LOG.warning("otel-llmcost: budget %r%s (%s) reached %d%% of its soft limit: "
                     "$%.6f of $%.2f", notification.budget,
                     f" for customer {notification.customer}" if notification.customer else "",
                     notification.period, round(notification.threshold * 100),
                     notification.spent_usd, notification.soft_usd)
        if self._on_notify is not None:
            try:
                self._on_notify(notification)
            except Exception as fault:  # noqa: BLE001 - the user's callback
                _faults.report("budgets.on_notify", fault)

    def _log_once(self, key: str, message: str, *args: Any) -> None:
        if key not in self._logged and self._logged.add(key, None):
            _LOG.warning(message, *args)

    def status(self, top_k: int | None = None) -> list[BudgetStatus]:
        """The budget counters of the current periods that this process has touched, as of
        its last reservation or settlement (other processes may have moved them since), for
        the (customer, tier, feature) attributions of its route cache (``_ROUTES_MAX``);
        per-customer budgets: the ``top_k`` biggest spenders (default: the setting)."""
        now = self._clock()
        latest: dict[str, tuple[int, _Compiled, str, int, int]] = {}  # line key → newest
        for route in list(self._routes.values()):  # (a list: other threads add routes)
            reading = route.reading
            if reading is None:
                continue
            serial, totals, held = reading
            for (compiled, subject), line, (spent, reserved) in zip(route.owners, route.lines,
                                                                     totals):
                found = latest.get(line.key)
                if found is None or found[0] < serial:
                    latest[line.key] = (serial, compiled, subject, spent, reserved + held)
        rows: dict[str, list[BudgetStatus]] = {}
        for key, (_, compiled, subject, spent, reserved) in latest.items():
            period = _period_of(key)
            if period != compiled.period(now)[0]:
                continue
            b = compiled.budget
            rows.setdefault(b.name, []).append(BudgetStatus(
                b.name, _customer(subject), period, spent / NANO, reserved / NANO, b.soft_usd,
                b.hard_usd))
        top = []
        for found in rows.values():
            found.sort(key=lambda row: -row.spent_usd)
            top += found[:self.settings.top_k if top_k is None else top_k]
        return top

    def close(self) -> None:
        self._store.close()


_active: Ledger | None = None
_serial = itertools.count()
_tag = ""  # tickets are "<pid>.<random>.<serial>": unique across processes and hosts


def _new_tag() -> None:
    """A forked child must not reuse its parent's tickets."""
    global _tag
    _tag = f"{os.getpid():x}.{uuid.uuid4().hex[:12]}."


_new_tag()
os.register_at_fork(after_in_child=_new_tag)


def active() -> Ledger | None:
    """The ledger calls are checked against, if budgets are configured."""
    return _active


def activate(ledger: Ledger | None) -> Ledger | None:
    """Put ``ledger`` in force; returns the one it replaces."""
    global _active
    previous, _active = _active, ledger
    return previous


def _observe_spent(_options: Any) -> Iterable[metrics.Observation]:
    ledger = _active
    return [metrics.Observation(row.spent_usd, _gauge_attributes(row))
            for row in ledger.status()] if ledger else []


def _observe_reserved(_options: Any) -> Iterable[metrics.Observation]:
    ledger = _active
    return [metrics.Observation(row.reserved_usd, _gauge_attributes(row))
            for row in ledger.status()] if ledger else []


def _observe_limits(_options: Any) -> Iterable[metrics.Observation]:
    ledger = _active
    found = []
    for b in ledger.settings.budgets if ledger else ():
        for kind, value in (("soft", b.soft_usd), ("hard", b.hard_usd)):
            if value is not None:
                found.append(metrics.Observation(value, {
                    sc.LLMCOST_BUDGET_NAME: b.name, sc.LLMCOST_BUDGET_LIMIT: kind}))
    return found


def _utf8_bytes(text: str) -> int:
    """An upper bound of a byte-level BPE tokenizer's count of a text (tiktoken's, for
    one): every token is at least one byte."""
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _period_of(key: str) -> str:
    return key.rsplit("|", 1)[1]


def _customer(subject: str) -> str | None:
    return None if subject == "*" else subject


def _gauge_attributes(row: BudgetStatus) -> dict[str, str]:
    attributes = {sc.LLMCOST_BUDGET_NAME: row.budget}
    if row.customer is not None:
        attributes[sc.LLMCOST_CUSTOMER_ID] = row.customer
    return attributes


def _counter(meter: metrics.Meter, metric: sc.MetricDef) -> metrics.Counter:
    return meter.create_counter(metric.name, unit=metric.unit, description=metric.description)


def _open_store(settings: Settings) -> Store:
    if settings.store == "sqlite":
        from otel_llmcost.budgets._sqlite import SQLiteStore
        return SQLiteStore(settings.sqlite_path or "", settings.timeout_s)
    if settings.store == "redis":
        from otel_llmcost.budgets._redis import RedisStore
        return RedisStore(settings.redis_url or "", settings.timeout_s, settings.key_prefix)
    return MemoryStore()

