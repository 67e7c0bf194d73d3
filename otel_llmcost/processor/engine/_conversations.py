"""Conversations: turns across traces, closed on an idle timeout.

Each turn (one trace's calls in the conversation) is observed as it completes, by its
bucketed index, so that the cost-by-turn curve shows; a closed conversation is observed
into the conversation distributions.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterable

from otel_llmcost import semconv as sc
from otel_llmcost.processor.engine._metrics import Histogram, Metrics
from otel_llmcost.processor.engine._traces import Turn


def turn_bucket(index: int) -> str:
    """``1``, ``2``, ``3-4``, ``5-8``, ``9-16`` or ``17+`` (semconv.TURN_BUCKETS)."""
    for last, label in sc.TURN_BUCKETS:
        if last is None or index <= last:
            return label
    raise AssertionError("TURN_BUCKETS ends with an open bucket")


_LAST_BOUNDED = max(last for last, _ in sc.TURN_BUCKETS if last is not None)


class OpenConversation:
    __slots__ = ("turns", "cost", "last_ns")

    def __init__(self) -> None:
        self.turns = 0.0  # weighted: a turn kept at 1 % stands for 100
        self.cost = 0.0
        self.last_ns = 0


class Conversations:
    """Open conversations, in order of last activity."""

    def __init__(self, idle_ns: int, max_open: int, metrics: Metrics) -> None:
        self._idle_ns = idle_ns
        self._max_open = max_open
        self._metrics = metrics
        self.open: OrderedDict[str, OpenConversation] = OrderedDict()
        # Since the last checkpoint: the open ones touched, and those closed.
        self.dirty: set[str] = set()
        self.gone: list[str] = []
        # cost, input tokens; by turn index (all from _LAST_BOUNDED + 1 on as one)
        self._turn_histograms: dict[int, tuple[Histogram, Histogram]] = {}

    def touch(self, conversation_ids: Iterable[str], now_ns: int) -> None:
        """Spans of these conversations arrived: they are active (created if new)."""
        open_, dirty = self.open, self.dirty
        find, refresh = open_.get, open_.move_to_end
        for conversation_id in conversation_ids:
            found = find(conversation_id)
            if found is None:
                found = open_[conversation_id] = OpenConversation()
                if len(open_) > self._max_open:
                    self._metrics.add(sc.M_PROCESSOR_EVICTIONS, 1, ("conversation",))
                    self.close(next(iter(open_)))
            else:
                refresh(conversation_id)
            found.last_ns = now_ns
            dirty.add(conversation_id)

    def add_turn(self, conversation_id: str, turn: Turn, weight: float, now_ns: int) -> None:
        self.touch((conversation_id,), now_ns)
        conversation = self.open[conversation_id]
        index = int(conversation.turns) + 1
        conversation.turns += weight
        conversation.cost += turn.cost * weight
        # Keyed by index up to the first open-ended bucket's: no bucket search per turn.
        key = index if index <= _LAST_BOUNDED else _LAST_BOUNDED + 1
        histograms = self._turn_histograms.get(key)
        if histograms is None:
            label = turn_bucket(key)
            histograms = self._turn_histograms[key] = (
                self._metrics.histogram(sc.M_TURN_COST, (label,)),
                self._metrics.histogram(sc.M_TURN_INPUT_TOKENS, (label,)))
        histograms[0].observe(turn.cost, weight)
        histograms[1].observe(turn.input_tokens, weight)

    def advance(self, now_ns: int) -> None:
        idle_before, open_ = now_ns - self._idle_ns, self.open
        while open_:
            conversation_id, conversation = next(iter(open_.items()))
            if conversation.last_ns > idle_before:
                break
            self.close(conversation_id)

    def close(self, conversation_id: str) -> None:
        conversation = self.open.pop(conversation_id)
        self.dirty.discard(conversation_id)
        self.gone.append(conversation_id)
        if conversation.turns:  # spans came, but no trace of it has closed yet: nothing to say
            self._metrics.observe(sc.M_CONVERSATION_COST, conversation.cost)
            self._metrics.observe(sc.M_CONVERSATION_TURNS, conversation.turns)
