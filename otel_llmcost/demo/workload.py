"""The demo's workload: one simulated day of an LLM product, seeded and reproducible.

`plan` draws it: customers from a power law (a few accounts carry much of the spend), an
off-hours cohort that is active at night with bigger contexts, multi-turn conversations
whose context grows every turn, research agents that fan out into tool calls, prompt-cache
hits and misses (and a cold-cache hour after a deploy), SDK retries on 429/5xx, a few calls
that fail for good, one call to a model no price covers, and incidents (unless
``incidents=False``): a runaway agent loop at 15:00 and, with ``surge=True``, a customer's
script hammering an expensive model from 17:00 (`Incident` says who and when). It
knows its ground truth (`Truth`: spend per customer and per conversation, priced by the
same book the instrumentation uses, from the token counts the stand-in will report).

`run` plays it through the real ``openai`` and ``anthropic`` SDKs against the stand-in
provider, in simulated time: a day passes in ``duration`` seconds, and the OpenTelemetry
SDK's clock is the simulated one, so spans carry the simulated times the processor's hourly
and daily windows are cut by. Run it under ``opentelemetry-instrument`` (``otel-llmcost demo``
does) so that the instrumentation is the real one::

    opentelemetry-instrument python -m otel_llmcost.demo.workload --provider URL ...
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from otel_llmcost import pricing, semconv as sc
from otel_llmcost.demo.provider import Scenario
from otel_llmcost.usage import Usage

NS = 1_000_000_000
DAY_NS = 86_400 * NS
RUNAWAY_CALLS = 60  # the one agent loop that does not stop
RUNAWAY_HOUR = 15
# The surge (optional): a script calling gpt-4.1 with a 300k-token document every 30 s for
# 12 minutes, about $73 an hour where no customer of the demo's day normally passes $10.
# Few big calls, so that the rate holds when the demo plays a day in seconds.
SURGE_HOUR, SURGE_CALLS, SURGE_EVERY_S, SURGE_INPUT = 17, 24, 30, 300_000
UNPRICED_MODEL = "gpt-9-preview"  # a model no price book has yet
TOOLS = ("search_kb", "lookup_order", "fetch_url", "run_sql")
# Service tiers the stand-in reports, as the instrumentation prices them.
TIERS = {sc.PROVIDER_OPENAI: "default", sc.PROVIDER_ANTHROPIC: "standard"}


@dataclass(frozen=True)
class Call:
    """One LLM call, with the token counts the stand-in will report (normalised `Usage`
    meaning: ``input`` counts every input token, cache reads and writes included)."""

    provider: str
    model: str
    input: int
    output: int
    cache_read: int = 0
    cache_write: int = 0
    stream: bool = False
    retry_status: int = 0  # fail once with this status; the SDK's retry succeeds
    fails: bool = False  # fail every attempt: the SDK gives up, nothing is billed

    def usage(self) -> Usage:
        return Usage(input_tokens=self.input, output_tokens=self.output,
                     cache_read_tokens=self.cache_read, cache_write_tokens=self.cache_write)

    def cost(self) -> float | None:
        """What the call costs (None: no price known; 0: failed, nothing billed)."""
        if self.fails:
            return 0.0
        return pricing.price(self.provider, self.model, self.usage(),
                             service_tier=TIERS[self.provider]).amount

    def scenario(self) -> Scenario:
        """The stand-in's instructions, in each provider's own token semantics."""
        if self.provider == sc.PROVIDER_OPENAI:  # prompt_tokens include cached ones
            tokens = dict(input_tokens=self.input, cached_tokens=self.cache_read)
        else:  # Anthropic's input_tokens exclude cache reads and writes
            tokens = dict(input_tokens=self.input - self.cache_read - self.cache_write,
                          cached_tokens=self.cache_read, cache_write_5m=self.cache_write)
        if self.fails:
            return Scenario(error_status=500, **tokens)
        if self.retry_status:
            return Scenario(fail_times=1, fail_status=self.retry_status,
                            output_tokens=self.output, **tokens)
        return Scenario(output_tokens=self.output, **tokens)


@dataclass(frozen=True)
class Turn:
    """One trace: a chat turn (one call) or an agent run (calls with tools between)."""

    calls: tuple[Call, ...]
    agent: bool = False


@dataclass(frozen=True)
class Session:
    """A conversation: its turns, a few simulated minutes apart."""

    start_ns: int  # simulated
    customer: str
    conversation: str
    feature: str
    turns: tuple[Turn, ...]
    gap_ns: int  # think time between turns


@dataclass(frozen=True)
class Incident:
    """Something the anomaly detector should catch: what, whose, and when it starts. Its
    session is played on a thread of its own, so it starts on time."""

    kind: str  # semconv.ANOMALY_RUNAWAY_TRACE or ANOMALY_CUSTOMER (the global total too)
    customer: str
    start_ns: int  # simulated
    conversation: str


@dataclass
class Truth:
    """What the workload spends, by construction."""

    customers: dict[str, float] = field(default_factory=dict)
    conversations: dict[str, float] = field(default_factory=dict)
    calls: int = 0
    priced_calls: int = 0
    unpriced_calls: int = 0
    failed_calls: int = 0
    retried_calls: int = 0
    traces: int = 0
    runaway_traces: int = 0

    @property
    def total(self) -> float:
        return sum(self.customers.values())

    def top_share(self, percent: float) -> float:
        """Share of spend of the top ``percent`` % of customers (at least one)."""
        ranked = sorted(self.customers.values(), reverse=True)
        k = max(1, math.ceil(len(ranked) * percent / 100))
        return sum(ranked[:k]) / self.total if ranked else 0.0

    def to_json(self) -> str:
        """The truth as the demo writes it (truth.json) and prints it (--truth)."""
        return json.dumps(asdict(self), indent=1, sort_keys=True)


@dataclass(frozen=True)
class Plan:
    day_start_ns: int  # simulated: UTC midnight of the day played
    sessions: tuple[Session, ...]
    incidents: tuple[Incident, ...] = ()

    def truth(self) -> Truth:
        truth = Truth()
        customers: dict[str, float] = defaultdict(float)
        conversations: dict[str, float] = defaultdict(float)
        for session in self.sessions:
            conversations[session.conversation] += 0.0  # known, even if nothing is priced
            for turn in session.turns:
                truth.traces += 1
                truth.runaway_traces += len(turn.calls) > RUNAWAY_CALLS // 2
                for call in turn.calls:
                    truth.calls += 1
                    truth.failed_calls += call.fails
                    truth.retried_calls += bool(call.retry_status)
                    cost = call.cost()
                    if cost is None:
                        truth.unpriced_calls += 1
                        continue
                    truth.priced_calls += not call.fails
                    customers[session.customer] += cost
                    conversations[session.conversation] += cost
        truth.customers, truth.conversations = dict(customers), dict(conversations)
        return truth


def plan(seed: int = 7, customers: int = 300, sessions: int = 900,
         day_start_ns: int | None = None, incidents: bool = True, surge: bool = False
         ) -> Plan:
    """A day of traffic: ``sessions`` conversations of ``customers`` customers, and the
    incidents unless ``incidents`` is False (a clean power-law day)."""
    rng = random.Random(seed)
    if day_start_ns is None:  # yesterday (UTC): every hour of it is in the past
        day_start_ns = (time.time_ns() // DAY_NS - 1) * DAY_NS
    ids = [f"cust-{i:04d}" for i in range(customers)]
    weights = [1 / (rank + 1) ** 1.3 for rank in range(customers)]
    night = set(rng.sample(ids[customers // 20:], max(1, customers // 10)))  # off-hours cohort
    found: list[Session] = []
    for number in range(sessions):
        customer = rng.choices(ids, weights)[0]
        off_hours = customer in night
        # Sessions start by 19:59 and last at most 4 hours: the day holds all of them.
        hour = (rng.choice((0, 1, 2, 3, 4, 5)) if off_hours
                else min(19, max(6, round(rng.gauss(13, 3.5)))))
        start = day_start_ns + hour * 3600 * NS + rng.randrange(3600) * NS
        # The night cohort runs research agents over big documents: few people, much spend.
        feature = "research-agent" if off_hours else rng.choices(
            ("support-chat", "research-agent", "code-review"), (6, 2, 2))[0]
        cold_cache = 9 <= hour < 10  # a deploy at 09:00 invalidated the prompt cache
        turns = _turns(rng, feature, off_hours, cold_cache)
        found.append(Session(start, customer, f"conv-{seed}-{number:05d}", feature,
                             turns, rng.randrange(60, 600) * NS))
    found_incidents: list[Incident] = []
    if incidents:
        # The runaway: an agent loop that keeps calling the model, mid-afternoon.
        loop = tuple(Call(sc.PROVIDER_OPENAI, "gpt-4.1", 3000 + 400 * i, 300)
                     for i in range(RUNAWAY_CALLS))
        runaway = Session(day_start_ns + RUNAWAY_HOUR * 3600 * NS, ids[customers // 2],
                          f"conv-{seed}-runaway", "research-agent", (Turn(loop, agent=True),),
                          60 * NS)
        found.append(runaway)
        found_incidents.append(Incident(sc.ANOMALY_RUNAWAY_TRACE, runaway.customer,
                                        runaway.start_ns, runaway.conversation))
    if incidents and surge:
        script = tuple(Turn((Call(sc.PROVIDER_OPENAI, "gpt-4.1", SURGE_INPUT, 300),))
                       for _ in range(SURGE_CALLS))
        burst = Session(day_start_ns + SURGE_HOUR * 3600 * NS, ids[customers // 3],
                        f"conv-{seed}-surge", "bulk-summaries", script, SURGE_EVERY_S * NS)
        found.append(burst)
        found_incidents.append(Incident(sc.ANOMALY_CUSTOMER, burst.customer, burst.start_ns,
                                        burst.conversation))
    # One call to a model no price covers (its spend is missing, and shown as such).
    found.append(Session(day_start_ns + 11 * 3600 * NS, ids[3], f"conv-{seed}-unpriced",
                         "support-chat", (Turn((Call(sc.PROVIDER_OPENAI, UNPRICED_MODEL,
                                                     1200, 200),)),), 60 * NS))
    found.sort(key=lambda s: s.start_ns)
    return Plan(day_start_ns, tuple(found), tuple(found_incidents))


def _turns(rng: random.Random, feature: str, off_hours: bool, cold_cache: bool
           ) -> tuple[Turn, ...]:
    count = min(24, 1 + int(rng.expovariate(1 / 3.0)))  # many short, a few long
    base = rng.randrange(800, 2500) * (4 if off_hours else 1)  # night users paste more
    step = rng.randrange(1000, 3000)  # what each turn adds: the history grows
    turns = []
    for index in range(count):
        context = base + index * step
        if feature == "code-review":  # Anthropic, a long system prompt cached
            system = 6000
            write = system if index == 0 or cold_cache else 0
            read = 0 if write else system
            calls: tuple[Call, ...] = (Call(sc.PROVIDER_ANTHROPIC, "claude-sonnet-4-5",
                                            context + system, rng.randrange(300, 1200),
                                            cache_read=read, cache_write=write,
                                            stream=rng.random() < 0.3,
                                            **_failure(rng)),)
            turns.append(Turn(calls))
        elif feature == "research-agent":
            calls = tuple(Call(sc.PROVIDER_OPENAI, "gpt-4.1", context + 1500 * step_no,
                               rng.randrange(150, 600),
                               cache_read=1024 if step_no or index else 0, **_failure(rng))
                          for step_no in range(rng.randrange(2, 6)))
            turns.append(Turn(calls, agent=True))
        else:
            provider, model = rng.choice(((sc.PROVIDER_OPENAI, "gpt-4o-mini"),
                                          (sc.PROVIDER_ANTHROPIC, "claude-haiku-4-5")))
            read = 1024 if index and provider == sc.PROVIDER_OPENAI else 0
            turns.append(Turn((Call(provider, model, context, rng.randrange(80, 500),
                                    cache_read=read, stream=rng.random() < 0.25,
                                    **_failure(rng)),)))
    return tuple(turns)


def _failure(rng: random.Random) -> dict[str, Any]:
    roll = rng.random()
    if roll < 0.004:
        return {"fails": True}
    if roll < 0.04:
        return {"retry_status": rng.choice((429, 500, 503))}
    return {}


# --------------------------------------------------------------------------- simulated time


@dataclass(frozen=True)
class SimClock:
    """Simulated time: ``speed`` simulated seconds per real second from ``wall_start``."""

    sim_start_ns: int
    wall_start_ns: int
    speed: float

    def now(self) -> int:
        return self.sim_start_ns + int((time.time_ns() - self.wall_start_ns) * self.speed)

    def wall_at(self, sim_ns: int) -> float:
        """The real time (Unix seconds) at which ``sim_ns`` comes."""
        return (self.wall_start_ns + (sim_ns - self.sim_start_ns) / self.speed) / NS


def use_simulated_time(clock: SimClock) -> None:
    """Make the OpenTelemetry SDK stamp spans with simulated time (the demo's, not the
    product's: an instrumented app keeps the real clock)."""
    import opentelemetry.sdk.trace as sdk_trace
    sdk_trace.time_ns = clock.now  # the SDK reads span start and end times through it


# ------------------------------------------------------------------------------------ run


class Progress:
    """Counters the orchestrator shows while the day plays (thread-safe)."""

    def __init__(self) -> None:
        self.calls = 0
        self.errors = 0
        self._lock = threading.Lock()

    def called(self, error: bool) -> None:
        with self._lock:
            self.calls += 1
            self.errors += error


def run(workload: Plan, provider_url: str, clock: SimClock, workers: int = 8,
        progress: Progress | None = None) -> Progress:
    """Play every session at its simulated time, ``workers`` conversations at a time."""
    import anthropic
    import openai
    from opentelemetry import trace

    import otel_llmcost

    progress = progress or Progress()
    tracer = trace.get_tracer("otel_llmcost.demo")
    oai = openai.OpenAI(base_url=provider_url + "/v1", api_key="demo", max_retries=2)
    claude = anthropic.Anthropic(base_url=provider_url, api_key="demo", max_retries=2)
    # The SDKs back off before a retry (about half a second): here it is simulated too.
    oai = oai.with_options(timeout=30)
    claude = claude.with_options(timeout=30)

    def call(c: Call) -> None:
        headers = c.scenario().headers()
        messages = [{"role": "user", "content": "Continue."}]
        try:
            if c.provider == sc.PROVIDER_OPENAI:
                response = oai.chat.completions.create(
                    model=c.model, messages=messages, stream=c.stream, max_tokens=2048,
                    extra_headers=headers)
            else:
                response = claude.messages.create(
                    model=c.model, messages=messages, stream=c.stream, max_tokens=2048,
                    extra_headers=headers)
            if c.stream:
                for _ in response:
                    pass
        except (openai.APIError, anthropic.APIError):
            progress.called(error=True)  # the app carries on, as a real one would
            return
        progress.called(error=False)

    def play(session: Session) -> None:
        at = session.start_ns
        for turn in session.turns:
            delay = clock.wall_at(at) - time.time()
            if delay > 0:
                time.sleep(delay)
            with otel_llmcost.attributes(customer_id=session.customer,
                                         conversation_id=session.conversation,
                                         feature=session.feature):
                if turn.agent:
                    with tracer.start_as_current_span(
                            "invoke_agent research", attributes={
                                sc.GEN_AI_OPERATION_NAME: "invoke_agent"}):
                        for number, c in enumerate(turn.calls):
                            call(c)
                            if number < len(turn.calls) - 1:
                                with tracer.start_as_current_span(
                                        f"execute_tool {TOOLS[number % len(TOOLS)]}",
                                        attributes={sc.GEN_AI_OPERATION_NAME: "execute_tool"}):
                                    pass
                else:
                    with tracer.start_as_current_span(f"turn {session.feature}"):
                        for c in turn.calls:
                            call(c)
            at += session.gap_ns

    on_time = {incident.conversation for incident in workload.incidents}
    incidents = [threading.Thread(target=play, args=(s,), name="demo-incident")
                 for s in workload.sessions if s.conversation in on_time]
    for thread in incidents:
        thread.start()
    with ThreadPoolExecutor(workers, thread_name_prefix="demo-user") as pool:
        for future in [pool.submit(play, s) for s in workload.sessions
                       if s.conversation not in on_time]:
            future.result()
    for thread in incidents:
        thread.join()
    return progress


def parser() -> argparse.ArgumentParser:
    """The demo app's command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", required=True, help="the stand-in provider's URL")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--sessions", type=int, default=900)
    parser.add_argument("--day-start-ns", type=int,
                        help="the simulated day's UTC midnight (default: today's)")
    parser.add_argument("--wall-start-ns", type=int,
                        help="the real time the simulated day starts at (default: its "
                             "midnight, so that simulated time is real time at speed 1)")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="simulated seconds per real second (default 1: real time)")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--clean", action="store_true",
                        help="no incidents: a clean power-law day")
    parser.add_argument("--surge", action="store_true",
                        help="add a customer's spend surge at 17:00")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """The instrumented demo app: play the planned day, then report on stdout (JSON lines)."""
    args = parser().parse_args(argv)
    day_start = args.day_start_ns if args.day_start_ns is not None else (
        time.time_ns() // DAY_NS * DAY_NS)
    clock = SimClock(day_start, args.wall_start_ns if args.wall_start_ns is not None
                     else day_start, args.speed)
    use_simulated_time(clock)
    workload = plan(args.seed, args.customers, args.sessions, day_start,
                    incidents=not args.clean, surge=args.surge)
    progress = Progress()
    done = threading.Event()

    def report() -> None:
        while not done.wait(0.5):
            print(json.dumps({"calls": progress.calls, "errors": progress.errors}), flush=True)

    reporter = threading.Thread(target=report, daemon=True)
    reporter.start()
    run(workload, args.provider, clock, args.workers, progress)
    done.set()
    from opentelemetry import trace
    # Spans out now; metrics are pulled (flushing the Prometheus reader would queue a second
    # copy of every series for the next scrape).
    flush = getattr(trace.get_tracer_provider(), "force_flush", None)
    if flush is not None:
        flush()
    print(json.dumps({"calls": progress.calls, "errors": progress.errors, "done": True}),
          flush=True)
    sys.stdin.readline()  # the orchestrator reads our metrics endpoint, then lets us go


if __name__ == "__main__":
    main()
