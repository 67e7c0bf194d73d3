"""Proxies that keep a streamed call's span open exactly as long as the stream.

A streamed call ends when its stream is exhausted, closed, left by ``with``, garbage
collected, or fails mid-way; each path ends the invocation once (`Invocation.end` is
idempotent). The proxies are `wrapt.ObjectProxy`s, so ``isinstance`` checks and every
attribute the caller uses (``.response``, ``.headers``…) pass through unchanged.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import wrapt

from otel_llmcost import _faults
from otel_llmcost.instrumentation._telemetry import Invocation
from otel_llmcost.instrumentation._types import Accumulator


def _end(invocation: Invocation, accumulator: Accumulator, exc: BaseException | None) -> None:
    try:
        reply = accumulator.reply()
    except Exception as fault:  # noqa: BLE001
        _faults.report("stream.reply", fault)
        reply = None
    invocation.end(reply, exc)


class _ObservingProxy(wrapt.ObjectProxy):  # type: ignore[misc]
    """What the sync and async stream proxies share: their invocation and how it ends."""

    def __init__(self, wrapped: Any, invocation: Invocation, accumulator: Accumulator) -> None:
        super().__init__(wrapped)
        self._self_invocation = invocation
        self._self_accumulator = accumulator

    def _self_end(self, exc: BaseException | None = None) -> None:
        _end(self._self_invocation, self._self_accumulator, exc)

    def _self_hides(self, chunk: Any) -> bool:
        """Record a chunk (one call per chunk: this is the per-chunk hot path)."""
        invocation = self._self_invocation
        if invocation.first_chunk_at is None:
            invocation.first_chunk_at = time.perf_counter()
        try:
            return self._self_accumulator.observe(chunk)
        except Exception as fault:  # noqa: BLE001 - a surprising chunk must not break the stream
            _faults.report("stream.observe", fault)
            return False

    def __del__(self) -> None:
        try:
            self._self_end()
        except Exception:  # noqa: BLE001, S110 - e.g. at interpreter shutdown: nothing to save
            pass


class StreamProxy(_ObservingProxy):
    """Wraps a sync SSE stream (openai/anthropic ``Stream``)."""

    def __iter__(self) -> StreamProxy:
        return self

    def __next__(self) -> Any:
        while True:
            try:
                chunk = self.__wrapped__.__next__()
            except StopIteration:
                self._self_end()
                raise
            except BaseException as exc:
                self._self_end(exc)
                raise
            if not self._self_hides(chunk):
                return chunk

    def __enter__(self) -> StreamProxy:
        self.__wrapped__.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(*exc_info)
        finally:
            self._self_end()

    def close(self) -> None:
        try:
            self.__wrapped__.close()
        finally:
            self._self_end()


class AsyncStreamProxy(_ObservingProxy):
    """Wraps an async SSE stream (openai/anthropic ``AsyncStream``)."""

    def __aiter__(self) -> AsyncStreamProxy:
        return self

    async def __anext__(self) -> Any:
        while True:
            try:
                chunk = await self.__wrapped__.__anext__()
            except StopAsyncIteration:
                self._self_end()
                raise
            except BaseException as exc:
                self._self_end(exc)
                raise
            if not self._self_hides(chunk):
                return chunk

    async def __aenter__(self) -> AsyncStreamProxy:
        await self.__wrapped__.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(*exc_info)
        finally:
            self._self_end()

    async def close(self) -> None:
        try:
            await self.__wrapped__.close()
        finally:
            self._self_end()


class RawResponseProxy(wrapt.ObjectProxy):  # type: ignore[misc]
    """Wraps a ``with_raw_response``/``with_streaming_response`` result.

    The parsed body only exists once the caller calls ``parse()``; we hook it to read
    the reply (or to wrap the stream it returns), and return the same object each time.
    """

    def __init__(self, wrapped: Any, invocation: Invocation,
                 on_parse: Callable[[Any], Any]) -> None:
        super().__init__(wrapped)
        self._self_invocation = invocation
        self._self_on_parse = on_parse
        self._self_parsed: Any = None

    def parse(self, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs:  # parse(to=...) asks for another type: not ours to read
            return self.__wrapped__.parse(*args, **kwargs)
        if self._self_parsed is None:
            parsed = self.__wrapped__.parse()
            self._self_parsed = self._self_on_parse(parsed)
        return self._self_parsed

    def __del__(self) -> None:
        if self._self_parsed is None:  # never parsed: nothing more will be learned
            try:
                self._self_invocation.end(None)
            except Exception:  # noqa: BLE001, S110 - e.g. at interpreter shutdown
                pass


class AsyncRawResponseProxy(RawResponseProxy):
    """Async variant: ``parse()`` is a coroutine."""

    async def parse(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if args or kwargs:
            return await self.__wrapped__.parse(*args, **kwargs)
        if self._self_parsed is None:
            parsed = await self.__wrapped__.parse()
            self._self_parsed = self._self_on_parse(parsed)
        return self._self_parsed


class StreamManagerProxy(wrapt.ObjectProxy):  # type: ignore[misc]
    """Wraps a stream helper's context manager (``messages.stream``).

    The request is only sent on ``__enter__``, so the invocation starts there. The helper
    stream reads events from its ``_raw_stream``; we put a `StreamProxy` in its place, so
    every way of consuming the helper (iteration, ``text_stream``, ``get_final_message``)
    and of closing it goes through our proxy.
    """

    def __init__(self, wrapped: Any, begin: Callable[[], Invocation],
                 accumulator: Accumulator) -> None:
        super().__init__(wrapped)
        self._self_begin = begin
        self._self_accumulator = accumulator

    def __enter__(self) -> Any:
        invocation = _begin(self._self_begin)
        if invocation is None:
            return self.__wrapped__.__enter__()
        with invocation:
            helper = self.__wrapped__.__enter__()
        _observe_helper(helper, invocation, self._self_accumulator, StreamProxy)
        return helper

    def __exit__(self, *exc_info: Any) -> Any:
        return self.__wrapped__.__exit__(*exc_info)

    async def __aenter__(self) -> Any:
        invocation = _begin(self._self_begin)
        if invocation is None:
            return await self.__wrapped__.__aenter__()
        with invocation:
            helper = await self.__wrapped__.__aenter__()
        _observe_helper(helper, invocation, self._self_accumulator, AsyncStreamProxy)
        return helper

    async def __aexit__(self, *exc_info: Any) -> Any:
        return await self.__wrapped__.__aexit__(*exc_info)


def _begin(begin: Callable[[], Invocation]) -> Invocation | None:
    try:
        return begin()
    except Exception as fault:  # noqa: BLE001
        _faults.report("stream_manager.begin", fault)
        return None


def _observe_helper(helper: Any, invocation: Invocation, accumulator: Accumulator,
                    proxy: type[wrapt.ObjectProxy]) -> None:
    try:
        helper._raw_stream = proxy(helper._raw_stream, invocation, accumulator)
    except Exception as fault:  # noqa: BLE001 - an SDK shape we do not know
        _faults.report("stream_manager.observe", fault)
        invocation.end(None)
