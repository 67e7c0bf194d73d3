"""W3C/OpenTelemetry consistent probability sampling: thresholds and the ``ot`` tracestate.

Pure functions, no SDK types. A trace's randomness R is its ``ot=rv`` value when present,
else the low 56 bits of its trace id; a sampler with rejection threshold T keeps the trace
iff R >= T, so every service using the same probability makes the same decision, and a
lower T keeps a superset. T = (1 - p) * 2^56, rounded to ``PRECISION`` hex digits and
written as ``ot=th:<hex without trailing zeros>`` (100 % is ``th:0``; 1 % is ``th:fd70a4``,
the specification's example). The adjusted count of a kept span is 2^56 / (2^56 - T).
"""

from __future__ import annotations

MAX_THRESHOLD = 1 << 56
_DIGITS = 14
PRECISION = 6  # hex digits kept in ``th``: enough for 0.0001 % steps, short on the wire
_STEP = 16 ** (_DIGITS - PRECISION)
_MAX_OT_LENGTH = 256


def threshold(probability: float) -> int:
    """Rejection threshold for ``probability`` in [2^-56, 1] (clamped)."""
    p = min(1.0, max(probability, 1.0 / MAX_THRESHOLD))
    t = round((1.0 - p) * MAX_THRESHOLD / _STEP) * _STEP
    return min(t, MAX_THRESHOLD - _STEP)  # never reject everything: p > 0 keeps some


def encode(t: int) -> str:
    """``th`` value: 14 hex digits with trailing zeros removed (``0`` for 100 %)."""
    return f"{t:014x}".rstrip("0") or "0"


def decode(value: str) -> int | None:
    """Threshold from a ``th`` value, or None if malformed."""
    if not 1 <= len(value) <= _DIGITS:
        return None
    try:
        return int(value.ljust(_DIGITS, "0"), 16)
    except ValueError:
        return None


def randomness(trace_id: int, rv: str | None) -> int:
    """R: the explicit ``rv`` if valid, else the trace id's low 56 bits."""
    if rv is not None and len(rv) == _DIGITS:
        try:
            return int(rv, 16)
        except ValueError:
            pass
    return trace_id & (MAX_THRESHOLD - 1)


def adjusted_count(t: int) -> float:
    """How many spans a span kept at threshold ``t`` stands for."""
    return MAX_THRESHOLD / (MAX_THRESHOLD - t)


def parse_ot(value: str | None) -> dict[str, str]:
    """The sub-keys of an ``ot`` tracestate value (``th:c;rv:…``)."""
    if not value:
        return {}
    fields = {}
    for part in value.split(";"):
        key, sep, sub = part.partition(":")
        if sep and key:
            fields[key] = sub
    return fields


def format_ot(fields: dict[str, str]) -> str | None:
    """An ``ot`` value from sub-keys, ``th`` first; None if it would exceed 256 chars."""
    ordered = sorted(fields.items(), key=lambda kv: (kv[0] != "th", kv[0]))
    value = ";".join(f"{k}:{v}" for k, v in ordered)
    return value if len(value) <= _MAX_OT_LENGTH else None
