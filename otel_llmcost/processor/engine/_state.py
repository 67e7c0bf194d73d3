"""The engine's whole state as plain JSON-able data, and back: what a checkpoint stores.

Explicit rather than pickled: loading a checkpoint must never run code, and the format
is versioned so that a newer processor can refuse (not misread) an older file.
"""

from __future__ import annotations

from typing import Any

from otel_llmcost import semconv as sc
from otel_llmcost.processor.engine._conversations import OpenConversation
from otel_llmcost.processor.engine._customers import Window
from otel_llmcost.processor.engine._metrics import Exemplar
from otel_llmcost.processor.engine._traces import OpenTrace, Turn

VERSION = 2  # 2: a trace's close time in its row instead of a "due" list; closed ids joined
_METRICS = {m.name: m for m in sc.ROLLUP_METRICS}


def dump(engine: Any) -> dict[str, Any]:
    """Everything needed to continue exactly where the engine is."""
    traces, metrics = engine.traces, engine.metrics
    return {
        "version": VERSION,
        "traces": [[tid.hex(), t.last_ns, t.start_ns, t.end_ns, t.llm_calls, t.tool_calls,
                    t.retries, t.cost, t.weight, t.due_ns,
                    _links(t.parents),
                    {cid: [u.cost, u.input_tokens, u.first_start_ns]
                     for cid, u in t.turns.items()} if t.turns else None]
                   for tid, t in traces.open.items()],
        "closed": b"".join(traces.closed).hex(),
        "runaways": [list(e) for e in traces.runaways],
        "conversations": [[cid, c.turns, c.cost, c.last_ns]
                          for cid, c in engine.conversations.open.items()],
        "windows": {w.label: {"closed_through": w.closed_through,
                              "per_active": [[h, v] for h, v in w.per_active.items()],
                              "open": [[index, list(win.spend.items()), win.other,
                                        win.unattributed] for index, win in w.open.items()]}
                    for w in engine.customers.windows},
        "histograms": [[m.name, list(labels), h.counts, h.sum]
                       for (m, labels), h in metrics.histograms.items()],
        "counters": [[m.name, list(labels), v] for (m, labels), v in metrics.counters.items()],
        "exemplars": [[m.name, list(labels), *e] for (m, labels), e in metrics.exemplars.items()],
    }


def load(engine: Any, state: dict[str, Any]) -> None:
    """Put a `dump` back into a freshly built engine (same config)."""
    if state.get("version") != VERSION:
        raise ValueError(f"checkpoint version {state.get('version')!r}, expected {VERSION}")
    traces, metrics = engine.traces, engine.metrics
    for (tid, last, start, end, llm, tool, retries, cost, weight, due_ns, parents,
         turns) in state["traces"]:
        t = OpenTrace()
        t.last_ns, t.start_ns, t.end_ns, t.llm_calls, t.tool_calls = last, start, end, llm, tool
        t.retries, t.cost, t.weight, t.due_ns = retries, cost, weight, due_ns
        raw = bytes.fromhex(parents)
        half = len(raw) // 2
        t.parents = {raw[i:i + 8]: raw[half + i:half + i + 8] for i in range(0, half, 8)}
        if turns:
            t.turns = {}
            for cid, (turn_cost, input_tokens, first_start) in turns.items():
                turn = t.turns[cid] = Turn()
                turn.cost, turn.input_tokens, turn.first_start_ns = (
                    turn_cost, input_tokens, first_start)
        traces.open[bytes.fromhex(tid)] = t
    traces.due.extend(sorted((t.due_ns, tid) for tid, t in traces.open.items()
                             if t.due_ns is not None))
    closed = bytes.fromhex(state["closed"])
    traces.closed.update((closed[i:i + 16], None) for i in range(0, len(closed), 16))
    traces.runaways.extend(Exemplar(*e) for e in state["runaways"])
    for cid, turns_, cost, last in state["conversations"]:
        c = engine.conversations.open[cid] = OpenConversation()
        c.turns, c.cost, c.last_ns = turns_, cost, last
    for w in engine.customers.windows:
        saved = state["windows"].get(w.label)
        if saved is None:  # a window kind added since the checkpoint: it starts empty
            continue
        w.closed_through = saved["closed_through"]
        w.per_active = {h: v for h, v in saved["per_active"]}
        for index, spend, other, unattributed in saved["open"]:
            win = w.open[index] = Window()
            win.spend = {c: v for c, v in spend}
            win.other, win.unattributed = other, unattributed
    for name, labels, counts, total in state["histograms"]:
        h = metrics.histogram(_METRICS[name], tuple(labels))  # in place: the engine holds some
        h.counts, h.sum = counts, total
    for name, labels, value in state["counters"]:
        metrics.counters[(_METRICS[name], tuple(labels))] = value
    for name, labels, *exemplar in state["exemplars"]:
        metrics.exemplars[(_METRICS[name], tuple(labels))] = Exemplar(*exemplar)


def _links(parents: dict[bytes, bytes]) -> str:
    """A trace's (span, parent) links as one hex string: every span id, then every parent
    id in the same order. Encoding them pair by pair made checkpoints the processor's
    largest cost."""
    return (b"".join(parents) + b"".join(parents.values())).hex()
