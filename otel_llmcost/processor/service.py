"""``otel-llmcost-processor``: the I/O shell around the rollup engine.

Receivers (OTLP/gRPC, OTLP/HTTP) decode requests on their own threads and put the records
on a bounded queue (full: the client is told to retry later). One engine thread drains
it, rolls up, closes what is due and checkpoints what changed in the engine to SQLite. Accepted
requests are also offered, unchanged, to the forwarder when a next hop is set. The
Prometheus endpoint shows the engine as of the last checkpoint (without a state file,
as it is, read under the same lock). SIGTERM stops the receivers, drains the queue,
writes a last checkpoint and drains the forwarder.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import queue
import signal
import sys
import threading
import time
from typing import Callable, Iterator

from otel_llmcost import semconv as sc
from otel_llmcost.processor.engine import Engine
from otel_llmcost.processor.exposition import EngineCollector, MetricsServer, Snapshot, live
from otel_llmcost.processor.forward import Forwarder
from otel_llmcost.processor.otlp import Decoded, Limits
from otel_llmcost.processor.receivers import GrpcReceiver, HttpReceiver, ReceiverStats
from otel_llmcost.processor.records import SpanRecord
from otel_llmcost.processor.reporting import AnomalyReporter
from otel_llmcost.processor.settings import Settings, SettingsError, endpoint
from otel_llmcost.processor.store import Store

_LOG = logging.getLogger("otel_llmcost.processor")
Triple = tuple[sc.MetricDef, tuple[str, ...], float]
_DRAIN = 64  # requests rolled up per lock hold, so a scrape never waits long


class Processor:
    """The service: build it from `Settings`, `start()` it, `stop()` it."""

    def __init__(self, settings: Settings, clock: Callable[[], int] = time.time_ns) -> None:
        self.settings = settings
        self._clock = clock
        self.lock = threading.Lock()
        self.store = Store(settings.state_path) if settings.state_path else None
        saved = self.store.load() if self.store else None
        self.engine = Engine(settings.engine)
        restored_ns = None  # when the checkpoint the engine continues from was saved
        if saved and self.store is not None:
            try:  # another version's format, or a row that parses but does not fit
                self.engine = Engine.restore(settings.engine, saved[0])
            except Exception as error:  # noqa: BLE001 - any unusable checkpoint
                self.store.discard(error)
            else:
                restored_ns = saved[1]
                _LOG.info("otel-llmcost-processor: state restored from %s",
                          settings.state_path)
        self._queue: queue.Queue[list[SpanRecord]] = queue.Queue(settings.queue_batches)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="llmcost-engine", daemon=True)
        self._busy_s = 0.0  # engine thread time rolling up (the processor's own cost)
        self._checkpoint_s = 0.0  # …and writing checkpoints
        self._requested = False  # a checkpoint asked for by request_checkpoint()
        self._state_bytes = 0
        self.stats = ReceiverStats()
        self.forwarder = (Forwarder(settings.forward_endpoint, settings.forward_protocol,
                                    max_queue=settings.forward_queue)
                          if settings.forward_endpoint else None)
        self.reporter = AnomalyReporter(settings.logs_endpoint, settings.logs_protocol)
        tls = (settings.tls_cert, settings.tls_key) if settings.tls_cert else None
        if tls and not settings.tls_key:
            raise SettingsError("tls_cert is set but tls_key is not")
        limits = Limits(max_id_chars=settings.max_id_chars)
        common = dict(ingest=self.ingest, limits=limits, token=settings.token, tls=tls,
                      stats=self.stats)
        self.receivers: list[HttpReceiver | GrpcReceiver] = []
        if settings.http_endpoint:
            host, port = endpoint(settings.http_endpoint)
            self.receivers.append(HttpReceiver(host, port, max_body_bytes=settings
                                               .max_request_bytes, **common))
        if settings.grpc_endpoint:
            host, port = endpoint(settings.grpc_endpoint)
            self.receivers.append(GrpcReceiver(host, port, max_message_bytes=settings
                                               .max_request_bytes, **common))
        # With a state file, /metrics shows the engine as of the last checkpoint, never
        # more: after a kill -9 the restored counters then continue from at least what
        # Prometheus last saw. Showing unsaved spans would make them go down, which
        # Prometheus takes for a counter reset and adds the whole history again.
        self._published = self._snapshot(restored_ns)
        self.published_ns = restored_ns  # when the checkpoint /metrics shows was saved
        read = (lambda: self._published) if self.store is not None else live(self.engine,
                                                                             self.lock)
        self.metrics_server = None
        if settings.metrics_endpoint:
            host, port = endpoint(settings.metrics_endpoint)
            collector = EngineCollector(read, [self._self_metrics])
            self.metrics_server = MetricsServer(collector, host=host, port=port,
                                                token=settings.token,
                                                documents={"/runaways": self.runaways,
                                                           "/anomalies": self.anomalies})

    def ingest(self, decoded: Decoded, payload: bytes) -> bool:
        """Called by the receivers: queue the records (False: full, retry later)."""
        if decoded.records:
            try:
                self._queue.put_nowait(decoded.records)
            except queue.Full:
                return False
        if self.forwarder is not None:
            self.forwarder.offer(payload)
        return True

    def request_checkpoint(self) -> None:
        """Have the engine thread write (and publish) a checkpoint at its next turn, even if
        nothing changed (e.g. to show a state reached by moving the clock)."""
        self._requested = True

    def queued(self) -> int:
        """Batches of records waiting for the engine thread."""
        return self._queue.qsize()

    def runaways(self) -> list[dict[str, object]]:
        """The recent runaway traces, newest last, for drill-down (``GET /runaways``)."""
        with self.lock:
            found = list(self.engine.traces.runaways)
        return [{"trace_id": e.trace_id, "cost_usd": e.value, "closed_unix_ns": e.time_ns}
                for e in found]

    def anomalies(self) -> dict[str, list[dict[str, object]]]:
        """Anomalies in progress, and the recent started/cleared events (``GET /anomalies``)."""
        with self.lock:
            active = self.engine.anomalies.active()
        return {"active": [{sc.LLMCOST_ANOMALY_KIND: a.kind,
                            sc.LLMCOST_ANOMALY_SEVERITY: a.severity,
                            sc.LLMCOST_CUSTOMER_ID: a.customer_id} for a in active],
                "recent": list(self.reporter.recent)}

    def start(self) -> None:
        self._thread.start()
        if self.forwarder is not None:
            self.forwarder.start()
        for receiver in self.receivers:
            receiver.start()
        if self.metrics_server is not None:
            self.metrics_server.start()

    def stop(self) -> None:
        """Graceful: no new requests, everything queued rolled up, state saved."""
        for receiver in self.receivers:
            receiver.stop()
        self._stop.set()
        self._thread.join()
        if self.forwarder is not None:
            self.forwarder.stop(timeout=10.0)
        self.reporter.shutdown()
        if self.metrics_server is not None:
            self.metrics_server.stop()
        if self.store is not None:
            self.store.close()

    def _run(self) -> None:
        next_checkpoint = time.monotonic() + self.settings.checkpoint_s
        # Checkpoints only follow a change (spans rolled up, or something closed): an idle
        # processor writes none, where a big state would cost CPU every interval.
        changed = False
        while True:
            stopping = self._stop.is_set()
            batches = self._take(block=not stopping)
            last = stopping and not batches  # everything queued is rolled up: save and stop
            started = time.perf_counter()
            now = self._clock()
            with self.lock:
                for records in batches:
                    self.engine.ingest(records, now)
                closed = self.engine.advance(now)
                rolled_up = time.perf_counter()
                changed = changed or bool(batches) or closed or self._requested
                self._requested = False
                due = last or (changed and time.monotonic() >= next_checkpoint)
                if due and self.store is not None:
                    state, published = self.engine.changes(), self._snapshot(now)
                else:
                    state = published = None
                found = list(self.engine.anomalies.events)  # reported outside the lock
                self.engine.anomalies.events.clear()
            if found:
                self.reporter.report(found, now)
            self._busy_s += rolled_up - started
            if state is not None:
                self._state_bytes = self.store.save(state, now)  # type: ignore[union-attr]
                self._published, self.published_ns = published, now  # once it is durable
                del state, published  # before the clock stops: freeing them is part of it
                self._checkpoint_s += time.perf_counter() - rolled_up
            if due:
                next_checkpoint = time.monotonic() + self.settings.checkpoint_s
                changed = False
            if last:
                return

    def _snapshot(self, saved_ns: int | None) -> Snapshot:
        """What /metrics shows once the checkpoint saved at ``saved_ns`` is durable: the
        engine, and that time (in the same snapshot, so a scrape sees both or neither)."""
        snapshot = Snapshot.of(self.engine)
        if saved_ns is not None:
            snapshot.gauges.append((sc.M_PROCESSOR_CHECKPOINT_TIME, (), saved_ns / 1e9))
        return snapshot

    def _take(self, block: bool) -> list[list[SpanRecord]]:
        batches = []
        try:
            batches.append(self._queue.get(timeout=0.5) if block else self._queue.get_nowait())
            while len(batches) < _DRAIN:
                batches.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        return batches

    def _self_metrics(self) -> Iterator[Triple]:
        snapshot = self.stats.snapshot()
        for transport, count in snapshot.received_spans.items():
            yield sc.M_PROCESSOR_RECEIVED_SPANS, (transport,), float(count)
        for transport, count in snapshot.rejected_spans.items():
            yield sc.M_PROCESSOR_REJECTED_SPANS, (transport,), float(count)
        for (transport, outcome), count in snapshot.requests.items():
            yield sc.M_PROCESSOR_REQUESTS, (transport, outcome), float(count)
        yield sc.M_PROCESSOR_QUEUE, (), float(self._queue.qsize())
        yield sc.M_PROCESSOR_STATE_BYTES, (), float(self._state_bytes)
        yield sc.M_PROCESSOR_BUSY, (), self._busy_s
        yield sc.M_PROCESSOR_CHECKPOINT, (), self._checkpoint_s
        if self.forwarder is not None:
            yield from self.forwarder.metrics()


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt() parameters


def _keep_freed_memory(size: int) -> None:
    """Have glibc's malloc serve blocks up to ``size`` from its heaps and keep up to twice
    that free in them, where by default it maps big blocks anew and returns freed memory
    above 128 KiB at once. Every request brings blocks of hundreds of KiB (the body,
    grpc's buffers), each of which then cost a page fault per 4 KiB on first use: in the
    OTLP/gRPC receiver 70 to 200 a request, and about 4 % of its CPU (10,000 faults instead of
    68,000-206,000 for 1,000 requests, maximum RSS +3 MB). Not glibc: nothing to do."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, size)
    mallopt(_M_TRIM_THRESHOLD, 2 * size)


def tune_interpreter() -> None:
    """Process-wide settings for a processor that has this process to itself: the console
    script's, and the benchmark's where it measures what the processor runs."""
    # The engine makes many small, short-lived objects and few cycles: collecting the
    # young generation less often (and never the start-up objects) was 11-19 % of CPU.
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    _keep_freed_memory(8 * 1024 * 1024)
    # The receiver threads (decoding) and the engine thread take turns holding the GIL;
    # forced turns every 5 ms (the default) cost CPU in hand-offs and cold caches. At 20 to
    # 100 ms the processor used less CPU per span (in noisy runs); a request or a scrape
    # waits for the GIL at most this long.
    sys.setswitchinterval(0.05)


def main() -> None:
    """Console script ``otel-llmcost-processor``: run until SIGTERM or Ctrl-C."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        processor = Processor(Settings.load())
    except SettingsError as error:
        raise SystemExit(f"{sc.PROCESSOR_COMMAND}: {error}") from None
    tune_interpreter()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    processor.start()
    listening = [f"{type(r).__name__} {r.port}" for r in processor.receivers]
    if processor.metrics_server is not None:
        listening.append(f"metrics {processor.metrics_server.port}")
    _LOG.info("otel-llmcost-processor: listening (%s)", ", ".join(listening))
    while not stop.wait(1.0):
        pass
    processor.stop()
    _LOG.info("otel-llmcost-processor: stopped, state saved")
