#!/usr/bin/env python3
"""CPU (and, for Redis, wall time) that budget checks add to an OpenAI chat call, with the
in-memory, SQLite and Redis stores, against otel-llmcost without budgets. See README.md.

Primary figure: instructions per call under callgrind, (Ir(N2) − Ir(N1)) / (N2 − N1).
Secondary: CPU and wall time per call, medians of alternating rounds in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import _results  # beside this script
import bench_overhead  # the mocked OpenAI transport and the callgrind toggle

HERE = Path(__file__).resolve().parent
CONFIGS = ("none", "memory", "memory-bytes", "sqlite", "redis")
TARGET_US = {"memory": 30.0, "memory-bytes": 30.0, "redis": 1000.0}  # added per call
# (Redis: wall time)
CUSTOMERS = 50
SYSTEM = ("You are the support assistant of a project-management product. Answer in the "
          "user's language, cite the help-centre article you used, never invent a feature, "
          "and escalate billing questions to a human. ") * 4
QUESTION = ("Question {i}: how do I move the tasks of one board to another board without "
            "losing their comments, attachments and due dates, and can I undo it later?")
BUDGETS = [  # three budgets cover every call: a real deployment's shape
    {"name": "everything", "hard_usd": 1e6, "soft_usd": 5e5, "period": "month"},
    {"name": "free-daily", "tier": "free", "each_customer": True, "hard_usd": 1e4,
     "soft_usd": 5e3, "timezone": "America/New_York", "enforce": True},
    {"name": "search", "feature": "search", "hard_usd": 1e6, "period": "month"},
]


# --------------------------------------------------------------------------- child side


def child(config: str, store: dict[str, Any], calls: int, warmup: int,
          callgrind: bool) -> dict[str, Any]:
    """Make ``calls`` calls with budgets on ``config``'s store; report CPU, wall, ledger."""
    import otel_llmcost
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from otel_llmcost import budgets, tokens
    from otel_llmcost.instrumentation import OpenAIInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class NullExporter(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(NullExporter()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    OpenAIInstrumentor().instrument(tracer_provider=tracer_provider,
                                    meter_provider=meter_provider)
    tokens.wait_ready()
    if config != "none":
        budgets.configure(budgets.from_mapping({**store, "budgets": BUDGETS}),
                          meter_provider=meter_provider)
    create = bench_overhead._client().chat.completions.create

    def call(i: int) -> None:
        with otel_llmcost.attributes(customer_id=f"c{i % CUSTOMERS}", customer_tier="free",
                                     feature="search"):
            create(model=bench_overhead.MODEL, max_tokens=bench_overhead.COMPLETION_TOKENS,
                   messages=[{"role": "system", "content": SYSTEM},
                             {"role": "user", "content": QUESTION.format(i=i)}])

    for i in range(warmup):
        call(i)
    # Spans are exported in the window they were made in, whenever the batch processor's
    # thread would have run: the instruction counts then repeat run to run.
    tracer_provider.force_flush()
    _results.freeze_heap()
    toggle = bench_overhead._callgrind_toggle() if callgrind else None
    if toggle is not None:
        toggle.start_instrumentation()
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(warmup, warmup + calls):
        call(i)
    tracer_provider.force_flush()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if toggle is not None:
        toggle.stop_instrumentation()
    ledger = budgets.active()
    status = ledger.status(top_k=CUSTOMERS) if ledger else []
    tracer_provider.shutdown()
    return {"cpu_s": cpu, "wall_s": wall, "calls": calls,
            "counters": len(status), "spent_usd": sum(s.spent_usd for s in status),
            "reserved_usd": sum(s.reserved_usd for s in status)}


# -------------------------------------------------------------------------- parent side


def _cmd(config: str, store: dict[str, Any], calls: int, warmup: int,
         callgrind: bool) -> list[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", config,
           json.dumps(store), "--calls", str(calls), "--warmup", str(warmup)]
    return cmd + ["--callgrind"] if callgrind else cmd


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMCOST_"))}
    env["PYTHONHASHSEED"] = "0"
    return env


class Stores:
    """A fresh store per child run: a new SQLite file, a new Redis key prefix."""

    def __init__(self, workdir: Path, redis_url: str) -> None:
        self.workdir, self.redis_url, self.serial = workdir, redis_url, 0

    def settings(self, config: str) -> dict[str, Any]:
        self.serial += 1
        if config == "sqlite":
            return {"store": "sqlite", "sqlite_path": str(self.workdir / f"b{self.serial}.db")}
        if config == "redis":
            return {"store": "redis", "redis_url": self.redis_url,
                    "key_prefix": f"bench{self.serial}:", "timeout_s": 1.0}
        if config == "memory-bytes":
            return {"store": "memory", "input_estimate": "bytes"}
        return {"store": "memory"}


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save",
                                "", "--appendonly", "no", "--dir", str(workdir)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    raise SystemExit("redis-server did not start")


def instructions(stores: Stores, n1: int, n2: int, warmup: int, out: Path,
                 jobs: int) -> dict[str, float]:
    tasks = [(config, n) for config in CONFIGS for n in (n2, n1)]

    def run(task: tuple[str, int]) -> int:
        config, n = task
        cmd = _cmd(config, stores.settings(config), n, warmup, callgrind=True)
        return _results.callgrind(cmd, out / f"callgrind.budgets.{config}.{n}.out", _env())[0]

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        counts = dict(zip(tasks, pool.map(run, tasks)))
    return {c: (counts[(c, n2)] - counts[(c, n1)]) / (n2 - n1) for c in CONFIGS}


def timed(stores: Stores, rounds: int, calls: int, warmup: int
          ) -> dict[str, list[dict[str, Any]]]:
    samples: dict[str, list[dict[str, Any]]] = {c: [] for c in CONFIGS}
    for _ in range(rounds):
        for config in CONFIGS:
            result = _results.spawn(_cmd(config, stores.settings(config), calls, warmup,
                                         callgrind=False), _env())
            if "error" in result:
                raise RuntimeError(f"{config}: {result['error']}\n{result['stderr']}")
            samples[config].append(result)
    return samples


def report(ir: dict[str, float], samples: dict[str, list[dict[str, Any]]],
           settings: dict[str, Any], minutes: float) -> str:
    def median(config: str, key: str) -> float:
        return statistics.median(s[key] / s["calls"] for s in samples[config])

    rate = ir["none"] / (median("none", "cpu_s") * 1e6)  # Ir per µs of the reference
    rows = []
    for config in CONFIGS[1:]:
        added_ir = ir[config] - ir["none"]
        added_cpu = (median(config, "cpu_s") - median("none", "cpu_s")) * 1e6
        added_wall = (median(config, "wall_s") - median("none", "wall_s")) * 1e6
        target = TARGET_US.get(config)
        judged = added_wall if config == "redis" else added_ir / rate
        verdict = "—" if target is None else ("met" if judged <= target else "**not met**")
        last = samples[config][-1]
        rows.append(
            f"| {config} | {ir[config] / 1e6:.3f} M | **{added_ir / 1e3:+,.1f} k** Ir ≈ "
            f"{added_ir / rate:+,.1f} µs | {added_cpu:+,.1f} µs | {added_wall:+,.1f} µs | "
            f"{'≤ %g µs%s' % (target, ' (wall)' if config == 'redis' else '') if target else '—'}"
            f" | {verdict} | {last['counters']} counters, ${last['spent_usd']:.4f} spent, "
            f"${last['reserved_usd']:.4f} reserved |")
    packages = ("openai", "httpx2", "opentelemetry-sdk", "tiktoken", "redis", "otel-llmcost")
    return "\n".join([
        "# Budgets: what a budget check adds to a call", "",
        "Written by `benchmarks/bench_budgets.py --write`; see `benchmarks/README.md`.", "",
        "## Machine", "", *_results.machine(packages, _results.valgrind_version()),
        f"- redis-server: {_redis_version()}", "",
        "## Method", "",
        "- Workload: `client.chat.completions.create` (the overhead benchmark's mocked "
        f"transport: {bench_overhead.PROMPT_TOKENS:,} prompt tokens reported, "
        f"max_tokens {bench_overhead.COMPLETION_TOKENS}) with a system prompt of "
        f"{len(SYSTEM):,} characters (the same every call: its token count is cached after "
        f"the first) and a user question of {len(QUESTION):,} characters that is new every "
        f"call (tokenized every call), inside `otel_llmcost.attributes(customer_id=…, "
        f"customer_tier='free', feature='search')` for {CUSTOMERS} customers in turn.",
        "- Every call falls under three budgets (a monthly global one, a daily per-customer "
        "one for the free tier in New York time, a monthly per-feature one), so each call "
        "reserves and settles three counters. Limits are never reached.",
        "- Configurations, each in its own process: `none` (otel-llmcost, no budgets) and "
        "the `memory`, `sqlite` (a new file per run, WAL) and `redis` (a redis-server on "
        "loopback started by the benchmark, a new key prefix per run) stores, with the "
        "worst case's input tokens counted by tiktoken (the default); `memory-bytes` is the "
        "memory store with `input_estimate: bytes` (the texts' UTF-8 bytes, no tokenizer), "
        "which shows what the tokenizer costs. Spans go through a BatchSpanProcessor to a "
        "null exporter.",
        f"- **Instructions** (primary): `valgrind --tool=callgrind`, switched on after "
        f"{settings['warmup']} warm-up calls, a full collection and `gc.freeze()` (as in "
        "the overhead benchmark); per call = (Ir(N2) − Ir(N1)) / (N2 − N1), "
        f"N1 = {settings['n1']}, N2 = {settings['n2']}. Callgrind counts this process only: "
        "the Redis server's work and the waits for it are not instructions here, hence the "
        "wall-time column. Ir → µs with `none`'s own instructions per µs of CPU measured "
        f"here ({rate:,.0f} Ir/µs).",
        f"- **Time** (secondary, ±25 % run to run here): {settings['rounds']} rounds, each "
        f"configuration once per round ({settings['calls']} calls after the warm-up); added "
        "= median(config) − median(none), CPU (`time.process_time`) and wall "
        "(`time.perf_counter`).",
        "- Targets: ≤ 30 µs per call in memory (on instructions), ≤ 1 ms per call with "
        "Redis on loopback (on wall time: a network round trip is the cost there).",
        f"- Run time: {minutes:.1f} min.", "",
        "## Results", "",
        "| store | Ir per call | added instructions | added CPU time | added wall time | "
        "target | verdict | ledger after the last timed run |",
        "|---|---|---|---|---|---|---|---|",
        f"| none (reference) | {ir['none'] / 1e6:.3f} M | — | "
        f"{median('none', 'cpu_s') * 1e6:,.1f} µs per call | "
        f"{median('none', 'wall_s') * 1e6:,.1f} µs per call | — | — | — |",
        *rows, ""])


def _redis_version() -> str:
    return subprocess.run(["redis-server", "--version"], check=False, capture_output=True,
                          text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("CONFIG", "STORE_JSON"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--callgrind", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=1000, help="calls per timed run")
    parser.add_argument("--warmup", type=int, default=100, help="warm-up calls")
    parser.add_argument("--rounds", type=int, default=7, help="timing rounds")
    parser.add_argument("--n1", type=int, default=100, help="callgrind N1")
    parser.add_argument("--n2", type=int, default=500, help="callgrind N2")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="parallel callgrind runs")
    parser.add_argument("--write", action="store_true", help="also write RESULTS.md")
    args = parser.parse_args()
    if args.child:
        config, store = args.child
        print(json.dumps(child(config, json.loads(store), args.calls, args.warmup,
                               args.callgrind)))
        return
    started, digest = time.monotonic(), _results.source_digest()
    with tempfile.TemporaryDirectory(prefix="bench-budgets-") as tmp:
        workdir = Path(tmp)
        redis, url = start_redis(workdir)
        try:
            stores = Stores(workdir, url)
            print("callgrind…", file=sys.stderr)
            ir = instructions(stores, args.n1, args.n2, args.warmup, workdir, args.jobs)
            print(f"timing ({args.rounds} rounds)…", file=sys.stderr)
            samples = timed(stores, args.rounds, args.calls, args.warmup)
        finally:
            redis.terminate()
            redis.wait(30)
    if _results.source_digest() != digest:
        raise SystemExit("otel_llmcost changed during the run: run again on a stable checkout")
    text = report(ir, samples, vars(args), (time.monotonic() - started) / 60)
    print(text)
    if args.write:
        _results.write_section(text)


if __name__ == "__main__":
    main()
