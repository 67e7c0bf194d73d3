"""The ledger's shared state: what a store does, the rules every store applies, and the
embedded (in-process) store.

Amounts are integer nano-USD, so that concurrent additions are exact in every store
(Redis ``HINCRBY``, SQLite integers): the spent total equals the sum of the calls' costs
to the nano-dollar, whatever the interleaving. A reservation covers all the budgets a call
falls under at once, or none: one atomic step reserves, one atomic step settles.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, Sequence

NANO = 1_000_000_000  # nano-USD per USD
THRESHOLD_80, THRESHOLD_100 = 1, 2  # bits of a budget's "notified" mask


class StoreUnavailable(Exception):
    """The store did not answer within its timeout (or failed)."""


@dataclass(frozen=True, slots=True)
class Line:
    """One budget counter a call falls under: a budget, its subject and period."""

    key: str  # "<budget>|<customer or *>|<period>"
    hard: int  # nano-USD
    soft: int  # nano-USD; 0: no soft limit
    enforce: bool
    expires_s: float  # the counter may be dropped after this (its period is over)


class Admission(NamedTuple):
    """The store's answer to a reservation (a NamedTuple: one is built per call)."""

    granted: bool
    over: tuple[int, ...]  # lines whose hard limit the call would cross (index in the call)
    totals: tuple[tuple[int, int], ...]  # (spent, reserved) per line before the call


class Settled(NamedTuple):
    """The store's answer to a settlement."""

    totals: tuple[tuple[int, int], ...]  # (spent, reserved) per line after it
    crossed: tuple[int, ...]  # per line, thresholds crossed by it (THRESHOLD_* bits)


class Store(Protocol):
    """Atomic reservation and settlement over several budget lines."""

    def reserve(self, ticket: str, lines: Sequence[Line], amount: int, now_s: float,
                lease_until: float) -> Admission:
        """Reserve ``amount`` on every line, unless an enforced line's hard limit would be
        crossed (then on none). The reservation lapses at ``lease_until`` if never settled."""

    def settle(self, ticket: str, lines: Sequence[Line], amount: int, actual: int,
               now_s: float) -> Settled:
        """Replace the reservation by the actual cost."""

    def close(self) -> None:
        """Release connections."""


def admit(lines: Sequence[Line], totals: Sequence[tuple[int, int]], amount: int
          ) -> tuple[bool, tuple[int, ...]]:
    """(granted, lines crossed): refused only when a crossed line is enforced."""
    over = ()
    for i, line in enumerate(lines):
        spent, reserved = totals[i]
        if spent + reserved + amount > line.hard:
            over += (i,)
    if not over:
        return True, over
    return not any(lines[i].enforce for i in over), over


def crossed(spent: int, soft: int, notified: int) -> int:
    """Thresholds of the soft limit that ``spent`` has reached and nobody was told of."""
    if not soft:
        return 0
    level = (THRESHOLD_80 if spent * 5 >= soft * 4 else 0) | (
        THRESHOLD_100 if spent >= soft else 0)
    return level & ~notified


class MemoryStore:
    """Counters in this process, under one lock: threads and asyncio tasks share them.

    A process that dies takes its reservations with it, so there are no leases. Counters of
    periods that are over are dropped as new ones appear, which bounds memory by the
    subjects active in the current periods.
    """

    _SWEEP_EVERY = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[str, list[Any]] = {}  # key → [spent, reserved, notified, expires]
        self._until_sweep = self._SWEEP_EVERY

    def reserve(self, ticket: str, lines: Sequence[Line], amount: int, now_s: float,
                lease_until: float) -> Admission:
        rows_of = self._rows
        with self._lock:
            rows, totals = [], []
            for line in lines:
                row = rows_of.get(line.key)
                if row is None:
                    row = rows_of[line.key] = [0, 0, 0, line.expires_s]
                rows.append(row)
                totals.append((row[0], row[1]))
            granted, over = admit(lines, totals, amount)
            if granted:
                for row in rows:
                    row[1] += amount
            self._until_sweep -= 1
            if self._until_sweep <= 0:
                self._sweep(now_s)
        return Admission(granted, over, tuple(totals))

    def settle(self, ticket: str, lines: Sequence[Line], amount: int, actual: int,
               now_s: float) -> Settled:
        totals, news = [], []
        rows_of = self._rows
        with self._lock:
            for line in lines:
                row = rows_of.get(line.key)
                if row is None:  # swept meanwhile (its period ended): counted afresh
                    row = rows_of[line.key] = [0, amount, 0, line.expires_s]
                row[1] -= amount
                spent = row[0] = row[0] + actual
                new = crossed(spent, line.soft, row[2]) if line.soft else 0
                row[2] |= new
                totals.append((spent, row[1]))
                news.append(new)
        return Settled(tuple(totals), tuple(news))

    def _sweep(self, now_s: float) -> None:
        self._until_sweep = max(self._SWEEP_EVERY, len(self._rows))
        for key in [k for k, r in self._rows.items() if r[3] < now_s and not r[1]]:
            del self._rows[key]

    def close(self) -> None:
        """Nothing to release."""
