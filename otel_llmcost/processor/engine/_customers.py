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

    def __init__(self, label: str, length_s: int | None, grace_ns: int,
                 metrics: Metrics) -> None:
        self.label = label
        self._length_ns = length_s * _NS if length_s else 0
        self._hourly = length_s == 3600
        self._grace_ns = grace_ns
        self._metrics = metrics
        self.open: dict[int, Window] = {}
        self.closed_through = -1  # the newest closed window index
        self.per_active: dict[int, float] = {}  # hour of day → spend per active customer
        self.gone: list[int] = []  # windows closed since the last checkpoint

    def _index(self, t_ns: int) -> int:
        if self._length_ns:
            return t_ns // self._length_ns
        return _month_index(t_ns)

    def _start_ns(self, index: int) -> int:
        return index * self._length_ns if self._length_ns else _month_start_ns(index)

    def _end_ns(self, index: int) -> int:
        return self._start_ns(index + 1)

    def at(self, t_ns: int, now_ns: int) -> tuple[Window, int, int, bool]:
        """The open window that spend at ``t_ns`` goes to (created if new), the times that
        go there, and whether it is late: its window closed, it goes to the newest open one."""
        index = self._index(t_ns)
        start, end = self._start_ns(index), self._end_ns(index)
        late = index <= self.closed_through
        if late:
            index = max(self.open, default=self._index(now_ns))
        window = self.open.get(index)
        if window is None:
            window = self.open[index] = Window()
        window.changed = True  # (every span of a batch goes through here or after it)
        return window, start, end, late

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
        self._max_customers = max_customers
        self._metrics = metrics
        self.windows = tuple(Windows(label, length, grace_ns, metrics)
                             for label, length in sc.WINDOWS)

    def add(self, spends: list[Spend], now_ns: int) -> None:
        """LLM spans' (weighted) costs, each in the windows of its end (or of ``now_ns``, if
        it ends later). One pass for every kind of window, since this runs for every LLM
        span: a batch mostly falls in one window of each, looked up again only when a span
        leaves the times they all cover."""
        most, targets, start, end, late, late_spans = self._max_customers, [], 0, 0, False, 0
        for customer_id, amount, end_ns, _ in spends:
            t_ns = end_ns if end_ns < now_ns else now_ns
            if not start <= t_ns < end:
                targets, start, end, late = self._targets(t_ns, now_ns)
            if late:
                late_spans += 1
            if customer_id is None:
                for window in targets:
                    window.unattributed += amount
                continue
            for window in targets:
                spend = window.spend
                if customer_id in spend:
                    spend[customer_id] += amount
                elif len(spend) < most:
                    spend[customer_id] = amount
                else:  # full: fold the longest-known customer into __other__ to make room
                    window.other += spend.popitem(last=False)[1]
                    spend[customer_id] = amount
                    self._metrics.add(sc.M_PROCESSOR_EVICTIONS, 1, ("customer",))
        if late_spans:
            self._metrics.add(sc.M_PROCESSOR_LATE_SPANS, late_spans, ("customer",))

    def _targets(self, t_ns: int, now_ns: int) -> tuple[list[Window], int, int, bool]:
        """The window of each kind that spend at ``t_ns`` goes to, the times that all of
        them cover, and whether any of them is late."""
        targets, starts, ends, lates = zip(*(windows.at(t_ns, now_ns)
                                             for windows in self.windows))
        return list(targets), max(starts), min(ends), any(lates)

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
