"""Generic wrapt wrappers and the instrumentor base shared by all providers.

A provider supplies an adapter (kwargs → `Request`, response → `Reply`, a stream
`Accumulator`) and a table of `Target`s; everything about spans, streams, raw
responses, retries and fault isolation lives here, once.
"""

from __future__ import annotations

import inspect
import logging
import os
import weakref
from importlib import metadata
from importlib.util import find_spec
from typing import Any, Callable, Collection, Protocol

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.instrumentation.utils import is_instrumentation_enabled, unwrap
from wrapt import wrap_function_wrapper

from otel_llmcost import _faults, budgets, pricing, semconv as sc, tokens
from otel_llmcost.instrumentation._streams import (
    AsyncRawResponseProxy, AsyncStreamProxy, RawResponseProxy, StreamManagerProxy,
    StreamProxy)
from otel_llmcost.instrumentation._telemetry import CURRENT, Invocation, Telemetry
from otel_llmcost.instrumentation._types import Accumulator, Reply, Request, Target

_LOG = logging.getLogger("otel_llmcost")


class Adapter(Protocol):
    """How one provider operation's calls are read."""

    def request(self, kwargs: dict[str, Any]) -> tuple[Request, dict[str, Any]]:
        """The request, and the kwargs to send (possibly amended, never mutated)."""

    def reply(self, response: Any) -> Reply:
        """The reply of a non-streamed call."""

    def accumulator(self, request: Request) -> Accumulator:
        """A fresh accumulator for a streamed call."""


_servers: weakref.WeakKeyDictionary[Any, tuple[str | None, int | None]] = (
    weakref.WeakKeyDictionary())


def _server(instance: Any) -> tuple[str | None, int | None]:
    """(host, port) of the resource's client, cached per client (URL parsing is not free)."""
    try:
        client = instance._client
        found = _servers.get(client)
        if found is None:
            url = client.base_url
            found = _servers[client] = (url.host, url.port or (443 if url.scheme == "https"
                                                              else 80))
        return found
    except Exception:  # noqa: BLE001 - a resource without a client: no server attributes
        return None, None


def _wrap_stream(stream: Any, invocation: Invocation, accumulator: Accumulator) -> Any:
    proxy = AsyncStreamProxy if hasattr(stream, "__anext__") else StreamProxy
    return proxy(stream, invocation, accumulator)


# What ``with_raw_response`` / ``with_streaming_response`` return (same names in both SDKs).
_RAW_RESPONSE_TYPES = frozenset(("LegacyAPIResponse", "APIResponse", "AsyncAPIResponse"))


def _handle(result: Any, invocation: Invocation, adapter: Adapter, request: Request) -> Any:
    """Route a returned value: stream → proxy, raw response → proxy, else end now."""
    try:
        if type(result).__name__ in _RAW_RESPONSE_TYPES:
            return _handle_raw(result, invocation, adapter, request)
        if request.stream:
            return _wrap_stream(result, invocation, adapter.accumulator(request))
        invocation.end(adapter.reply(result))
    except Exception as fault:  # noqa: BLE001
        _faults.report("handle_result", fault)
        invocation.end(None)
    return result


def _handle_raw(raw: Any, invocation: Invocation, adapter: Adapter, request: Request) -> Any:
    if request.stream:
        accumulator = adapter.accumulator(request)

        def on_parse(parsed: Any) -> Any:
            return _wrap_stream(parsed, invocation, accumulator)
    elif type(raw).__name__ == "LegacyAPIResponse":
        # with_raw_response has already read the body: parse now (the SDK caches it).
        invocation.end(adapter.reply(raw.parse()))
        return raw
    else:
        def on_parse(parsed: Any) -> Any:
            invocation.end(adapter.reply(parsed))
            return parsed
    proxy = AsyncRawResponseProxy if inspect.iscoroutinefunction(raw.parse) else RawResponseProxy
    return proxy(raw, invocation, on_parse)


def _begin(tel: Telemetry, adapter: Adapter, instance: Any, kwargs: dict[str, Any]
           ) -> tuple[Invocation, Request, dict[str, Any]] | None:
    if not is_instrumentation_enabled():
        return None
    try:
        request, kwargs = adapter.request(kwargs)
        return Invocation(tel, request, _server(instance)), request, kwargs
    except Exception as fault:  # noqa: BLE001
        _faults.report("begin", fault)
        return None


def _sync_wrapper(tel: Telemetry, adapter: Adapter) -> Callable[..., Any]:
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> Any:
        begun = _begin(tel, adapter, instance, kwargs)
        if begun is None:
            return wrapped(*args, **kwargs)
        invocation, request, kwargs = begun
        with invocation:
            result = wrapped(*args, **kwargs)
        return _handle(result, invocation, adapter, request)
    return wrapper


def _async_wrapper(tel: Telemetry, adapter: Adapter) -> Callable[..., Any]:
    async def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> Any:
        begun = _begin(tel, adapter, instance, kwargs)
        if begun is None:
            return await wrapped(*args, **kwargs)
        invocation, request, kwargs = begun
        with invocation:
            result = await wrapped(*args, **kwargs)
        return _handle(result, invocation, adapter, request)
    return wrapper


def _stream_manager_wrapper(tel: Telemetry, adapter: Adapter) -> Callable[..., Any]:
    """``messages.stream(...)`` sends nothing until its manager is entered."""
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> Any:
        manager = wrapped(*args, **kwargs)
        if not is_instrumentation_enabled():
            return manager
        try:
            request, _ = adapter.request(kwargs)
            request.stream = True
            server = _server(instance)
            return StreamManagerProxy(manager, lambda: Invocation(tel, request, server),
                                      adapter.accumulator(request))
        except Exception as fault:  # noqa: BLE001
            _faults.report("stream_manager", fault)
            return manager
    return wrapper


def _count_retry(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> Any:
    """Wraps the SDKs' ``_calculate_retry_timeout``: called once per internal retry."""
    invocation = CURRENT.get()
    if invocation is not None:
        invocation.retries += 1
    return wrapped(*args, **kwargs)


_telemetry_cache: list[tuple[Any, Any, Telemetry]] = []


def _telemetry(tracer_provider: Any, meter_provider: Any) -> Telemetry:
    """One Telemetry per provider pair, shared by the openai and anthropic instrumentors."""
    for tp, mp, tel in _telemetry_cache:
        if tp is tracer_provider and mp is meter_provider:
            return tel
    tel = Telemetry(tracer_provider, meter_provider)
    _telemetry_cache[:] = [(tracer_provider, meter_provider, tel)]
    return tel


class LLMInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Patches one provider SDK's targets; subclasses only declare what to patch."""

    package: str = ""
    min_version: str = ""
    entry_point: str = ""
    targets: tuple[Target, ...] = ()
    retry_module: str = ""
    # An SDK that traces its own calls: (module that implements it, env var that turns it off).
    builtin_tracing: tuple[str, str] | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return (f"{self.package} >= {self.min_version}",)

    def _instrument(self, **kwargs: Any) -> None:
        tel = _telemetry(kwargs.get("tracer_provider"), kwargs.get("meter_provider"))
        tokens.start_loading()
        pricing.preload()
        budgets.configure_from_env(kwargs.get("meter_provider"))
        _warn_about_other_instrumentations(self.package, self.entry_point)
        if self.builtin_tracing:
            _warn_about_builtin_tracing(self.package, self.entry_point, *self.builtin_tracing)
        self._patched: list[tuple[str, str]] = []
        for target in self.targets:
            if target.stream_manager:
                wrapper = _stream_manager_wrapper(tel, target.adapter)
            elif target.is_async:
                wrapper = _async_wrapper(tel, target.adapter)
            else:
                wrapper = _sync_wrapper(tel, target.adapter)
            self._patch(target.module, target.name, wrapper)
        self._patch(self.retry_module, "BaseClient._calculate_retry_timeout", _count_retry)

    def _patch(self, module: str, name: str, wrapper: Callable[..., Any]) -> None:
        try:
            wrap_function_wrapper(module, name, wrapper)
        except (ImportError, AttributeError):
            _LOG.debug("otel-llmcost: %s.%s not in this SDK version; skipped", module, name)
            return
        self._patched.append((module, name))

    def _uninstrument(self, **kwargs: Any) -> None:
        for module, name in getattr(self, "_patched", ()):
            owner, method = name.rsplit(".", 1)
            unwrap(f"{module}.{owner}", method)
        self._patched = []


def _warn_about_other_instrumentations(package: str, ours: str) -> None:
    """Two instrumentations of one SDK make two spans per call; say how to keep one."""
    disabled = {n.strip() for n in os.environ.get(
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "").split(",")}
    try:
        others = [ep for ep in metadata.entry_points(group=sc.ENTRY_POINT_GROUP_INSTRUMENTOR)
                  if package in ep.name.lower() and package in ep.value.lower()
                  and not ep.value.startswith("otel_llmcost") and ep.name not in disabled]
    except Exception:  # noqa: BLE001
        return
    for ep in others:
        dist = ep.dist.name if ep.dist is not None else "another package"
        _LOG.warning(
            "otel-llmcost: %s also instruments %s (entry point %r), so each call would get "
            "two spans. Keep otel-llmcost with OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=%s, or "
            "keep the other one with OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=%s.",
            dist, package, ep.name, ep.name, ours)



def _warn_about_builtin_tracing(package: str, ours: str, module: str, env: str) -> None:
    """Newer SDKs (anthropic 2.x) emit their own span per call, nested under ours."""
    if os.environ.get(env, "").strip().lower() == "false" or find_spec(module) is None:
        return
    _LOG.warning(
        "otel-llmcost: the %s SDK traces its own calls, so each call also gets a child span "
        "that repeats the token counts (without cost). Keep only otel-llmcost's span with "
        "%s=false, or only the SDK's (and lose cost) with "
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=%s.", package, env, ours)
