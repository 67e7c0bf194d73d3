#!/usr/bin/env python3
"""Per-call CPU overhead of otel-llmcost on an OpenAI chat call, against no instrumentation
and two anchor instrumentations, on a mocked transport. See README.md beside this file.

Primary figure: instructions per call under callgrind, from the difference of two runs of
the same configuration with N1 and N2 calls (start-up cancels). Secondary figure: CPU
time per call, medians of alternating rounds against the baseline in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _results  # beside this script

HERE = Path(__file__).resolve().parent
RESULTS = _results.RESULTS

MODEL = "gpt-4o-2024-08-06"
PROMPT_TOKENS, CACHED_TOKENS, COMPLETION_TOKENS = 1200, 1024, 100
CONTENT_CHUNKS = 20

BASELINE, OURS, OFFICIAL, OPENLLMETRY = "baseline", "otel-llmcost", "official", "openllmetry"
INSTRUMENTED = (OURS, OFFICIAL, OPENLLMETRY)
ANCHORS = (OFFICIAL, OPENLLMETRY)
DISTRIBUTIONS = {OURS: "otel-llmcost", OFFICIAL: "opentelemetry-instrumentation-openai-v2",
                 OPENLLMETRY: "opentelemetry-instrumentation-openai"}
CHAT, STREAM = "chat", "stream"
SAMPLERS = ("on", "off")

# Targets for otel-llmcost, µs added per call (per content chunk for the "chunk" rows).
TARGET_US = {(CHAT, "on"): 200.0, (CHAT, "off"): 60.0, ("chunk", "on"): 5.0,
             ("chunk", "off"): 5.0}

# Content capture off everywhere; nothing inherited may change what a configuration does.
CHILD_ENV = {"TRACELOOP_TRACE_CONTENT": "false",
             "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "false",
             "PYTHONHASHSEED": "0"}
_DROPPED_ENV_PREFIXES = ("OTEL_", "TRACELOOP_", "LLMCOST_")


# --------------------------------------------------------------------------- child side


def _chat_body() -> bytes:
    return json.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 1_700_000_000,
        "model": MODEL, "service_tier": "default", "system_fingerprint": "fp_bench",
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                     "message": {"role": "assistant", "content": "word " * COMPLETION_TOKENS,
                                 "refusal": None}}],
        "usage": _usage(),
    }).encode()


def _usage() -> dict[str, Any]:
    return {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
            "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0,
                                          "rejected_prediction_tokens": 0}}


def _stream_body(include_usage: bool) -> bytes:
    """20 content chunks (the first carries the role), a finish chunk, and the usage chunk
    only when the request asked for it, as the real API does."""
    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1_700_000_000,
            "model": MODEL, "service_tier": "default", "system_fingerprint": "fp_bench",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if include_usage:
            data["usage"] = None
        return data

    chunks = [chunk({"role": "assistant", "content": "word "} if i == 0 else {"content": "word "},
                    None) for i in range(CONTENT_CHUNKS)]
    chunks.append(chunk({}, "stop"))
    if include_usage:
        chunks.append({**chunk({}, None), "choices": [], "usage": _usage()})
    events = [f"data: {json.dumps(c)}\n\n" for c in chunks] + ["data: [DONE]\n\n"]
    return "".join(events).encode()


def _client() -> Any:
    """An OpenAI client whose transport answers from memory."""
    import httpx2
    import openai

    chat = _chat_body()
    streams = {True: _stream_body(True), False: _stream_body(False)}

    def handler(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        if body.get("stream"):
            options = body.get("stream_options") or {}
            return httpx2.Response(200, headers={"content-type": "text/event-stream"},
                                   content=streams[options.get("include_usage") is True])
        return httpx2.Response(200, headers={"content-type": "application/json"}, content=chat)

    return openai.OpenAI(api_key="sk-bench", max_retries=0,
                         http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))


MESSAGES = [{"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "Summarise the plot of Hamlet in one paragraph."}]


def _caller(client: Any, workload: str) -> Callable[[], int]:
    """One call of the workload; returns the number of chunks (or 1) the caller received."""
    create = client.chat.completions.create

    def chat() -> int:
        create(model=MODEL, messages=MESSAGES, max_tokens=COMPLETION_TOKENS)
        return 1

    def stream() -> int:
        seen = 0
        for _ in create(model=MODEL, messages=MESSAGES, max_tokens=COMPLETION_TOKENS,
                        stream=True, stream_options={"include_usage": True}):
            seen += 1
        return seen

    return chat if workload == CHAT else stream


def _instrument(config: str, tracer_provider: Any, meter_provider: Any) -> None:
    if config == BASELINE:
        return
    if config == OURS:
        from otel_llmcost import tokens
        from otel_llmcost.instrumentation import OpenAIInstrumentor
        OpenAIInstrumentor().instrument(tracer_provider=tracer_provider,
                                        meter_provider=meter_provider)
        tokens.wait_ready()  # its background load must not land in the measured window
    elif config == OFFICIAL:
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor as Official
        Official().instrument(  # type: ignore[no-untyped-call]
            tracer_provider=tracer_provider, meter_provider=meter_provider)
    else:
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor as Openllmetry
        Openllmetry().instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)


def _callgrind_toggle() -> Any:
    """The helper setup.sh builds: callgrind client requests, callable from ctypes."""
    import ctypes
    return ctypes.CDLL(str(Path(sys.prefix) / "lib" / "callgrind_toggle.so"))


def child(config: str, workload: str, sampler: str, calls: int, warmup: int,
          callgrind: bool) -> dict[str, Any]:
    """Run one configuration in this process and describe what it did."""
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

    class NullExporter(SpanExporter):
        """Drops spans; counts them and keeps the last one for the sanity check."""

        def __init__(self) -> None:
            self.count = 0
            self.last: Any = None

        def export(self, spans: Any) -> SpanExportResult:
            self.count += len(spans)
            self.last = spans[-1]
            return SpanExportResult.SUCCESS

    exporter = NullExporter()
    tracer_provider = TracerProvider(sampler=ALWAYS_ON if sampler == "on" else ALWAYS_OFF)
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    _instrument(config, tracer_provider, meter_provider)

    call = _caller(_client(), workload)
    for _ in range(warmup):
        call()
    tracer_provider.force_flush()
    exporter.count = 0
    _results.freeze_heap()
    toggle = _callgrind_toggle() if callgrind else None
    if toggle is not None:
        toggle.start_instrumentation()
    started = time.process_time()
    seen = 0
    for _ in range(calls):
        seen += call()
    tracer_provider.force_flush()
    cpu = time.process_time() - started
    if toggle is not None:
        toggle.stop_instrumentation()
    data = reader.get_metrics_data()
    metric_names = sorted({m.name for rm in (data.resource_metrics if data else ())
                           for sm in rm.scope_metrics for m in sm.metrics})
    last = exporter.last
    return {"cpu_s": cpu, "calls": calls, "spans": exporter.count,
            "chunks_per_call": seen / calls if calls else 0,
            "span_name": last.name if last is not None else None,
            "span_attributes": sorted(last.attributes) if last is not None else [],
            "metrics": metric_names}


# -------------------------------------------------------------------------- parent side


@dataclass(frozen=True)
class Run:
    """One configuration: which instrumentation, which workload, which sampler."""

    config: str
    workload: str
    sampler: str  # "on"/"off"; irrelevant (and "-") for the baseline

    @property
    def label(self) -> str:
        return f"{self.config}.{self.workload}.{self.sampler}"


def _runs() -> list[Run]:
    return [Run(BASELINE, w, "-") if c == BASELINE else Run(c, w, s)
            for w in (CHAT, STREAM) for c in (BASELINE, *INSTRUMENTED)
            for s in (SAMPLERS if c != BASELINE else ("-",))]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED_ENV_PREFIXES)}
    env.update(CHILD_ENV)
    return env


def _child_cmd(run: Run, calls: int, warmup: int, callgrind: bool) -> list[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", run.config, run.workload,
           run.sampler, "--calls", str(calls), "--warmup", str(warmup)]
    return cmd + ["--callgrind"] if callgrind else cmd


def _spawn(cmd: list[str]) -> dict[str, Any]:
    return _results.spawn(cmd, _env())


def sanity(runs: list[Run]) -> dict[Run, dict[str, Any]]:
    """Each configuration, a few calls natively: does it run, and does it make spans?"""
    return {run: _spawn(_child_cmd(run, calls=5, warmup=2, callgrind=False)) for run in runs}


def excluded(runs: list[Run], checks: dict[Run, dict[str, Any]]) -> dict[str, str]:
    """Instrumentations that cannot be measured (they fail, or make no span when sampled
    in), with the reason."""
    reasons: dict[str, str] = {}
    for run in runs:
        check = checks[run]
        if "error" in check:
            reasons.setdefault(run.config, f"fails ({run.workload}): {check['error']}")
        elif run.config != BASELINE and run.sampler == "on" and check["spans"] == 0:
            reasons.setdefault(run.config, "produced no spans: does not instrument")
    if BASELINE in reasons:
        raise SystemExit(f"the baseline itself fails: {reasons[BASELINE]}")
    return reasons


def _instructions(run: Run, calls: int, warmup: int, out_dir: Path) -> int:
    out = out_dir / f"callgrind.{run.label}.{calls}.out"
    return _results.callgrind(_child_cmd(run, calls, warmup, callgrind=True), out, _env())[0]


def instructions_per_call(runs: list[Run], sizes: dict[str, tuple[int, int]], warmup: int,
                          out_dir: Path, jobs: int) -> dict[Run, float]:
    """(Ir(N2) − Ir(N1)) / (N2 − N1) per configuration, (N1, N2) per workload; runs in
    parallel (counts do not depend on load)."""
    tasks = [(run, n) for run in runs for n in reversed(sizes[run.workload])]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        totals = list(pool.map(lambda t: _instructions(t[0], t[1], warmup, out_dir), tasks))
    counts = dict(zip(tasks, totals))
    per_call = {}
    for run in runs:
        n1, n2 = sizes[run.workload]
        per_call[run] = (counts[(run, n2)] - counts[(run, n1)]) / (n2 - n1)
    return per_call


def cpu_per_call(runs: list[Run], rounds: int, calls: int, warmup: int) -> dict[Run, list[float]]:
    """Per-call CPU seconds of each configuration, one sample per round; within a round
    every configuration runs once, baseline first, one after the other."""
    samples: dict[Run, list[float]] = {run: [] for run in runs}
    for _ in range(rounds):
        for run in runs:
            result = _spawn(_child_cmd(run, calls, warmup, callgrind=False))
            if "error" in result:
                raise RuntimeError(f"timed run {run.label} failed: {result['error']}")
            expected = calls if run.sampler == "on" else 0
            if result["spans"] != expected:
                raise RuntimeError(f"timed run {run.label}: {result['spans']} spans, "
                                   f"expected {expected}")
            samples[run].append(result["cpu_s"] / calls)
    return samples


# ------------------------------------------------------------------------------ report












@dataclass
class Measured:
    """Everything measured in one run of the benchmark."""

    problems: dict[str, str]  # instrumentation → why it was not measured
    checks: dict[Run, dict[str, Any]]
    ir: dict[Run, float]  # instructions per call
    cpu: dict[Run, list[float]]  # CPU seconds per call, one sample per round
    settings: dict[str, int]
    seconds: float

    def base(self, workload: str) -> Run:
        return Run(BASELINE, workload, "-")

    def ir_per_us(self, workload: str) -> float:
        """Calibration: the baseline's instructions per µs of CPU time on this machine."""
        base = self.base(workload)
        return self.ir[base] / (statistics.median(self.cpu[base]) * 1e6)

    def added(self, config: str, workload: str, sampler: str) -> tuple[float, float] | None:
        """(instructions, measured µs) added per call over the baseline, or None."""
        if config in self.problems:
            return None
        run, base = Run(config, workload, sampler), self.base(workload)
        return (self.ir[run] - self.ir[base],
                (statistics.median(self.cpu[run]) - statistics.median(self.cpu[base])) * 1e6)

    def added_per_chunk(self, config: str, sampler: str) -> tuple[float, float] | None:
        stream, chat = self.added(config, STREAM, sampler), self.added(config, CHAT, sampler)
        if stream is None or chat is None:
            return None
        return ((stream[0] - chat[0]) / CONTENT_CHUNKS, (stream[1] - chat[1]) / CONTENT_CHUNKS)


def _target(row: str, sampler: str) -> float:
    """µs target of a row; a whole stream may add the call's target plus 20 chunks'."""
    if row == STREAM:
        return TARGET_US[(CHAT, sampler)] + CONTENT_CHUNKS * TARGET_US[("chunk", sampler)]
    return TARGET_US[(row, sampler)]


def _mega(ir: float, sign: str = "") -> str:
    return f"{ir / 1e6:{sign}.3f} M" if abs(ir) >= 1e5 else f"{ir / 1e3:{sign},.1f} k"


def results_table(m: Measured) -> list[str]:
    """One row per (workload, sampler): each instrumentation's cost and the verdicts."""
    lines = ["| workload | sampler | baseline | " + " | ".join(INSTRUMENTED)
             + " | target for ours | ours vs target | "
             + " | ".join(f"ours lower than {a}?" for a in ANCHORS) + " |",
             "|" + "---|" * (6 + len(INSTRUMENTED) + len(ANCHORS) - 1)]
    for sampler in SAMPLERS:
        for row in (CHAT, STREAM, "chunk"):
            rate = m.ir_per_us(CHAT if row == "chunk" else row)
            if row == "chunk":
                cells = ["per content chunk", sampler, "—"]
                added = {c: m.added_per_chunk(c, sampler) for c in INSTRUMENTED}
            else:
                base = m.base(row)
                base_us = statistics.median(m.cpu[base]) * 1e6
                cells = [row, sampler, f"{_mega(m.ir[base])} Ir; {base_us:,.0f} µs"]
                added = {c: m.added(c, row, sampler) for c in INSTRUMENTED}
            for config, value in added.items():
                if value is None:
                    cells.append(f"not measured: {m.problems[config]}")
                    continue
                total = "" if row == "chunk" else f"{_mega(m.ir[Run(config, row, sampler)])} Ir, "
                cells.append(f"{total}**{_mega(value[0], '+')}** Ir ≈ "
                             f"{value[0] / rate:+,.1f} µs; time {value[1]:+,.1f} µs")
            target, ours = _target(row, sampler), added[OURS]
            cells.append(f"≤ {target:g} µs")
            cells.append("n/a" if ours is None else
                         "met" if ours[0] / rate <= target else "**not met**")
            for anchor in ANCHORS:
                other = added[anchor]
                cells.append("n/a" if ours is None or other is None else
                             f"{'yes' if ours[0] < other[0] else '**no**'} "
                             f"({ours[0] - other[0]:+,.0f} Ir)")
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def sanity_table(runs: list[Run], m: Measured) -> list[str]:
    columns = ("config", "workload", "sampler", "spans / 5 calls", "chunks seen per call",
               "span name", "usage on span", "cost on span", "metric names")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for run in runs:
        check = m.checks[run]
        head = f"| {run.config} | {run.workload} | {run.sampler} | "
        if "error" in check:
            lines.append(head + f"fails: {check['error']} | | | | | |")
            continue
        attrs = check["span_attributes"]
        usage = any(a.startswith("gen_ai.usage.input_tokens") for a in attrs)
        cost = any("cost" in a for a in attrs)
        lines.append(head + f"{check['spans']} | {check['chunks_per_call']:g} | "
                     f"{check['span_name'] or '—'} | {'yes' if usage else 'no'} | "
                     f"{'yes' if cost else 'no'} | {', '.join(check['metrics']) or '—'} |")
    return lines


METHOD = """\
- Configurations, each in its own subprocess: `baseline` (openai only), `otel-llmcost`, \
`official` (opentelemetry-instrumentation-openai-v2 on its default, legacy semconv path), \
`openllmetry` (opentelemetry-instrumentation-openai). Content capture off for all \
(`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=false`, `TRACELOOP_TRACE_CONTENT=false`).
- Workload: `client.chat.completions.create(model="{model}", ...)` through \
`httpx2.MockTransport`. `chat`: one chat.completion with 1,200 prompt tokens (1,024 cached) \
and 100 completion tokens. `stream`: the caller asks `stream_options={{"include_usage": true}}` \
and reads {chunks} content chunks, a finish chunk and the usage chunk (the mock sends the usage \
chunk only when the request asks for it, like the API).
- TracerProvider + BatchSpanProcessor into a null exporter, sampler ALWAYS_ON (`on`) or \
ALWAYS_OFF (`off`); MeterProvider + InMemoryMetricReader (not collected while measuring). \
The final span flush is inside the measured window.
- **Instructions** (primary): `valgrind --tool=callgrind`, instrumentation switched on (client \
request) after {warmup} warm-up calls, a full collection and `gc.freeze()` (so that the \
collections inside the window walk only what the measured calls allocated, not the whole \
start-up heap at moments that shift from build to build), and off after the flush; per call = \
(Ir(N2) − Ir(N1)) / (N2 − N1), with N1 = {n1}, N2 = {n2} on `chat` and N1 = {stream_n1}, \
N2 = {stream_n2} on `stream`. Added = config − baseline of the same \
workload. Repeated runs agree within about ±0.3 %.
- **Time** (secondary): {rounds} rounds; in each, every configuration runs once ({calls} calls \
after {warmup} warm-up, `time.process_time`, all threads), baseline first. Added = \
median(config) − median(baseline) over the same rounds. The machine is shared: run-to-run \
noise is about ±25 %.
- **Ir → µs**: divided by the baseline's own instructions per µs of CPU time measured here \
({rate_chat:,.0f} Ir/µs on `chat`, {rate_stream:,.0f} on `stream`). Targets are judged on this \
figure; the anchors are compared on instructions.
- **Per content chunk** = (added on `stream` − added on `chat`) / {chunks}: an upper bound, \
as it also carries the stream's fixed costs (proxy, accumulator) and the finish and usage \
chunks. The `stream` row's target is the call's target plus {chunks} chunks'.
- Run time of this benchmark: {minutes:.1f} min.
"""


CELLS = ("Cells: instructions per call, **added** instructions ≈ added µs, and the added CPU "
         "time measured directly.")


def report(runs: list[Run], m: Measured) -> str:
    """The markdown report: machine, method, results, sanity pass."""
    method = METHOD.format(model=MODEL, chunks=CONTENT_CHUNKS, rate_chat=m.ir_per_us(CHAT),
                           rate_stream=m.ir_per_us(STREAM), minutes=m.seconds / 60,
                           **m.settings)
    lines = ["# Per-call CPU overhead of otel-llmcost (OpenAI chat, mocked transport)", "",
             "Written by `benchmarks/bench_overhead.py --write`; see `benchmarks/README.md`.",
             "", "## Machine", "", *_machine(), "", "## Method", "", method,
             "## Results", "",
             CELLS, "", *results_table(m), "",
             "## Sanity pass (5 calls per configuration, natively)", "",
             *sanity_table(runs, m)]
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=3, metavar=("CONFIG", "WORKLOAD", "SAMPLER"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--callgrind", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=300,
                        help="calls per timed subprocess (default 300)")
    parser.add_argument("--warmup", type=int, default=50, help="warm-up calls (default 50)")
    parser.add_argument("--rounds", type=int, default=7, help="timing rounds (default 7)")
    parser.add_argument("--n1", type=int, default=100, help="callgrind N1, chat (default 100)")
    parser.add_argument("--n2", type=int, default=300, help="callgrind N2, chat (default 300)")
    parser.add_argument("--stream-n1", type=int, default=60,
                        help="callgrind N1, stream (default 60)")
    parser.add_argument("--stream-n2", type=int, default=180,
                        help="callgrind N2, stream (default 180)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="parallel callgrind runs (default: cores)")
    parser.add_argument("--out", type=Path, default=HERE / "callgrind",
                        help="directory for the callgrind outputs (default benchmarks/callgrind)")
    parser.add_argument("--write", action="store_true", help=f"also write {RESULTS.name}")
    args = parser.parse_args()

    if args.child:
        config, workload, sampler = args.child
        print(json.dumps(child(config, workload, sampler, args.calls, args.warmup,
                               args.callgrind)))
        return

    started, digest = time.monotonic(), _results.source_digest()
    runs = _runs()
    print("sanity pass…", file=sys.stderr)
    checks = sanity(runs)
    problems = excluded(runs, checks)
    for config, reason in problems.items():
        print(f"  {config} not measured: {reason}", file=sys.stderr)
    good = [run for run in runs if run.config not in problems]

    args.out.mkdir(parents=True, exist_ok=True)
    print(f"callgrind ({len(good) * 2} runs, {args.jobs} at a time, outputs in {args.out})…",
          file=sys.stderr)
    sizes = {CHAT: (args.n1, args.n2), STREAM: (args.stream_n1, args.stream_n2)}
    ir = instructions_per_call(good, sizes, args.warmup, args.out, args.jobs)
    print(f"timing ({args.rounds} rounds)…", file=sys.stderr)
    cpu = cpu_per_call(good, args.rounds, args.calls, args.warmup)

    if _results.source_digest() != digest:
        raise SystemExit(f"{_results.package_dir()} changed during the run, so the configurations "
                         "measured different code: run again on a stable checkout")
    measured = Measured(problems, checks, ir, cpu,
                        {"n1": args.n1, "n2": args.n2, "stream_n1": args.stream_n1,
                         "stream_n2": args.stream_n2, "warmup": args.warmup,
                         "rounds": args.rounds, "calls": args.calls},
                        time.monotonic() - started)
    text = report(runs, measured)
    print(text)
    if args.write:
        _results.write_section(text)


def _machine() -> list[str]:
    packages = ("openai", "httpx2", "opentelemetry-sdk", DISTRIBUTIONS[OFFICIAL],
                "opentelemetry-util-genai", DISTRIBUTIONS[OPENLLMETRY], DISTRIBUTIONS[OURS])
    return _results.machine(packages, _results.valgrind_version())


if __name__ == "__main__":
    main()
