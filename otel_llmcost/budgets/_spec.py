"""What a budget is, and the settings of the ledger that enforces it, from code or YAML.

A budget covers the calls that match its filters (customer, tier, feature; none: every
call), one counter for all of them or one per customer (``each_customer``), per day or
month in its time zone. Validation is strict and happens once, at configuration: a typo
in a budget file must not silently turn a limit off.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

Period = Literal["day", "month"]
StoreKind = Literal["memory", "sqlite", "redis"]
_PERIODS = ("day", "month")
_STORES = ("memory", "sqlite", "redis")
_FAIL_MODES = ("open", "closed")


@dataclass(frozen=True)
class Budget:
    """One budget: which calls it covers, its period and its two limits (USD).

    ``soft_usd`` is where notifications fire (at 80 % and 100 %, once per period);
    ``hard_usd`` is where calls are refused before they are sent, if ``enforce``.
    """

    name: str
    hard_usd: float
    soft_usd: float | None = None
    period: Period = "day"
    timezone: str = "UTC"
    customer: str | None = None
    tier: str | None = None
    feature: str | None = None
    each_customer: bool = False
    enforce: bool = False  # a first deployment records what it would refuse

    def __post_init__(self) -> None:
        if not self.name or "|" in self.name:
            raise ValueError(f"budget name {self.name!r}: must be non-empty, without '|'")
        if self.period not in _PERIODS:
            raise ValueError(f"budget {self.name}: period {self.period!r} is not day or month")
        if not _positive(self.hard_usd):
            raise ValueError(f"budget {self.name}: hard_usd must be a number > 0")
        if self.soft_usd is not None and not (_positive(self.soft_usd)
                                              and self.soft_usd <= self.hard_usd):
            raise ValueError(f"budget {self.name}: soft_usd must be > 0 and <= hard_usd")
        if type(self.enforce) is not bool or type(self.each_customer) is not bool:
            raise ValueError(f"budget {self.name}: enforce and each_customer are true/false")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"budget {self.name}: unknown time zone {self.timezone!r}"
                             ) from None


@dataclass(frozen=True)
class Settings:
    """The ledger: its budgets, where the shared state lives and what to do without it."""

    budgets: tuple[Budget, ...] = ()
    store: StoreKind = "memory"
    sqlite_path: str | None = None
    redis_url: str | None = None
    # The longest a call may wait for the store; past it the store counts as unavailable.
    timeout_s: float = 0.05
    on_store_error: Literal["open", "closed"] = "open"
    # Worst case of a call that sets no max_tokens: this many output tokens.
    default_max_tokens: int = 4096
    # Input tokens of the worst case: "tiktoken" (an estimate, about 0.3 µs per token of
    # text not seen before) or "bytes" (UTF-8 bytes: never fewer than the tokens, about
    # 4 times as many in English, and free: for apps that send long new texts each call).
    input_estimate: Literal["tiktoken", "bytes"] = "tiktoken"
    # A reservation never settled (its process died) is reclaimed after this long.
    reservation_ttl_s: float = 600.0
    # Per-customer budgets export the gauges of this many customers (the top spenders).
    top_k: int = 20
    key_prefix: str = "llmcost:"

    def __post_init__(self) -> None:
        if self.store not in _STORES:
            raise ValueError(f"store {self.store!r} is not one of {', '.join(_STORES)}")
        if self.store == "sqlite" and not self.sqlite_path:
            raise ValueError("store sqlite needs sqlite_path")
        if self.store == "redis" and not self.redis_url:
            raise ValueError("store redis needs redis_url")
        if self.on_store_error not in _FAIL_MODES:
            raise ValueError(f"on_store_error {self.on_store_error!r} is not open or closed")
        if not _positive(self.timeout_s) or not _positive(self.reservation_ttl_s):
            raise ValueError("timeout_s and reservation_ttl_s must be numbers > 0")
        if self.input_estimate not in ("tiktoken", "bytes"):
            raise ValueError(f"input_estimate {self.input_estimate!r} is not tiktoken or bytes")
        if type(self.default_max_tokens) is not int or self.default_max_tokens < 0:
            raise ValueError("default_max_tokens must be an integer >= 0")
        names = [b.name for b in self.budgets]
        if len(set(names)) != len(names):
            raise ValueError("budget names must be unique")


def load(path: str | Path) -> Settings:
    """Settings from a YAML file (see the README's budgets section for the format)."""
    document = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(document, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return from_mapping(document)


def from_mapping(document: dict[str, Any]) -> Settings:
    """Settings from parsed YAML/JSON; unknown keys are errors (a typo must not pass)."""
    raw_budgets = document.get("budgets") or []
    if not isinstance(raw_budgets, list):
        raise ValueError("budgets: expected a list")
    budgets = tuple(_build(Budget, entry, f"budgets[{i}]") for i, entry in
                    enumerate(raw_budgets))
    top = {k: v for k, v in document.items() if k != "budgets"}
    return _build(Settings, {**top, "budgets": budgets}, "budgets file")


def _build(cls: type[Any], entry: Any, where: str) -> Any:
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected a mapping")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(entry) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}")
    try:
        return cls(**entry)
    except TypeError as error:  # a missing required key
        raise ValueError(f"{where}: {error}") from None


def _positive(value: Any) -> bool:
    return type(value) in (int, float) and value > 0 and value != float("inf")
