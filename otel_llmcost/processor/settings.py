"""The processor's settings: defaults, then a YAML file, then environment variables.

Every field of `Settings` and of the engine's `Config` is a setting: ``trace_wait_s`` in
the YAML file named by ``LLMCOST_PROCESSOR_CONFIG``, or ``LLMCOST_PROCESSOR_TRACE_WAIT_S``
in the environment (which wins). Unknown names and bad values stop start-up with a clear
message: a service should not run on a setting it silently ignored.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import yaml

from otel_llmcost import semconv as sc
from otel_llmcost.processor.engine import Config

_OFF = ("", "off", "none", "false")


class SettingsError(ValueError):
    """A setting that cannot be used (the message names it)."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Where the processor listens and forwards, its limits, and its state file."""

    grpc_endpoint: str | None = "127.0.0.1:4317"  # "off" disables a listener
    http_endpoint: str | None = "127.0.0.1:4318"
    metrics_endpoint: str | None = "127.0.0.1:9464"
    forward_endpoint: str | None = None  # next hop for the traces, unchanged
    forward_protocol: str = "http/protobuf"  # or "grpc"
    forward_queue: int = 1000  # requests waiting to be forwarded; more are dropped, counted
    # Anomalies as OTLP log records: a URL (http://host:4318/v1/logs), or host:port for grpc.
    logs_endpoint: str | None = None
    logs_protocol: str = "http/protobuf"  # or "grpc"
    token: str | None = None  # bearer token required on both receivers when set
    tls_cert: str | None = None
    tls_key: str | None = None
    state_path: str | None = "llmcost-processor.db"  # SQLite checkpoints; "off": memory only
    checkpoint_s: float = 5.0
    queue_batches: int = 1024  # requests waiting for the engine; more are refused (retry)
    max_request_bytes: int = 16 * 1024 * 1024
    max_id_chars: int = 256
    engine: Config = field(default_factory=Config)

    @classmethod
    def load(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        values: dict[str, Any] = {}
        path = environ.get(sc.ENV_PROCESSOR_CONFIG)
        if path:
            try:
                with open(path, encoding="utf-8") as file:
                    loaded = yaml.safe_load(file) or {}
            except (OSError, yaml.YAMLError) as error:
                raise SettingsError(f"{sc.ENV_PROCESSOR_CONFIG}={path}: {error}") from error
            if not isinstance(loaded, dict):
                raise SettingsError(f"{path}: expected a mapping of settings")
            values.update(loaded)
        known = {f.name: f for f in dataclasses.fields(cls) if f.name != "engine"}
        engine_fields = {f.name: f for f in dataclasses.fields(Config)}
        for name in values:
            if name not in known and name not in engine_fields:
                raise SettingsError(f"{path}: unknown setting {name!r}")
        for name in (*known, *engine_fields):
            raw = environ.get(sc.ENV_PROCESSOR_PREFIX + name.upper())
            if raw is not None:
                values[name] = raw
        own = {n: _convert(n, v, known[n].type) for n, v in values.items() if n in known}
        engine = {n: _convert(n, v, engine_fields[n].type) for n, v in values.items()
                  if n in engine_fields}
        return cls(**own, engine=Config(**engine))


def _convert(name: str, value: Any, kind: Any) -> Any:
    text = str(kind)
    if "None" in text and (value is None or str(value).strip().lower() in _OFF):
        return None
    try:
        if text.startswith("int"):
            number = int(value)
        elif text.startswith("float"):
            number = float(value)
        else:
            return str(value)
    except (TypeError, ValueError):
        raise SettingsError(f"setting {name}: {value!r} is not a number") from None
    if not number >= 0:  # also refuses NaN
        raise SettingsError(f"setting {name}: {value!r} must not be negative")
    return number


def endpoint(value: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:4317`` for IPv6) → (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise SettingsError(f"endpoint {value!r}: expected host:port")
    return host.strip("[]") or "127.0.0.1", int(port)
