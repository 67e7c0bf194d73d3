"""Reading settings from environment variables: a bad value is logged once, never fatal."""

from __future__ import annotations

import logging
import os

from otel_llmcost import semconv as sc

_LOG = logging.getLogger("otel_llmcost")
_TRUE = frozenset(("1", "true", "yes", "on"))
_FALSE = frozenset(("0", "false", "no", "off"))
# OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT values that mean "on spans".
_OTEL_CAPTURE_ON_SPANS = frozenset(("true", "span_only", "span_and_event"))


def number(name: str, default: float, high: float | None = None, positive: bool = False,
           raw: str | None = None) -> float:
    """A number ≥ 0 (> 0 if ``positive``, ≤ ``high``) from ``raw`` or the variable."""
    if raw is None:
        raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
        if value != value or value < 0 or (positive and value == 0) or (
                high is not None and value > high):
            raise ValueError(raw)
    except ValueError:
        _LOG.warning("otel-llmcost: %s=%r is not a number in range; using %s", name, raw,
                     default)
        return default
    return value


def optional(name: str, high: float | None = None, positive: bool = False) -> float | None:
    """Like `number`, but None when unset (or invalid)."""
    value = number(name, -1.0, high, positive)
    return None if value < 0 else value


def flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    if raw:
        _LOG.warning("otel-llmcost: %s=%r is not true or false; using %s", name, raw, default)
    return default


def capture_mode() -> str:
    """``LLMCOST_CAPTURE_CONTENT`` wins; else the standard GenAI variable means all or off."""
    raw = os.environ.get(sc.ENV_CAPTURE_CONTENT, "").strip().lower()
    if raw in (sc.CAPTURE_OFF, sc.CAPTURE_KEPT, sc.CAPTURE_ALL):
        return raw
    if raw:
        _LOG.warning("otel-llmcost: %s=%r is not off, kept or all; content stays off",
                     sc.ENV_CAPTURE_CONTENT, raw)
        return sc.CAPTURE_OFF
    standard = os.environ.get(sc.ENV_OTEL_CAPTURE_CONTENT, "").strip().lower()
    return sc.CAPTURE_ALL if standard in _OTEL_CAPTURE_ON_SPANS else sc.CAPTURE_OFF


def content_max_chars() -> int:
    return int(number(sc.ENV_CONTENT_MAX_CHARS, 2000, positive=True))
