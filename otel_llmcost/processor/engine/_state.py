"""The engine's state as plain data, and back: what a checkpoint stores.

A checkpoint is incremental. Conversations are long-lived and mostly idle, so only those
that changed since the last checkpoint are handed out (with the ids of those that
closed); trace ids closed since then are appended. A customer window that was spent in
goes whole: copying its dict (C speed, about 0.1 µs a customer) and writing it as one
row costs less than noting, span by span, which customers changed and upserting each
(about 3 µs a row), unless only a few percent of its customers spent. Open traces live
a few seconds, so nearly all of them change between two checkpoints: they go whole, in a
compact binary form (hex and JSON lists were most of a checkpoint's cost). Metrics are
small and go whole as JSON-able data.

Explicit rather than pickled: loading a checkpoint must never run code, and the format
is versioned so that a newer processor can refuse (not misread) an older file.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from itertools import islice
from typing import Any

from otel_llmcost import semconv as sc
from otel_llmcost.processor.engine._conversations import OpenConversation
from otel_llmcost.processor.engine._customers import Window
from otel_llmcost.processor.engine._metrics import Exemplar
from otel_llmcost.processor.engine._traces import OpenTrace, Turn

VERSION = 5  # 3: incremental rows; open traces binary. 4: the anomaly detector's state.
# 5: the detector keeps one example span a bucket; a window's spend saved whole
_METRICS = {m.name: m for m in sc.ROLLUP_METRICS}
# A trace: id, last, start, end, LLM calls, tool calls, retries, cost, weight, close time,
# has a close time, links kept, turns; then its span ids, its parents' ids, and its turns.
_TRACE = struct.Struct("<16sqqqqqqddq?II")
_TURN = struct.Struct("<dqqI")  # cost, input tokens, first start, conversation id length
_ID = 16  # bytes of a trace id
_SPAN_ID = 8


def dump(engine: Any, full: bool) -> dict[str, Any]:
    """What changed since the last dump (everything if ``full``), and start over from here.

    ``conversations`` rows come in the order a restore must rebuild them (activity), and
    so do each window's customers in its ``spend`` (first spend; a window is given whole
    if anyone spent in it); ``*_gone`` name the rows to delete first.
    """
    traces, conversations = engine.traces, engine.conversations
    closed = traces.closed
    new_closed = len(closed) if full else min(traces.newly_closed, len(closed))
    state = {
        "full": full,
        "meta": _meta(engine),
        "traces": _encode_traces(traces.open),
        "closed": b"".join(list(islice(reversed(closed), new_closed))[::-1]),
        "closed_count": len(closed),
        "conversations": _conversation_rows(conversations, full),
        "conversations_gone": [] if full else conversations.gone,
        "spend": [(w.label, index, dict(window.spend)) for w in engine.customers.windows
                  for index, window in w.open.items() if full or window.changed],
        "windows_gone": [] if full else [(w.label, index) for w in engine.customers.windows
                                         for index in w.gone],
    }
    traces.newly_closed = 0
    conversations.dirty, conversations.gone = set(), []
    for w in engine.customers.windows:
        w.gone = []
        for window in w.open.values():
            window.changed = False
    return state


def _meta(engine: Any) -> dict[str, Any]:
    metrics = engine.metrics
    return {
        "version": VERSION,
        "runaways": [list(e) for e in engine.traces.runaways],
        "windows": {w.label: {"closed_through": w.closed_through,
                              "per_active": [[h, v] for h, v in w.per_active.items()],
                              "open": [[index, win.other, win.unattributed]
                                       for index, win in w.open.items()]}
                    for w in engine.customers.windows},
        "histograms": [[m.name, list(labels), h.counts, h.sum]
                       for (m, labels), h in metrics.histograms.items()],
        "counters": [[m.name, list(labels), v] for (m, labels), v in metrics.counters.items()],
        "exemplars": [[m.name, list(labels), *e] for (m, labels), e in metrics.exemplars.items()],
        "anomalies": engine.anomalies.state(),
    }


def _conversation_rows(conversations: Any, full: bool) -> list[tuple[str, float, float, int]]:
    """Every touch moves a conversation to the end of ``open``: those touched since the
    last dump (``dirty``) are its last ``len(dirty)`` entries, oldest first here."""
    open_ = conversations.open
    ids = list(open_) if full else list(islice(reversed(open_), len(conversations.dirty)))[::-1]
    rows = []
    for cid in ids:
        c = open_[cid]
        rows.append((cid, c.turns, c.cost, c.last_ns))
    return rows


def _encode_traces(open_: dict[bytes, OpenTrace]) -> bytes:
    pack, pack_turn, parts = _TRACE.pack, _TURN.pack, []
    for tid, t in open_.items():
        parents, turns, due = t.parents, t.turns, t.due_ns
        parts.append(pack(tid, t.last_ns, t.start_ns, t.end_ns, t.llm_calls, t.tool_calls,
                          t.retries, t.cost, t.weight, 0 if due is None else due,
                          due is not None, len(parents), len(turns) if turns else 0))
        parts.append(b"".join(parents))
        parts.append(b"".join(parents.values()))
        if turns:
            for cid, u in turns.items():
                raw = cid.encode()
                parts.append(pack_turn(u.cost, u.input_tokens, u.first_start_ns, len(raw)))
                parts.append(raw)
    return b"".join(parts)


def _decode_traces(raw: bytes, open_: dict[bytes, OpenTrace]) -> None:
    at, end = 0, len(raw)
    while at < end:
        (tid, last, start, stop, llm, tool, retries, cost, weight, due, has_due, links,
         turns) = _TRACE.unpack_from(raw, at)
        at += _TRACE.size
        half = links * _SPAN_ID
        if at + 2 * half > end:
            raise ValueError("checkpoint: a trace's links are cut short")
        t = OpenTrace()
        t.last_ns, t.start_ns, t.end_ns, t.llm_calls, t.tool_calls = last, start, stop, llm, tool
        t.retries, t.cost, t.weight = retries, cost, weight
        t.due_ns = due if has_due else None
        t.parents = {raw[i:i + _SPAN_ID]: raw[i + half:i + half + _SPAN_ID]
                     for i in range(at, at + half, _SPAN_ID)}
        at += 2 * half
        if turns:
            t.turns = {}
            for _ in range(turns):
                turn = Turn()
                turn.cost, turn.input_tokens, turn.first_start_ns, size = _TURN.unpack_from(
                    raw, at)
                at += _TURN.size
                t.turns[raw[at:at + size].decode()] = turn
                at += size
        open_[tid] = t
    if at != end:
        raise ValueError("checkpoint: the open traces are cut short")


def load(engine: Any, state: dict[str, Any]) -> None:
    """Put a full `dump` (or what a store rebuilt from dumps) into a fresh engine."""
    meta = state["meta"]
    if meta.get("version") != VERSION:
        raise ValueError(f"checkpoint version {meta.get('version')!r}, expected {VERSION}")
    traces, metrics = engine.traces, engine.metrics
    _decode_traces(state["traces"], traces.open)
    traces.due.extend(sorted((t.due_ns, tid) for tid, t in traces.open.items()
                             if t.due_ns is not None))
    closed = state["closed"]
    if len(closed) % _ID:
        raise ValueError("checkpoint: closed trace ids cut short")
    traces.closed.update((closed[i:i + _ID], None) for i in range(0, len(closed), _ID))
    traces.runaways.extend(Exemplar(*e) for e in meta["runaways"])
    for cid, turns_, cost, last in state["conversations"]:
        c = engine.conversations.open[cid] = OpenConversation()
        c.turns, c.cost, c.last_ns = turns_, cost, last
    by_label = {w.label: w for w in engine.customers.windows}
    for w in engine.customers.windows:
        saved = meta["windows"].get(w.label)
        if saved is None:  # a window kind added since the checkpoint: it starts empty
            continue
        w.closed_through = saved["closed_through"]
        w.per_active = {h: v for h, v in saved["per_active"]}
        for index, other, unattributed in saved["open"]:
            win = w.open[index] = Window()
            win.other, win.unattributed = other, unattributed
    for label, index, spend in state["spend"]:
        if label in by_label:  # (not a window kind dropped since)
            by_label[label].open[index].spend = OrderedDict(spend)
    for name, labels, counts, total in meta["histograms"]:
        h = metrics.histogram(_METRICS[name], tuple(labels))  # in place: the engine holds some
        h.counts, h.sum = counts, total
    for name, labels, value in meta["counters"]:
        metrics.counters[(_METRICS[name], tuple(labels))] = value
    for name, labels, *exemplar in meta["exemplars"]:
        metrics.exemplars[(_METRICS[name], tuple(labels))] = Exemplar(*exemplar)
    engine.anomalies.restore(meta["anomalies"])
    for trace_id in engine.anomalies.runaway:  # flagged already: not again
        if trace_id in traces.open:
            traces.open[trace_id].runaway = True
