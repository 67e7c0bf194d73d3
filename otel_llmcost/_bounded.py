"""A dict with a size limit, for caches keyed by what traffic brings (model names, customer
ids, texts): arbitrary keys must not grow memory."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(OrderedDict[K, V]):
    """Forgets its oldest entry once full, so arbitrary keys cannot grow memory.

    Reads are plain ``dict`` reads (lock-free, fast); only ``add`` takes a lock. An
    ``OrderedDict`` because it drops its oldest entry in O(1): on a plain dict,
    ``next(iter(d))`` walks over every slot deleted since the last resize (thousands, at
    a few µs per eviction, in a cache that evicts on every call).
    """

    def __init__(self, maxsize: int) -> None:
        super().__init__()
        self.maxsize = maxsize
        self._lock = threading.Lock()

    def add(self, key: K, value: V) -> bool:
        """Set ``key``; True if it was not there (decided under the lock, so of threads
        adding the same key at once exactly one is told it was new)."""
        with self._lock:
            new = key not in self
            if new and len(self) >= self.maxsize:
                self.popitem(last=False)
            self[key] = value
            return new
