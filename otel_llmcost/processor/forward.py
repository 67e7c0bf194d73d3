"""Forwarding: each received OTLP trace request, byte for byte, to the next hop.

The processor only reads the traces; whoever is next (a collector, a tracing backend)
gets them unchanged. The receivers must answer their own clients at once whatever the
next hop does, so `Forwarder.offer` never blocks: it puts the payload in a bounded queue
(or drops and counts it when the queue is full) and one worker thread sends the queue in
order, retrying what OTLP says is retryable (HTTP 429/502/503/504, honouring
Retry-After; gRPC UNAVAILABLE and the like, honouring RetryInfo) with capped exponential
backoff. Nothing is lost silently: every payload offered ends up forwarded, queued, in
flight, or dropped under one reason.
"""

from __future__ import annotations

import http.client
import logging
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Final, NamedTuple, Protocol
from urllib.parse import urlsplit

import grpc
from google.rpc import error_details_pb2, status_pb2

from otel_llmcost import semconv as sc
from otel_llmcost.semconv import MetricDef

__all__ = ["DROP_REASONS", "Forwarder"]

_LOG = logging.getLogger("otel_llmcost.processor")

PROTOCOL_HTTP: Final = "http/protobuf"
PROTOCOL_GRPC: Final = "grpc"
# queue_full: offered while the queue was full; retries_exhausted: still failing after
# max_retries; rejected: the next hop refused it for good (e.g. HTTP 400); shutdown: still
# queued when stop() ran out of time, or offered after it.
DROP_REASONS: Final = sc.FORWARD_DROP_REASONS
DROP_QUEUE_FULL, DROP_RETRIES_EXHAUSTED, DROP_REJECTED, DROP_SHUTDOWN = DROP_REASONS

_HTTP_RETRYABLE: Final = frozenset({429, 502, 503, 504})
_GRPC_RETRYABLE: Final = frozenset({
    grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED,
    grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS})
_GRPC_EXPORT: Final = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
_CLOSE_GRACE_S: Final = 5.0  # for an attempt cut short by stop() to wind down


class _Attempt(NamedTuple):
    ok: bool
    retryable: bool = False
    delay_s: float | None = None  # the next hop's own Retry-After / RetryInfo
    detail: str = ""


class _Transport(Protocol):
    def send(self, payload: bytes, timeout_s: float) -> _Attempt: ...

    def close(self) -> None: ...


class _Http:
    """POST {endpoint}/v1/traces on one kept-alive connection."""

    def __init__(self, endpoint: str, headers: Mapping[str, str]) -> None:
        url = urlsplit(endpoint)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"forward endpoint {endpoint!r}: expected http(s)://host:port")
        self._url = url
        self._path = url.path.rstrip("/") + "/v1/traces"
        self._headers = {**headers, "Content-Type": "application/x-protobuf"}
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self, timeout_s: float) -> http.client.HTTPConnection:
        conn = self._conn
        if conn is None:
            kind = (http.client.HTTPSConnection if self._url.scheme == "https"
                    else http.client.HTTPConnection)
            conn = self._conn = kind(self._url.hostname or "", self._url.port,
                                     timeout=timeout_s)
        conn.timeout = timeout_s
        if conn.sock is not None:
            conn.sock.settimeout(timeout_s)
        return conn

    def send(self, payload: bytes, timeout_s: float) -> _Attempt:
        reused = self._conn is not None
        while True:
            try:
                conn = self._connection(timeout_s)
                conn.request("POST", self._path, body=payload, headers=self._headers)
                response = conn.getresponse()
                response.read()  # so that the connection can be kept
                break
            except ConnectionError as error:
                self.close()
                if not reused:
                    return _Attempt(False, True, detail=repr(error))
                reused = False  # a kept-alive connection the next hop had closed: once more
            except (OSError, http.client.HTTPException) as error:
                self.close()
                return _Attempt(False, True, detail=repr(error))
        if 200 <= response.status < 300:
            return _Attempt(True)
        return _Attempt(False, response.status in _HTTP_RETRYABLE,
                        _retry_after(response.getheader("Retry-After")),
                        f"HTTP {response.status} {response.reason}")

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            if conn.sock is not None:
                try:  # wakes an attempt blocked in another thread (stop())
                    conn.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            conn.close()


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds: delta-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class _Grpc:
    """TraceService/Export with the payload as the already-serialized request."""

    def __init__(self, endpoint: str, headers: Mapping[str, str]) -> None:
        url = urlsplit(endpoint if "://" in endpoint else f"//{endpoint}")
        if not url.netloc:
            raise ValueError(f"forward endpoint {endpoint!r}: expected host:port")
        self._channel = (grpc.secure_channel(url.netloc, grpc.ssl_channel_credentials())
                         if url.scheme == "https" else grpc.insecure_channel(url.netloc))
        # No serializers: bytes go out as they came in, and the answer is not decoded.
        self._export = self._channel.unary_unary(_GRPC_EXPORT)
        self._metadata = tuple((key.lower(), value) for key, value in headers.items())

    def send(self, payload: bytes, timeout_s: float) -> _Attempt:
        try:
            self._export(payload, timeout=timeout_s, metadata=self._metadata)
        except grpc.RpcError as error:
            code: grpc.StatusCode = error.code()  # type: ignore[attr-defined]
            delay = _retry_info(error)
            # RESOURCE_EXHAUSTED is retryable only when the server says when (OTLP spec).
            retryable = code in _GRPC_RETRYABLE or (
                code is grpc.StatusCode.RESOURCE_EXHAUSTED and delay is not None)
            return _Attempt(False, retryable, delay,
                            f"gRPC {code.name}: {error.details()}")  # type: ignore[attr-defined]
        except ValueError as error:  # the channel was closed: stop() gave up waiting
            return _Attempt(False, True, detail=repr(error))
        return _Attempt(True)

    def close(self) -> None:
        self._channel.close()  # also cancels an attempt in flight (stop())


def _retry_info(error: grpc.RpcError) -> float | None:
    """The ``google.rpc.RetryInfo`` delay in the error's status details, if any."""
    for key, value in error.trailing_metadata() or ():  # type: ignore[attr-defined]
        if key != "grpc-status-details-bin":
            continue
        for detail in status_pb2.Status.FromString(value).details:
            if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                info = error_details_pb2.RetryInfo()
                detail.Unpack(info)
                return info.retry_delay.ToTimedelta().total_seconds()
    return None


class Forwarder:
    """A bounded queue of OTLP trace payloads and the one thread that forwards them.

    ``endpoint`` is a base URL for ``http/protobuf`` (``/v1/traces`` is appended) and
    ``host:port`` (or ``http(s)://host:port``) for ``grpc``. A payload is tried up to
    ``1 + max_retries`` times, each attempt waiting at most ``timeout_s``.
    """

    def __init__(self, endpoint: str, protocol: str = PROTOCOL_HTTP, *,
                 headers: Mapping[str, str] | None = None, max_queue: int = 1000,
                 timeout_s: float = 10.0, max_retries: int = 5,
                 initial_backoff_s: float = 1.0, max_backoff_s: float = 30.0) -> None:
        if protocol == PROTOCOL_HTTP:
            self._transport: _Transport = _Http(endpoint, headers or {})
        elif protocol == PROTOCOL_GRPC:
            self._transport = _Grpc(endpoint, headers or {})
        else:
            raise ValueError(f"forward protocol {protocol!r}: expected "
                             f"{PROTOCOL_HTTP!r} or {PROTOCOL_GRPC!r}")
        self.endpoint = endpoint
        self._max_queue = max_queue
        self._timeout_s = timeout_s
        self._max_retries = max_retries
        self._initial_backoff_s = initial_backoff_s
        self._max_backoff_s = max_backoff_s
        self._cond = threading.Condition()
        self._pending: deque[bytes] = deque()
        self._closed = False
        self._deadline: float | None = None  # monotonic; set by stop()
        self._closing = threading.Event()  # wakes a backoff wait when stop() is called
        self._forwarded = 0
        self._retries = 0
        self._dropped = dict.fromkeys(DROP_REASONS, 0)
        self._problem: str | None = None  # the last failure logged, to log changes only
        self._thread = threading.Thread(target=self._run, name="llmcost-forward", daemon=True)

    # --- the caller's side ---------------------------------------------------------

    def start(self) -> Forwarder:
        self._thread.start()
        return self

    def offer(self, payload: bytes) -> bool:
        """Queue ``payload`` for the next hop; False (and counted) if full or stopped."""
        with self._cond:
            if self._closed:
                self._dropped[DROP_SHUTDOWN] += 1
                return False
            if len(self._pending) >= self._max_queue:
                self._dropped[DROP_QUEUE_FULL] += 1
                return False
            self._pending.append(payload)
            self._cond.notify()
            return True

    def stop(self, timeout: float = 5.0) -> None:
        """Forward what can be within ``timeout`` seconds; drop (and count) the rest."""
        with self._cond:
            if not self._closed:
                self._closed = True
                self._deadline = time.monotonic() + timeout
                self._cond.notify_all()
        self._closing.set()
        if self._thread.is_alive():
            self._thread.join(max(0.0, (self._deadline or 0.0) - time.monotonic()))
        self._transport.close()  # cuts short an attempt still in flight
        if self._thread.is_alive():
            self._thread.join(_CLOSE_GRACE_S)
        with self._cond:
            self._dropped[DROP_SHUTDOWN] += len(self._pending)
            self._pending.clear()

    @property
    def forwarded(self) -> int:
        return self._forwarded

    @property
    def retries(self) -> int:
        return self._retries

    @property
    def dropped(self) -> dict[str, int]:
        """Dropped payloads by reason (every reason, zeros included)."""
        with self._cond:
            return dict(self._dropped)

    @property
    def queued(self) -> int:
        return len(self._pending)

    def metrics(self) -> list[tuple[MetricDef, tuple[str, ...], float]]:
        """The counters as (metric, label values, value), for the Prometheus endpoint."""
        with self._cond:
            return [(sc.M_PROCESSOR_FORWARDED, (), float(self._forwarded)),
                    *((sc.M_PROCESSOR_FORWARD_DROPPED, (reason,), float(count))
                      for reason, count in self._dropped.items()),
                    (sc.M_PROCESSOR_FORWARD_RETRIES, (), float(self._retries)),
                    (sc.M_PROCESSOR_FORWARD_QUEUED, (), float(len(self._pending)))]

    # --- the worker ----------------------------------------------------------------

    def _run(self) -> None:
        while (payload := self._next()) is not None:
            try:
                reason = self._deliver(payload)
            except Exception:  # noqa: BLE001 - a bug must not end forwarding for good
                _LOG.exception("forwarding to %s failed", self.endpoint)
                reason = DROP_REJECTED
            with self._cond:
                if reason is None:
                    self._forwarded += 1
                else:
                    self._dropped[reason] += 1

    def _next(self) -> bytes | None:
        """The oldest queued payload; None once stopped and drained (or out of time)."""
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if self._pending and self._attempt_timeout() is not None:
                return self._pending.popleft()
            return None  # stop() counts what is left

    def _deliver(self, payload: bytes) -> str | None:
        """Send with retries; None when delivered, else the reason it was dropped."""
        attempt = 0
        while True:
            timeout_s = self._attempt_timeout()
            if timeout_s is None:
                return DROP_SHUTDOWN
            result = self._transport.send(payload, timeout_s)
            if result.ok:
                self._problem = None
                return None
            if not result.retryable or attempt >= self._max_retries:
                reason = DROP_RETRIES_EXHAUSTED if result.retryable else DROP_REJECTED
                if self._problem != result.detail:  # one line per change, not per payload
                    self._problem = result.detail
                    _LOG.warning("forwarding to %s: dropped (%s): %s", self.endpoint, reason,
                                 result.detail)
                return reason
            delay = result.delay_s if result.delay_s is not None else \
                self._initial_backoff_s * 2 ** attempt * random.uniform(0.5, 1.0)
            if not self._pause(min(delay, self._max_backoff_s)):
                return DROP_SHUTDOWN
            attempt += 1
            with self._cond:
                self._retries += 1

    def _attempt_timeout(self) -> float | None:
        """This attempt's timeout: shorter when stop() set a deadline; None once past it."""
        deadline = self._deadline
        if deadline is None:
            return self._timeout_s
        left = deadline - time.monotonic()
        return min(self._timeout_s, left) if left > 0 else None

    def _pause(self, delay_s: float) -> bool:
        """Wait ``delay_s`` before a retry; False if stop()'s deadline comes first."""
        end = time.monotonic() + delay_s
        while (left := end - time.monotonic()) > 0:
            deadline = self._deadline
            if deadline is not None:
                if end > deadline:
                    return False
                time.sleep(left)
                return True
            self._closing.wait(left)
        return True
