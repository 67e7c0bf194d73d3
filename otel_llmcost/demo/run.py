"""``otel-llmcost demo``: the whole pipeline on this machine, on a simulated day.

The stand-in provider and the rollup processor run in this process (the processor with
its SQLite state and Prometheus endpoint, on loopback ports); the app is the workload of
`otel_llmcost.demo.workload`, started under the real ``opentelemetry-instrument`` with
OTLP/gRPC to the processor and a Prometheus endpoint for its call metrics. A day passes in
``duration`` seconds. When it is over, the tail-cost figures are read from the pipeline
(the processor's rollups and the app's metrics) and set beside the workload's ground truth.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from otel_llmcost import semconv as sc
from otel_llmcost.demo import workload as wl
from otel_llmcost.demo.prometheus import LocalPrometheus, free_port
from otel_llmcost.demo.provider import StandInProvider
from otel_llmcost.demo.summary import app_sum, print_summary
from otel_llmcost.processor.engine import Config, Histogram
from otel_llmcost.processor.service import Processor
from otel_llmcost.processor.settings import Settings

SERVICE = "llmcost-demo"
# What the demo assumes your tracing backend charges, for llmcost.telemetry.cost.
TELEMETRY_USD_PER_GB = 0.50
TELEMETRY_USD_PER_MILLION_SPANS = 1.70
# With --sample-rate below 1, the app's tail rules keep what a reader drills into.
SAMPLED_RULES = {sc.ENV_KEEP_TOP_PERCENT: "1", sc.ENV_KEEP_ERRORS: "true"}


class DemoClock:
    """The processor's clock: simulated time, held before the played day's end until its
    figures are read (`jump` then moves it past the end, to close everything)."""

    def __init__(self, sim: wl.SimClock, limit_ns: int) -> None:
        self.sim = sim
        self._limit_ns = limit_ns
        self._jumped_ns: int | None = None

    def now(self) -> int:
        if self._jumped_ns is not None:
            return self._jumped_ns
        return min(self.sim.now(), self._limit_ns)

    def jump(self, to_ns: int) -> None:
        self._jumped_ns = to_ns


@dataclass
class Options:
    seed: int = 7
    customers: int = 300
    sessions: int = 900
    duration_s: float = 60.0
    out: Path = Path("llmcost-demo")
    workers: int = 8
    sample_rate: float = 1.0  # < 1: the app samples traces (SAMPLED_RULES keep the tail)
    incidents: bool = True  # False: a clean power-law day (no runaway loop, no surge)
    surge: bool = False  # and a customer's spend surge at 17:00
    logs_endpoint: str | None = None  # the processor's anomaly log records (OTLP/HTTP URL)


class Hooks:
    """Where a caller (the CLI's --prometheus, the tests) can look at the live pipeline."""

    def endpoints(self, processor: str, app: str) -> None:
        """The metrics endpoints (host:port) of the processor and of the app, once up."""

    def pause(self, stage: str) -> None:
        """Everything still running, /metrics showing the stage: ``day`` (the played day's
        windows still open) or ``closed`` (past its end: every trace, conversation and
        window closed)."""


@dataclass
class Outcome:
    """What the pipeline showed, next to the truth."""

    truth: wl.Truth
    app: dict[str, list[tuple[dict[str, str], float]]]  # the app's metrics, by sample name
    gauges: dict[tuple[str, tuple[str, ...]], float]  # the processor's, before the day closed
    histograms: dict[tuple[str, tuple[str, ...]], Histogram]  # …after everything closed
    counters: dict[tuple[str, tuple[str, ...]], float]
    runaway_ids: list[str]
    anomalies: list[dict[str, Any]]  # started and cleared, as GET /anomalies lists them
    incidents: tuple[wl.Incident, ...]  # what was injected, and when
    received_spans: int  # by the processor
    calls: int
    errors: int
    wall_s: float
    files: dict[str, Path] = field(default_factory=dict)


def run_demo(options: Options, on_progress: Any = None, hooks: Hooks = Hooks()) -> Outcome:
    """Play the day through the whole pipeline and collect what it shows."""
    started = time.monotonic()
    options.out.mkdir(parents=True, exist_ok=True)
    workload = wl.plan(options.seed, options.customers, options.sessions,
                       incidents=options.incidents, surge=options.surge)
    truth = workload.truth()
    speed = 86_400 / options.duration_s
    sim = wl.SimClock(workload.day_start_ns, time.time_ns() + 3 * wl.NS, speed)  # 3 s to start
    clock = DemoClock(sim, workload.day_start_ns + wl.DAY_NS - wl.NS)
    state = options.out / "processor.db"
    for stale in (*options.out.glob("processor.db*"), *options.out.glob("budgets.db*")):
        stale.unlink()
    budgets = write_budgets(options.out)
    grpc_port, metrics_port, app_port = free_port(), free_port(), free_port()
    settings = Settings(
        grpc_endpoint=f"127.0.0.1:{grpc_port}", http_endpoint=None,
        metrics_endpoint=f"127.0.0.1:{metrics_port}", state_path=str(state),
        checkpoint_s=1.0, logs_endpoint=options.logs_endpoint,
        # A day in a minute: spans arrive minutes of simulated time late, so windows and
        # anomaly buckets wait 30 simulated minutes. No customer of the day normally
        # spends $25 an hour.
        engine=Config(trace_wait_s=30.0, trace_idle_s=3600.0, window_grace_s=1800.0,
                      anomaly_min_usd_per_hour=25.0))
    provider = StandInProvider().start()
    processor = Processor(settings, clock=clock.now)
    processor.start()
    app = None
    try:
        app = subprocess.Popen(
            [str(Path(sys.executable).with_name("opentelemetry-instrument")), sys.executable,
             "-m", "otel_llmcost.demo.workload", "--provider", provider.url,
             "--seed", str(options.seed), "--customers", str(options.customers),
             "--sessions", str(options.sessions), "--day-start-ns", str(sim.sim_start_ns),
             "--wall-start-ns", str(sim.wall_start_ns), "--speed", str(speed),
             "--workers", str(options.workers)] + ([] if options.incidents else ["--clean"])
            + (["--surge"] if options.surge else []),
            env={**_app_env(grpc_port, app_port, options.sample_rate),
                 sc.ENV_BUDGETS_FILE: str(budgets)}, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(options.out / "app.log", "w"), text=True)
        hooks.endpoints(f"127.0.0.1:{metrics_port}", f"127.0.0.1:{app_port}")
        calls = errors = 0
        assert app.stdout is not None and app.stdin is not None
        for line in app.stdout:
            report = json.loads(line)
            calls, errors = report["calls"], report["errors"]
            if on_progress is not None:
                on_progress(calls, truth.calls, sim.now())
            if report.get("done"):
                break
        else:
            raise RuntimeError(f"the demo app stopped: see {options.out / 'app.log'}")
        app_metrics = _scrape(app_port, options.out / "app-metrics.txt")
        exported = app_sum(app_metrics, sc.M_TELEMETRY_SPANS_EXPORTED.prometheus)
        received = _wait_drained(processor, round(exported))
        # The day's windows are still open: their gauges are the whole day's figures.
        _wait_published(processor, clock.now())
        with processor.lock:
            gauges = {(m.name, labels): v for m, labels, v in processor.engine.gauges()}
        hooks.pause("day")
        # Then past the day's end: every trace, conversation and window closes.
        clock.jump(workload.day_start_ns + wl.DAY_NS + 6 * 3600 * wl.NS)
        _wait_published(processor, clock.now())
        with processor.lock:
            metrics = processor.engine.metrics
            histograms = {(m.name, labels): h for (m, labels), h in metrics.histograms.items()}
            counters = {(m.name, labels): v for (m, labels), v in metrics.counters.items()}
            runaways = [e.trace_id for e in processor.engine.traces.runaways]
        _wait_published(processor, clock.now())
        anomalies = processor.anomalies()["recent"]
        hooks.pause("closed")
        app.stdin.write("\n")
        app.stdin.flush()
        app.wait(timeout=30)
    finally:
        if app is not None and app.poll() is None:
            app.kill()
        processor.stop()
        provider.stop()
    outcome = Outcome(truth, app_metrics, gauges, histograms, counters, runaways, anomalies,
                      workload.incidents, received, calls, errors, time.monotonic() - started)
    truth_path = options.out / "truth.json"
    truth_path.write_text(truth.to_json())
    outcome.files.update(truth=truth_path, state=state, app_log=options.out / "app.log",
                         app_metrics=options.out / "app-metrics.txt")
    return outcome


# The demo app's budgets: never enforced (every planned call is made, so the truth holds),
# so the would-be refusals show what enforcing them would do. Per-customer limits at the
# scale of the demo's days, where most customers spend cents and the top few dollars.
BUDGETS = {"store": "sqlite", "budgets": [
    {"name": "customer-daily", "each_customer": True, "soft_usd": 1.0, "hard_usd": 2.5},
    {"name": "research-agent-monthly", "feature": "research-agent", "period": "month",
     "soft_usd": 30.0, "hard_usd": 60.0},
    {"name": "everything-monthly", "period": "month", "soft_usd": 60.0, "hard_usd": 200.0},
]}


def write_budgets(out: Path) -> Path:
    """The budgets file of the demo app (LLMCOST_BUDGETS_FILE), its SQLite store in ``out``."""
    path = out / "budgets.yaml"
    path.write_text(yaml.safe_dump({**BUDGETS, "sqlite_path": str(out / "budgets.db")},
                                   sort_keys=False))
    return path


def _app_env(grpc_port: int, metrics_port: int, sample_rate: float) -> dict[str, str]:
    env = dict(os.environ)
    if sample_rate < 1:
        env.update({"OTEL_TRACES_SAMPLER": sc.ENTRY_POINT_SAMPLER,
                    sc.ENV_SAMPLE_RATE: str(sample_rate), **SAMPLED_RULES})
    env.update({
        "OTEL_SERVICE_NAME": SERVICE,
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{grpc_port}",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
        "OTEL_METRICS_EXPORTER": "prometheus",
        "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
        "OTEL_EXPORTER_PROMETHEUS_PORT": str(metrics_port),
        "OTEL_LOGS_EXPORTER": "none",
        # Export often: a simulated day passes in a minute, and the processor's windows
        # are cut by the spans' (simulated) times.
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_BSP_MAX_QUEUE_SIZE": "65536",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "2048",
        sc.ENV_TELEMETRY_USD_PER_GB: str(TELEMETRY_USD_PER_GB),
        sc.ENV_TELEMETRY_USD_PER_MILLION_SPANS: str(TELEMETRY_USD_PER_MILLION_SPANS),
        # anthropic 2.x traces its own calls too; the demo keeps only otel-llmcost's.
        "ANTHROPIC_OPEN_TELEMETRY": "false",
    })
    return env


def _scrape(port: int, keep: Path) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The app's metrics (also kept in ``keep``, as scraped)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    keep.write_text(text)
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


def _wait_drained(processor: Processor, exported: int, timeout_s: float = 60.0) -> int:
    """Until the processor has rolled up the ``exported`` spans the app sent, and no new
    span for a second; the spans it received."""
    deadline, last, still = time.monotonic() + timeout_s, -1, 0
    while time.monotonic() < deadline:
        received = sum(processor.stats.snapshot().received_spans.values())
        if received == last and processor.queued() == 0:
            still += 1
            if still >= 4 and received >= exported:
                return received
        else:
            still = 0
        last = received
        time.sleep(0.25)
    raise RuntimeError("the processor did not receive the demo's spans in time")


def _wait_published(processor: Processor, since_ns: int, timeout_s: float = 30.0) -> None:
    """Until /metrics shows a checkpoint saved at ``since_ns`` or later (the engine thread
    has rolled up to that time: it advances before it checkpoints)."""
    processor.request_checkpoint()
    deadline = time.monotonic() + timeout_s
    while (processor.published_ns or 0) < since_ns:
        if time.monotonic() > deadline:
            raise RuntimeError("the processor wrote no checkpoint")
        time.sleep(0.1)


class PrometheusHooks(Hooks):
    """``--prometheus``: a local Prometheus scrapes the demo's processor and app."""

    def __init__(self, directory: Path) -> None:
        self.prometheus = LocalPrometheus(directory)

    def endpoints(self, processor: str, app: str) -> None:
        self.prometheus.start({SERVICE: app, sc.PROCESSOR_COMMAND: processor})


def main_demo(argv: list[str] | None = None) -> None:
    """Entry of ``otel-llmcost demo`` (see otel_llmcost.cli)."""
    from otel_llmcost.demo.report import write_report
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    import argparse
    parser = argparse.ArgumentParser(prog="otel-llmcost demo", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=Options.seed)
    parser.add_argument("--customers", type=int, default=Options.customers)
    parser.add_argument("--sessions", type=int, default=Options.sessions,
                        help="conversations in the day (default %(default)s)")
    parser.add_argument("--duration", type=float, default=Options.duration_s,
                        help="seconds the simulated day takes (default %(default)s)")
    parser.add_argument("--out", type=Path, default=Options.out,
                        help="directory for the report, the truth and the state")
    parser.add_argument("--sample-rate", type=float, default=Options.sample_rate,
                        help="the app's trace sampling rate (default %(default)s: every "
                             "trace); below 1 the top-1 %% and failed traces are still kept, "
                             "the processor weights the rest, and the cost metrics stay exact")
    parser.add_argument("--clean", action="store_true",
                        help="a clean day: without the runaway agent loop and the customer's "
                             "spend surge (at 17:00) that the anomaly detector catches")
    parser.add_argument("--truth", action="store_true",
                        help="print the day's ground truth (JSON: spend per customer and per "
                             "conversation, call counts) without playing it, and exit")
    parser.add_argument("--prometheus", action="store_true",
                        help="also run the prometheus binary on the PATH against the demo, "
                             "and keep everything up at the end until Ctrl-C")
    args = parser.parse_args(argv)
    if args.truth:
        print(wl.plan(args.seed, args.customers, args.sessions, incidents=not args.clean,
                      surge=not args.clean).truth().to_json())
        return
    console = Console()
    hooks = PrometheusHooks(args.out / "prometheus") if args.prometheus else Hooks()
    options = Options(args.seed, args.customers, args.sessions, args.duration, args.out,
                      sample_rate=args.sample_rate, incidents=not args.clean,
                      surge=not args.clean)
    console.print(f"[bold]otel-llmcost demo[/]: a simulated day of {args.sessions} "
                  f"conversations of {args.customers} customers in {args.duration:g} s, "
                  "through the real SDKs, instrumentation, OTLP and rollup processor.")
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                  TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("calls", total=None, info="starting")

        def on_progress(calls: int, planned: int, sim_ns: int) -> None:
            clock = time.strftime("%H:%M", time.gmtime(sim_ns / wl.NS))
            bar.update(task, completed=calls, total=planned,
                       info=f"{calls:,}/{planned:,} calls, simulated {clock} UTC")

        try:
            outcome = run_demo(options, on_progress, hooks)
        except BaseException:
            if isinstance(hooks, PrometheusHooks):
                hooks.prometheus.stop()
            raise
    f = print_summary(outcome, console)
    outcome.files["report"] = write_report(f, args.out / "report.html")
    for name, path in outcome.files.items():
        console.print(f"{name}: {path}")
    if isinstance(hooks, PrometheusHooks):
        console.print(f"Prometheus keeps what it scraped at {hooks.prometheus.url} (jobs "
                      f"{SERVICE} and {sc.PROCESSOR_COMMAND}); Ctrl-C to stop it.")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            hooks.prometheus.stop()
