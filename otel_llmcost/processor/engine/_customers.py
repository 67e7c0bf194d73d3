"""Customers: spend per UTC window (the hour, the day, the calendar month), by event time.

A window stays open until ``grace`` after its end, for spans still in flight; a span
for a window already closed is late and counted in the newest open one. A closed window
observes each customer's spend into the window-cost distribution, and an hourly one
records the spend per active customer for its hour of day. The gauges describe the
newest open window: top K spenders plus ``__other__`` and ``__unattributed__`` (the
series add up to the window's total), the spend share of the top N % (a Lorenz curve
in six points), and the number of active customers.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from datetime import datetime, timezone
from typing import Iterator

from otel_llmcost import semconv as sc
from otel_llmcost.processor.engine._metrics import Labels, Metrics
from otel_llmcost.processor.records import Spend
from otel_llmcost.semconv import MetricDef

Gauge = tuple[MetricDef, Labels, float]


class Window:
    __slots__ = ("spend", "other", "unattributed", "changed")

    def __init__(self) -> None:
        # In order of first spend. An OrderedDict: a full window folds its oldest entry on
        # every new customer, and a dict's next(iter()) rescans the slots of those folded
        # (30 µs a fold at 100,000 customers, against 0.6).
        self.spend: OrderedDict[str, float] = OrderedDict()
        self.other = 0.0  # customers folded in when the window was full
        self.unattributed = 0.0
        # Spent in since the last checkpoint, which then saves it whole: a copy of the
        # dict costs less than noting each customer changed, span by span.
        self.changed = True

    def total(self) -> float:
        return sum(self.spend.values()) + self.other + self.unattributed


_NS = 1_000_000_000


def _month_index(t_ns: int) -> int:
    """Calendar months (UTC) since January 1970."""
    day = datetime.fromtimestamp(t_ns // _NS, timezone.utc)
    return (day.year - 1970) * 12 + day.month - 1


def _month_start_ns(index: int) -> int:
    year, month = divmod(index, 12)
    return int(datetime(1970 + year, month + 1, 1, tzinfo=timezone.utc).timestamp()) * _NS


class Windows:
    """The open windows of one kind (e.g. hourly), by window index: a fixed length, or
    (``length_s`` None) the calendar month."""

    def __init__(self, label: str, length_s: int | None, grace_ns: int, max_customers: int,
                 metrics: Metrics) -> None:
        self.label = label
        self._length_ns = length_s * _NS if length_s else 0
        self._hourly = length_s == 3600
        self._month = (0, 0, -1)  # (start, end, index) of the month last looked up
        self._grace_ns = grace_ns
        self._max_customers = max_customers
        self._metrics = metrics
        self.open: dict[int, Window] = {}
        self.closed_through = -1  # the newest closed window index
        self.per_active: dict[int, float] = {}  # hour of day → spend per active customer
        self.gone: list[int] = []  # windows closed since the last checkpoint

    def _index(self, t_ns: int) -> int:
        if self._length_ns:
            return t_ns // self._length_ns
        return _month_index(t_ns)

    @staticmethod
    def _month_of(t_ns: int) -> tuple[int, int, int]:
        """(start, end, index) of the calendar month of ``t_ns``."""
        index = _month_index(t_ns)
        return _month_start_ns(index), _month_start_ns(index + 1), index

    def _end_ns(self, index: int) -> int:
        return (index + 1) * self._length_ns if self._length_ns else _month_start_ns(index + 1)

    def add(self, spends: list[Spend], now_ns: int) -> None:
        """LLM spans' (weighted) costs, each in the window of its end (or of ``now_ns``, if
        it ends later): a batch per call, since this runs for every LLM span."""
        length, month, most = self._length_ns, self._month, self._max_customers
        window, index = None, None  # the last one used: a batch mostly falls in one window
        for customer_id, amount, end_ns, _ in spends:
            t_ns = end_ns if end_ns < now_ns else now_ns
            if length:
                at = t_ns // length
            else:  # calendar months: dates only when leaving the month last looked up
                if not month[0] <= t_ns < month[1]:
                    month = self._month = self._month_of(t_ns)
                at = month[2]
            if at != index:
                window, index = self._window(at, now_ns)
            if customer_id is None:
                window.unattributed += amount
                continue
            spend = window.spend
            if customer_id in spend:
                spend[customer_id] += amount
            elif len(spend) < most:
                spend[customer_id] = amount
            else:  # full: fold the longest-known customer into __other__ to make room
                window.other += spend.popitem(last=False)[1]
                spend[customer_id] = amount
                self._metrics.add(sc.M_PROCESSOR_EVICTIONS, 1, ("customer",))

    def _window(self, index: int, now_ns: int) -> tuple[Window, int]:
        """The open window of ``index`` (created if new); a late span's goes to the newest
        open one, and is counted."""
        if index <= self.closed_through:
            self._metrics.add(sc.M_PROCESSOR_LATE_SPANS, 1, ("customer",))
            index = max(self.open, default=self._index(now_ns))
        window = self.open.get(index)
        if window is None:
            window = self.open[index] = Window()
        window.changed = True  # (every span of a batch goes through here or after it)
        return window, index

    def advance(self, now_ns: int) -> None:
        for index in sorted(self.open):
            if self._end_ns(index) + self._grace_ns > now_ns:
                break
            self._close(index)

    def _close(self, index: int) -> None:
        window = self.open.pop(index)
        self.gone.append(index)
        self.closed_through = max(self.closed_through, index)
        labels = (self.label,)
        for amount in window.spend.values():
            self._metrics.observe(sc.M_CUSTOMER_WINDOW_COST, amount, 1.0, labels)
        if self._hourly and window.spend:
            self.per_active[index % 24] = sum(window.spend.values()) / len(window.spend)

    def gauges(self, top_k: int) -> Iterator[Gauge]:
        if not self.open:
            return
        window = self.open[max(self.open)]
        label = self.label
        ranked = sorted(window.spend.values(), reverse=True)
        attributed = sum(ranked)
        top = sorted(window.spend.items(), key=lambda kv: kv[1], reverse=True)[:top_k]
        for customer_id, amount in top:
            yield sc.M_CUSTOMER_TOP_COST, (label, customer_id), amount
        rest = attributed - sum(amount for _, amount in top) + window.other
        yield sc.M_CUSTOMER_TOP_COST, (label, sc.CUSTOMER_OTHER), rest
        yield sc.M_CUSTOMER_TOP_COST, (label, sc.CUSTOMER_UNATTRIBUTED), window.unattributed
        yield sc.M_CUSTOMER_ACTIVE, (label,), float(len(ranked))
        if attributed > 0:
            cumulative = [0.0]
            for amount in ranked:
                cumulative.append(cumulative[-1] + amount)
            for percent in sc.SPEND_SHARE_PERCENTS:
                k = max(1, math.ceil(len(ranked) * percent / 100))
                yield (sc.M_CUSTOMER_SPEND_SHARE, (label, f"{percent:g}"),
                       cumulative[k] / attributed)


class Customers:
    """Hourly and daily windows of customer spend."""

    def __init__(self, grace_ns: int, max_customers: int, top_k: int, metrics: Metrics) -> None:
        self._top_k = top_k
        self.windows = tuple(Windows(label, length, grace_ns, max_customers, metrics)
                             for label, length in sc.WINDOWS)

    def add(self, spends: list[Spend], now_ns: int) -> None:
        for windows in self.windows:
            windows.add(spends, now_ns)

    def advance(self, now_ns: int) -> None:
        for windows in self.windows:
            windows.advance(now_ns)

    def gauges(self) -> Iterator[Gauge]:
        for windows in self.windows:
            yield from windows.gauges(self._top_k)
        for hour, value in sorted(self.windows[0].per_active.items()):
            yield sc.M_CUSTOMER_COST_PER_ACTIVE, (f"{hour:02d}",), value

    def open_count(self) -> int:
        windows = self.windows[0]
        return len(windows.open[max(windows.open)].spend) if windows.open else 0
