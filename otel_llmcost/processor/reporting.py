"""Anomalies out of the processor: a log line, an OTLP log record, and ``GET /anomalies``.

The engine decides; this module only tells. Each started or cleared anomaly becomes a
line in the processor's own log and, when a logs endpoint is set, an OTLP log record
(event ``llmcost.anomaly``) whose attributes carry the kind, severity, customer id and
example trace ids, and whose trace id is the costliest example's, so a backend links the
record to the trace. Records go through the OpenTelemetry SDK's batching exporter: a
slow or absent receiver costs a bounded queue, never the engine thread.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any, Iterable

from otel_llmcost import _faults, semconv as sc
from otel_llmcost.processor.engine import AnomalyEvent

_LOG = logging.getLogger("otel_llmcost.processor")
_RECENT = 100  # events kept for GET /anomalies


class AnomalyReporter:
    """Reports anomaly events; ``endpoint`` None: log lines and the document only."""

    def __init__(self, endpoint: str | None, protocol: str = "http/protobuf") -> None:
        self.recent: deque[dict[str, Any]] = deque(maxlen=_RECENT)
        self._provider: Any = None
        self._logger: Any = None
        if endpoint:
            self._provider, self._logger = _otlp_logger(endpoint, protocol)

    def report(self, events: Iterable[AnomalyEvent], now_ns: int) -> None:
        for event in events:
            document = _document(event)
            self.recent.append(document)
            started = event.state == sc.ANOMALY_STARTED
            _LOG.log(logging.WARNING if started else logging.INFO,
                     "otel-llmcost-processor: anomaly %s: %s", event.state, _message(event))
            if self._logger is not None:
                try:
                    self._emit(event, document, now_ns)
                except Exception as fault:  # noqa: BLE001 - never stop the engine thread
                    _faults.report("processor.anomaly_log", fault)

    def _emit(self, event: AnomalyEvent, document: dict[str, Any], now_ns: int) -> None:
        from opentelemetry._logs import LogRecord, SeverityNumber

        severity = (SeverityNumber.INFO if event.state == sc.ANOMALY_CLEARED else
                    SeverityNumber.ERROR if event.severity == sc.SEVERITY_CRITICAL else
                    SeverityNumber.WARN)
        attributes = {key: value for key, value in document.items()
                      if key != "time_unix_ns" and value is not None}
        trace_id = int(event.trace_ids[0], 16) if event.trace_ids else None
        self._logger.emit(LogRecord(
            timestamp=event.time_ns, observed_timestamp=now_ns, trace_id=trace_id,
            severity_text=severity.name, severity_number=severity, body=_message(event),
            attributes=attributes, event_name=sc.ANOMALY_EVENT))

    def shutdown(self) -> None:
        """Flush the records still queued (bounded by the exporter's own timeout)."""
        if self._provider is not None:
            self._provider.shutdown()


def _document(event: AnomalyEvent) -> dict[str, Any]:
    return {sc.LLMCOST_ANOMALY_KIND: event.kind, sc.LLMCOST_ANOMALY_STATE: event.state,
            sc.LLMCOST_ANOMALY_SEVERITY: event.severity,
            sc.LLMCOST_CUSTOMER_ID: event.customer_id, "time_unix_ns": event.time_ns,
            sc.LLMCOST_ANOMALY_TRACE_IDS: list(event.trace_ids),
            sc.LLMCOST_ANOMALY_RATE: event.rate, sc.LLMCOST_ANOMALY_BASELINE: event.baseline,
            sc.LLMCOST_ANOMALY_COST: event.cost, sc.LLMCOST_ANOMALY_LLM_CALLS: event.llm_calls}


def _message(event: AnomalyEvent) -> str:
    who = f"customer {event.customer_id}" if event.customer_id else "all customers"
    if event.kind == sc.ANOMALY_RUNAWAY_TRACE:
        return (f"{event.severity} runaway agent trace {event.trace_ids[0]} ({who}): "
                f"{event.llm_calls} LLM calls, ${event.cost:.4f} so far")
    return (f"{event.severity} {event.kind} ({who}): ${event.rate:.2f}/h against a "
            f"baseline of ${event.baseline:.2f}/h; example traces "
            f"{', '.join(event.trace_ids) or 'none'}")


def _otlp_logger(endpoint: str, protocol: str) -> tuple[Any, Any]:
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        exporter = OTLPLogExporter(endpoint=endpoint, insecure=True)
    else:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import (
            OTLPLogExporter as HttpExporter)
        exporter = HttpExporter(endpoint=endpoint)
    provider = LoggerProvider(resource=Resource.create({"service.name": sc.PROCESSOR_COMMAND}))
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    return provider, provider.get_logger(sc.INSTRUMENTATION_SCOPE + ".processor")
