"""The Prometheus endpoint: the engine's rollups (and the service's self-metrics) on a scrape.

`EngineCollector` is a ``prometheus_client`` custom collector: on each scrape it takes a
`Snapshot` (a copy made under the service's lock: the engine is not thread-safe), of the
engine as it is or the one published with the last checkpoint, and renders it with names,
units, labels and buckets taken only from `semconv.ROLLUP_METRICS`. `MetricsServer` serves
it over HTTP with content negotiation: ``Accept: application/openmetrics-text`` gets
OpenMetrics, with the runaway counters' trace-id exemplars; anything else gets the plain
text format (which cannot carry them).

Every counter and histogram family is rendered from the first scrape on, with zero series
for every label value known in advance: otherwise ``absent()`` alerts fire on a quiet
processor, and Prometheus loses the first increment of a series that appears with a
value already above zero (``increase()`` has nothing before it), so a first runaway trace
or a first closed conversation would never show in ``increase(...[5m]) > 0``. Gauges are
rendered only where the engine reports a value: a zero spend share or zero cost per
active customer would be a false number, and their absence means "no data" truthfully.
"""

from __future__ import annotations

import hmac
import itertools
import json
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Final, Mapping, NamedTuple
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, ProcessCollector, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar as PromExemplar
from prometheus_client.utils import floatToGoString

from otel_llmcost import semconv as sc
from otel_llmcost.processor.engine import Engine, Exemplar
from otel_llmcost.semconv import MetricDef, prometheus_label, prometheus_name

__all__ = ["EngineCollector", "MetricsServer", "Snapshot", "Source", "Triple", "live"]

Labels = tuple[str, ...]
Triple = tuple[MetricDef, Labels, float]
Source = Callable[[], Iterable[Triple]]  # self-metrics of the service: counters and gauges

EXEMPLAR_LABEL: Final = "trace_id"  # the label Grafana links to a trace

# Label values known before any data arrives, for the zero series of counters/histograms.
_KNOWN_VALUES: Final[dict[str, tuple[str, ...]]] = {
    sc.LLMCOST_TURN_BUCKET: tuple(label for _, label in sc.TURN_BUCKETS),
    sc.LLMCOST_WINDOW: tuple(label for label, _ in sc.WINDOWS),
    sc.LLMCOST_RUNAWAY_REASON: sc.RUNAWAY_REASONS,
    sc.LLMCOST_ENTITY: sc.ENTITIES,
    sc.LLMCOST_ANOMALY_KIND: sc.ANOMALY_KINDS,
    sc.LLMCOST_ANOMALY_SEVERITY: sc.ANOMALY_SEVERITIES,
}

_HistogramCopy = tuple[tuple[float, ...], float]  # per-bucket counts (last: overflow), sum


class Snapshot(NamedTuple):
    """A copy of everything an `Engine` shows, taken at one instant."""

    histograms: dict[tuple[MetricDef, Labels], _HistogramCopy]
    counters: dict[tuple[MetricDef, Labels], float]
    exemplars: dict[tuple[MetricDef, Labels], Exemplar]
    gauges: list[Triple]

    @classmethod
    def of(cls, engine: Engine) -> Snapshot:
        """Copy ``engine``'s metrics (the caller holds the engine's lock)."""
        metrics = engine.metrics
        return cls({key: (tuple(h.counts), h.sum) for key, h in metrics.histograms.items()},
                   dict(metrics.counters), dict(metrics.exemplars), list(engine.gauges()))


def live(engine: Engine, lock: threading.Lock) -> Callable[[], Snapshot]:
    """Read the engine itself at each scrape, under its lock (the engine thread waits)."""
    def read() -> Snapshot:
        with lock:
            return Snapshot.of(engine)
    return read


class EngineCollector:
    """Renders an engine's metrics, plus extra self-metric sources, on each scrape.

    ``read`` gives what to show: `live` for the engine as it is, or (the service, when it
    checkpoints) the snapshot taken with the last checkpoint.
    """

    def __init__(self, read: Callable[[], Snapshot], sources: Sequence[Source] = ()) -> None:
        self._read = read
        self._sources = tuple(sources)

    def collect(self) -> Iterator[Metric]:
        snapshot = self._read()
        # Sources are read outside the engine lock: they guard their own counters, and
        # may share that lock with the engine thread (it is not re-entrant).
        extra = [triple for source in self._sources for triple in source()]
        yield from _render(*snapshot, extra)


def _render(histograms: dict[tuple[MetricDef, Labels], _HistogramCopy],
            counters: dict[tuple[MetricDef, Labels], float],
            exemplars: dict[tuple[MetricDef, Labels], Exemplar],
            gauges: list[Triple], extra: list[Triple]) -> Iterator[Metric]:
    series: dict[MetricDef, dict[Labels, Any]] = {metric: {} for metric in sc.ROLLUP_METRICS}
    for (metric, labels), value in itertools.chain(histograms.items(), counters.items()):
        series.setdefault(metric, {})[labels] = value
    for metric, labels, value in itertools.chain(gauges, extra):
        if metric.kind == "histogram":
            raise ValueError(f"{metric.name}: a source can report counters and gauges only")
        if len(labels) != len(metric.attributes):
            raise ValueError(f"{metric.name}: labels {labels} for {metric.attributes}")
        series.setdefault(metric, {})[labels] = value
    for metric in sc.ROLLUP_METRICS:
        if metric.kind != "gauge":
            zero = ((0.0,) * (len(metric.buckets) + 1), 0.0) if metric.kind == "histogram" \
                else 0.0
            for labels in _known_label_sets(metric):
                series[metric].setdefault(labels, zero)
    for metric, by_labels in series.items():
        yield _family(metric, sorted(by_labels.items()), exemplars)


def _known_label_sets(metric: MetricDef) -> Iterator[Labels]:
    """Every label-value combination known in advance (none if any label is open-ended)."""
    if all(attribute in _KNOWN_VALUES for attribute in metric.attributes):
        yield from itertools.product(*(_KNOWN_VALUES[a] for a in metric.attributes))


def _family(metric: MetricDef, series: list[tuple[Labels, Any]],
            exemplars: dict[tuple[MetricDef, Labels], Exemplar]) -> Metric:
    names = [prometheus_label(attribute) for attribute in metric.attributes]
    # The unit as the Prometheus name's suffix (OpenMetrics requires UNIT to be one);
    # a unit in braces has none, so HELP says it instead.
    unit = prometheus_name("", metric.unit).lstrip("_")
    help_text = metric.description if unit or not metric.unit else \
        f"{metric.description} Unit: {metric.unit}."
    family: Metric
    if metric.kind == "histogram":
        family = HistogramMetricFamily(metric.prometheus, help_text, labels=names, unit=unit)
        bounds = [floatToGoString(bound) for bound in metric.buckets] + ["+Inf"]
        for labels, (counts, total) in series:
            family.add_metric(list(labels), list(zip(bounds, itertools.accumulate(counts))),
                              total)
    elif metric.kind == "counter":
        family = CounterMetricFamily(metric.prometheus, help_text, labels=names, unit=unit)
        for labels, value in series:
            exemplar = exemplars.get((metric, labels))
            family.add_metric(list(labels), value, exemplar=None if exemplar is None else
                              _exemplar(exemplar))
    else:
        family = GaugeMetricFamily(metric.prometheus, help_text, labels=names, unit=unit)
        for labels, value in series:
            family.add_metric(list(labels), value)
    return family


def _exemplar(exemplar: Exemplar) -> PromExemplar:
    """Without a timestamp: Prometheus then stamps it with the scrape that first shows it,
    the moment the counter it annotates is seen to rise (with a state file, a checkpoint
    after the trace closed), and keeps it once (an equal exemplar is a duplicate). The
    trace's close time is on GET /runaways; the engine's clock may not be the wall's."""
    return PromExemplar({EXEMPLAR_LABEL: exemplar.trace_id}, exemplar.value)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # a line per scrape would drown the service's log


class MetricsServer:
    """``GET /metrics`` (any path) on ``host:port``; port 0 picks a free one (see `port`).

    With ``token`` set, a scrape must send ``Authorization: Bearer <token>`` (Prometheus:
    ``authorization: {credentials: ...}``). The process's CPU and memory are served too,
    so that the processor's own cost can be read beside what it measures.
    """

    def __init__(self, collector: Collector, *, host: str = "127.0.0.1", port: int = 9464,
                 token: str | None = None,
                 documents: Mapping[str, Callable[[], Any]] | None = None) -> None:
        self._host = host
        # Other paths served as JSON (e.g. /runaways: trace ids, which are never labels).
        self._documents = dict(documents or {})
        self._requested_port = port
        self._token = None if token is None else token.encode("utf-8")
        # No describe(): the sources' names are only known on a scrape (so a ``name[]``
        # filtered scrape leaves them out; Prometheus never sends one).
        self.registry = CollectorRegistry()
        self.registry.register(collector)
        ProcessCollector(registry=self.registry)
        self._server: ThreadingWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def _app(self) -> Callable[..., Iterable[bytes]]:
        metrics = make_wsgi_app(self.registry)
        token = self._token

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if token is not None:
                scheme, _, given = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
                if not (scheme.lower() == "bearer"
                        and hmac.compare_digest(given.strip().encode("utf-8"), token)):
                    start_response("401 Unauthorized", [
                        ("WWW-Authenticate", 'Bearer realm="metrics"'),
                        ("Content-Type", "text/plain; charset=utf-8")])
                    return [b"missing or invalid bearer token\n"]
            document = self._documents.get(environ.get("PATH_INFO", ""))
            if document is not None:
                start_response("200 OK", [("Content-Type", "application/json")])
                return [json.dumps(document()).encode("utf-8")]
            return metrics(environ, start_response)  # type: ignore[no-any-return]

        return app

    def start(self) -> None:
        family = socket.getaddrinfo(self._host, self._requested_port,
                                    type=socket.SOCK_STREAM)[0][0]
        server_class = type("_Server", (ThreadingWSGIServer,), {"address_family": family})
        server = make_server(self._host, self._requested_port, self._app(), server_class,
                             _QuietHandler)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.1,),
                                        name="llmcost-metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
        self._server = self._thread = None

    @property
    def port(self) -> int:
        """The bound port (useful when started with port 0)."""
        if self._server is None:
            raise RuntimeError("MetricsServer is not running")
        return int(self._server.server_address[1])
