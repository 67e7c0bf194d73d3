"""Shared fixtures: a real stand-in provider over HTTP and in-memory OTel pipelines."""

from __future__ import annotations

import gc
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterator

import pytest
from opentelemetry.sdk.metrics import (
    Counter, Histogram, MeterProvider, ObservableCounter, ObservableGauge,
    ObservableUpDownCounter, UpDownCounter)
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_llmcost import tokens
from otel_llmcost.demo.provider import Scenario, StandInProvider
from otel_llmcost.instrumentation import AnthropicInstrumentor, OpenAIInstrumentor

_DELTA = {k: AggregationTemporality.DELTA for k in (
    Counter, UpDownCounter, Histogram, ObservableCounter, ObservableUpDownCounter,
    ObservableGauge)}


@dataclass
class Telemetry:
    """What the instrumentation emitted during one test."""

    spans: InMemorySpanExporter
    reader: InMemoryMetricReader
    providers: dict[str, Any]

    def finished(self) -> list[ReadableSpan]:
        gc.collect()  # streams abandoned by a test end on garbage collection
        return list(self.spans.get_finished_spans())

    def span(self) -> ReadableSpan:
        spans = self.finished()
        assert len(spans) == 1, [s.name for s in spans]
        return spans[0]

    def metric_points(self) -> dict[str, list[Any]]:
        """Data points per metric name that moved since the previous call (delta).

        Observable counters report every series they ever had, with a delta of 0 for those
        that did not move; those are left out.
        """
        points: dict[str, list[Any]] = defaultdict(list)
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    points[metric.name].extend(
                        p for p in metric.data.data_points if getattr(p, "value", 1) != 0)
        return points

    def sums(self, name: str, by: str) -> dict[str, float]:
        """Counter values summed per value of attribute ``by``."""
        out: dict[str, float] = defaultdict(float)
        for point in self.metric_points()[name]:
            out[point.attributes.get(by, "")] += point.value
        return dict(out)


@pytest.fixture(scope="session")
def _pipeline() -> Iterator[Telemetry]:
    exporter = InMemorySpanExporter()
    reader = InMemoryMetricReader(preferred_temporality=_DELTA)
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[reader])
    providers = {"tracer_provider": tracer_provider, "meter_provider": meter_provider}
    OpenAIInstrumentor().instrument(**providers)
    AnthropicInstrumentor().instrument(**providers)
    assert tokens.wait_ready(60), "the bundled offline tiktoken encoding must load"
    yield Telemetry(exporter, reader, providers)
    OpenAIInstrumentor().uninstrument()
    AnthropicInstrumentor().uninstrument()


@pytest.fixture
def telemetry(_pipeline: Telemetry) -> Telemetry:
    gc.collect()
    _pipeline.spans.clear()
    _pipeline.reader.get_metrics_data()  # reset the delta window
    return _pipeline


@pytest.fixture(scope="session")
def provider() -> Iterator[StandInProvider]:
    with StandInProvider() as server:
        yield server


@pytest.fixture
def openai_client(provider: StandInProvider) -> Any:
    import openai
    return openai.OpenAI(base_url=provider.openai_base_url, api_key="test-key", max_retries=0,
                         timeout=10)


@pytest.fixture
def async_openai_client(provider: StandInProvider) -> Any:
    import openai
    return openai.AsyncOpenAI(base_url=provider.openai_base_url, api_key="test-key",
                              max_retries=0, timeout=10)


@pytest.fixture
def anthropic_client(provider: StandInProvider) -> Any:
    import anthropic
    return anthropic.Anthropic(base_url=provider.anthropic_base_url, api_key="test-key",
                               max_retries=0, timeout=10)


@pytest.fixture
def async_anthropic_client(provider: StandInProvider) -> Any:
    import anthropic
    return anthropic.AsyncAnthropic(base_url=provider.anthropic_base_url, api_key="test-key",
                                    max_retries=0, timeout=10)


def scenario(**keys: Any) -> dict[str, dict[str, str]]:
    """SDK kwargs (``extra_headers``) that tell the stand-in provider what to answer."""
    return {"extra_headers": Scenario(**keys).headers()}


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``redis-server`` on a free loopback port (Debian's; ``.ci/run`` installs it)."""
    import shutil
    import socket
    import subprocess
    import time

    server = shutil.which("redis-server")
    assert server, "redis-server is not installed (scripts/test.sh installs it)"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path_factory.mktemp("redis"))],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            pass
        assert time.monotonic() < deadline and process.poll() is None, "redis did not start"
        time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(30)
