"""A seeded agent workload, run under ``opentelemetry-instrument`` by tests/test_tail_e2e.py.

Why: the tail sampler must be judged on what the real command and the real OTLP exporter
ship, so this app knows nothing of the sampler: it makes real ``openai``/``anthropic``
SDK calls over HTTP to the stand-in provider (``WORKLOAD_PROVIDER_URL``), nests them in
its own spans as an agent would, and writes the ground truth the test compares the
exported telemetry with (``WORKLOAD_TRUTH``): per trace, its id, its kind and exactly how
many spans were started in this process (the instrumentation adds one CLIENT span per
LLM call).

Modes (``WORKLOAD_MODE``):

* ``mixed``: ``WORKLOAD_CHEAP`` / ``_EXPENSIVE`` / ``_FAILING`` / ``_SLOW`` traces,
  shuffled with ``WORKLOAD_SEED``. Expensive traces cost about $0.29 in two calls of which
  neither reaches $0.25 alone; a failing trace has one call answered HTTP 500; a slow
  trace has one call answered after ``WORKLOAD_SLOW_DELAY_MS``. ``WORKLOAD_PROMPT_CHARS``
  sets the length of each prompt (content-capture tests). The second call of a trace goes
  to Anthropic when ``WORKLOAD_ANTHROPIC=1``, else to OpenAI (importing the anthropic SDK
  costs more start-up time than most runs' whole workload).
* ``front``: the caller half of a two-service trace: ``WORKLOAD_CHEAP`` / ``_EXPENSIVE``
  / ``_FAILING`` traces each call the service at ``WORKLOAD_BACKEND_URL``
  (tests/apps/tail_service.py), which does the expensive or failing LLM call, with the
  context propagated in W3C headers.
* ``flood``: ``WORKLOAD_FLOOD`` root spans that never end (references dropped), each
  with one ended child; records tracemalloc's traced memory at half-way and at the end.
"""

from __future__ import annotations

import gc
import json
import os
import random
import tracemalloc
import urllib.error
import urllib.request
from typing import Any

from opentelemetry import metrics, propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_llmcost.demo.provider import Scenario

tracer = trace.get_tracer("tail_workload")

SYSTEM = "You are a careful planning agent. Answer briefly. "
FILLER = "the quick brown fox jumps over the lazy dog while the agent keeps planning; "


def _int(name: str, default: int = 0) -> int:
    return int(os.environ.get(name, default))


def _text(label: str, chars: int) -> str:
    """A prompt that starts with a unique label, ``chars`` long (at least the label)."""
    head = f"[{label}] "
    return head + (FILLER * (chars // len(FILLER) + 1))[: max(0, chars - len(head))]


class Workload:
    """LLM clients pointed at the stand-in provider, and the ground truth being written."""

    def __init__(self) -> None:
        import openai  # here, not at the top: the flood needs no SDK

        url = os.environ["WORKLOAD_PROVIDER_URL"]
        self.oai = openai.OpenAI(base_url=url + "/v1", api_key="test", max_retries=0,
                                 timeout=60)
        self.errors: tuple[type[Exception], ...] = (openai.APIStatusError,)
        self.claude: Any = None
        if os.environ.get("WORKLOAD_ANTHROPIC") == "1":
            import anthropic

            self.claude = anthropic.Anthropic(base_url=url, api_key="test", max_retries=0,
                                              timeout=60)
            self.errors += (anthropic.APIStatusError,)
        self.rng = random.Random(_int("WORKLOAD_SEED", 1))
        self.prompt_chars = _int("WORKLOAD_PROMPT_CHARS", 40)
        self.slow_delay_ms = _int("WORKLOAD_SLOW_DELAY_MS", 0)
        self.spans = 0  # spans started in the current trace
        self.texts: list[str] = []  # every text sent in the current trace

    def span(self, name: str, **kwargs: Any) -> Any:
        self.spans += 1
        return tracer.start_as_current_span(name, **kwargs)

    def openai_call(self, label: str, model: str, scenario: Scenario) -> None:
        prompt = _text(label, self.prompt_chars)
        self.texts += [SYSTEM, prompt]
        self.spans += 1  # the instrumentation's CLIENT span
        self.oai.chat.completions.create(
            model=model, max_tokens=64, extra_headers=scenario.headers(),
            messages=[{"role": "system", "content": SYSTEM},
                      {"role": "user", "content": prompt}])

    def anthropic_call(self, label: str, model: str, scenario: Scenario) -> None:
        prompt = _text(label, self.prompt_chars)
        self.texts += [SYSTEM, prompt]
        self.spans += 1  # the instrumentation's CLIENT span
        self.claude.messages.create(
            model=model, max_tokens=64, system=SYSTEM, extra_headers=scenario.headers(),
            messages=[{"role": "user", "content": prompt}])

    def small(self, **extra: Any) -> Scenario:
        return Scenario(input_tokens=self.rng.randint(20, 2000),
                        output_tokens=self.rng.randint(5, 300), **extra)

    def respond_call(self, label: str, model: str, scenario: Scenario) -> None:
        if self.claude is not None:
            self.anthropic_call(label, model, scenario)
        else:
            self.openai_call(label, model, scenario)

    def agent_trace(self, index: int, kind: str) -> dict[str, Any]:
        """One agent run: plan (an OpenAI call), 0-2 tools, respond (a second call)."""
        self.spans, self.texts = 0, []
        rng = self.rng
        plan = self.small()
        respond = self.small()
        fail_in = rng.choice(("plan", "respond"))
        fail_escapes = rng.random() < 0.5  # the error reaches the root span, or is handled
        plan_model = "gpt-4o-mini"
        respond_model = "claude-haiku-4-5" if self.claude is not None else "gpt-4o-mini"
        if kind == "expensive":
            # $0.175 + $0.01, then $0.09 + $0.015 (Claude) or $0.1 + $0.01 (GPT-4o):
            # only their sum reaches $0.25.
            plan_model, plan = "gpt-4o", Scenario(input_tokens=70_000, output_tokens=1000)
            if self.claude is not None:
                respond_model = "claude-sonnet-4-5"
                respond = Scenario(input_tokens=30_000, output_tokens=1000)
            else:
                respond_model = "gpt-4o"
                respond = Scenario(input_tokens=40_000, output_tokens=1000)
        elif kind == "failing":
            broken = Scenario(error_status=500)
            plan, respond = (broken, respond) if fail_in == "plan" else (plan, broken)
        elif kind == "slow":
            plan = self.small(delay_ms=self.slow_delay_ms)
        tools = rng.randint(0, 2)
        try:
            with self.span("agent.run") as root:
                root.set_attribute("workload.kind", kind)
                trace_id = format(root.get_span_context().trace_id, "032x")
                try:
                    with self.span("plan"):
                        self.openai_call(f"{index}/plan", plan_model, plan)
                    for number in range(tools):
                        with self.span("tool") as tool:
                            tool.set_attribute("tool.number", number)
                    with self.span("respond"):
                        self.respond_call(f"{index}/respond", respond_model, respond)
                except self.errors:
                    if fail_escapes:
                        raise
        except self.errors:
            pass  # recorded on the spans it crossed (status ERROR)
        return {"trace_id": trace_id, "kind": kind, "spans": self.spans, "texts": self.texts}

    def front_trace(self, index: int, kind: str, backend: str) -> dict[str, Any]:
        """Plan locally, then call the backend service, which makes the kind's LLM call."""
        self.spans, self.texts = 0, []
        with self.span("agent.run") as root:
            root.set_attribute("workload.kind", kind)
            trace_id = format(root.get_span_context().trace_id, "032x")
            with self.span("plan"):
                self.openai_call(f"{index}/plan", "gpt-4o-mini", self.small())
            with self.span("call.backend", kind=SpanKind.CLIENT) as call:
                headers = {"Content-Type": "application/json"}
                propagate.inject(headers)
                request = urllib.request.Request(
                    backend + "/work", data=json.dumps({"kind": kind}).encode(),
                    headers=headers, method="POST")
                try:
                    with urllib.request.urlopen(request, timeout=60) as answer:
                        answer.read()
                except urllib.error.HTTPError as error:
                    call.set_attribute("http.response.status_code", error.code)
                    call.set_status(Status(StatusCode.ERROR, f"backend answered {error.code}"))
        return {"trace_id": trace_id, "kind": kind, "spans": self.spans, "texts": self.texts}


def kinds(rng: random.Random, *names: str) -> list[str]:
    out = [name for name in names for _ in range(_int(f"WORKLOAD_{name.upper()}"))]
    rng.shuffle(out)
    return out


def flood() -> dict[str, Any]:
    """Root spans that never end, each with one ended child; traced memory along the way."""
    total = _int("WORKLOAD_FLOOD")
    meter_provider: Any = metrics.get_meter_provider()
    memory: dict[str, int] = {}
    for number in range(1, total + 1):
        if number == total // 4:
            tracemalloc.start()  # after warm-up: only what the flood adds is traced
        root = tracer.start_span("flood.root")
        child = tracer.start_span("flood.child", context=trace.set_span_in_context(root))
        child.end()
        del root, child  # never ended, never referenced again
        if number in (total // 2, total):
            gc.collect()
            memory["half" if number == total // 2 else "end"] = tracemalloc.get_traced_memory()[0]
        if number % (total // 4) == 0:
            meter_provider.force_flush()  # the buffer gauge observed mid-flood, not only at exit
    tracemalloc.stop()
    return {"flood": total, "memory": memory}


def main() -> None:
    mode = os.environ.get("WORKLOAD_MODE", "mixed")
    if mode == "flood":
        truth: Any = flood()
    else:
        work = Workload()
        if mode == "front":
            backend = os.environ["WORKLOAD_BACKEND_URL"]
            truth = [work.front_trace(i, kind, backend) for i, kind in
                     enumerate(kinds(work.rng, "cheap", "expensive", "failing"))]
        else:
            truth = [work.agent_trace(i, kind) for i, kind in
                     enumerate(kinds(work.rng, "cheap", "expensive", "failing", "slow"))]
    # Every trace has ended: flush spans first, so that the metrics flushed next (and at
    # exit) include every decision the tail stage made.
    trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]
    metrics.get_meter_provider().force_flush()  # type: ignore[attr-defined]
    with open(os.environ["WORKLOAD_TRUTH"], "w", encoding="utf-8") as out:
        json.dump(truth, out)


if __name__ == "__main__":
    main()
