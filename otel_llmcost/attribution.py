"""Who pays for a call: customer (and tier), conversation and feature, from code scope or
baggage.

`attributes()` stores the values in a context variable, so they follow asyncio tasks and
nested scopes. Threads do not inherit context variables, so on first use we wrap
``Thread.start`` and ``ThreadPoolExecutor.submit`` to carry only our value
into threads started (or work submitted) inside a scope. W3C baggage with the same keys
lets a web tier set them once for a whole request; a code scope wins over baggage.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Mapping, TypeVar

from opentelemetry import baggage
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Span, SpanProcessor

from otel_llmcost import semconv

_F = TypeVar("_F", bound=Callable[..., Any])
_SCOPE: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "otel_llmcost_attributes", default=None)
_EMPTY: Mapping[str, str] = {}
_threads_patched = False
_patch_lock = threading.Lock()


class attributes:  # noqa: N801 - used like a function: `with attributes(...)` / `@attributes(...)`
    """Attribute every LLM call in this scope to a customer (and its tier, which budgets
    can select on), a conversation and a feature.

    Works as a context manager (sync and async) and as a decorator. Nested scopes
    override only the keys they set. Values are strings; None leaves a key as it was.
    """

    __slots__ = ("_values", "_tokens")

    def __init__(self, *, customer_id: str | None = None, conversation_id: str | None = None,
                 feature: str | None = None, customer_tier: str | None = None) -> None:
        values = {semconv.LLMCOST_CUSTOMER_ID: customer_id,
                  semconv.GEN_AI_CONVERSATION_ID: conversation_id,
                  semconv.LLMCOST_FEATURE: feature,
                  semconv.LLMCOST_CUSTOMER_TIER: customer_tier}
        self._values = {k: str(v) for k, v in values.items() if v is not None}
        self._tokens: list[contextvars.Token[Mapping[str, str] | None]] = []
        _patch_threads()

    def __enter__(self) -> attributes:
        outer = _SCOPE.get() or _EMPTY
        self._tokens.append(_SCOPE.set({**outer, **self._values}))
        return self

    def __exit__(self, *exc: object) -> None:
        _SCOPE.reset(self._tokens.pop())

    async def __aenter__(self) -> attributes:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__(*exc)

    def __call__(self, func: _F) -> _F:
        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def async_scoped(*args: Any, **kwargs: Any) -> Any:
                with self:
                    return await func(*args, **kwargs)
            return async_scoped  # type: ignore[return-value]

        @functools.wraps(func)
        def scoped(*args: Any, **kwargs: Any) -> Any:
            with self:
                return func(*args, **kwargs)
        return scoped  # type: ignore[return-value]


def current() -> Mapping[str, str]:
    """The attribution for a call starting now: baggage overlaid by the code scope."""
    scope = _SCOPE.get()
    entries = baggage.get_all()
    if not entries:
        return scope or _EMPTY
    found = {k: str(entries[k]) for k in semconv.BAGGAGE_KEYS if k in entries}
    if scope:
        found.update(scope)
    return found


class ScopeOnEverySpan(SpanProcessor):
    """Puts the code scope's attribution on every span started inside it, not only on LLM
    spans: a collector routing or grouping by customer or conversation (the scale-out
    gateway) reads it from whichever span of a trace comes first. `sampling.install`
    adds it under ``opentelemetry-instrument``."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        scope = _SCOPE.get()
        if scope and span.instrumentation_scope.name != semconv.INSTRUMENTATION_SCOPE:
            span.set_attributes(scope)  # our LLM spans have it already


def _patch_threads() -> None:
    """Carry the scope into threads; done once, on the first `attributes()`."""
    global _threads_patched
    if _threads_patched:
        return
    with _patch_lock:
        if _threads_patched:
            return
        start, submit = threading.Thread.start, ThreadPoolExecutor.submit

        @functools.wraps(start)
        def start_with_scope(self: threading.Thread) -> None:
            scope = _SCOPE.get()
            if scope is not None:  # instance attribute: also covers subclasses' run()
                self.run = functools.partial(_run_in_scope, scope, self.run)  # type: ignore[method-assign]
            start(self)

        @functools.wraps(submit)
        def submit_with_scope(self: ThreadPoolExecutor, fn: Callable[..., Any], /,
                              *args: Any, **kwargs: Any) -> Any:
            scope = _SCOPE.get()
            if scope is not None:
                fn = functools.partial(_run_in_scope, scope, fn)
            return submit(self, fn, *args, **kwargs)

        threading.Thread.start = start_with_scope  # type: ignore[method-assign]
        ThreadPoolExecutor.submit = submit_with_scope  # type: ignore[method-assign]
        _threads_patched = True


def _run_in_scope(scope: Mapping[str, str], fn: Callable[..., Any], *args: Any,
                  **kwargs: Any) -> Any:
    token = _SCOPE.set(scope)
    try:
        return fn(*args, **kwargs)
    finally:
        _SCOPE.reset(token)
