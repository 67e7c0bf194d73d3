"""Local price overrides: models genai-prices does not know, and negotiated discounts.

The file named by ``LLMCOST_PRICES_FILE`` (YAML if it ends ``.yaml``/``.yml``, JSON
otherwise) holds a list of entries. Prices are USD per million tokens::

    # Add or replace a model's prices (fine-tuned, self-hosted). Wins over genai-prices.
    - provider: openai
      model: "ft:gpt-4o-mini-2024-07-18:acme"
      match: prefix              # exact (default) | prefix
      input_mtok: 0.30
      output_mtok: 1.20
      cache_read_mtok: 0.15      # optional, default: input price
      cache_write_mtok: 0.30     # optional, 5-minute writes, default: input price
      cache_write_1h_mtok: 0.60  # optional, default: 2x input (anthropic) or the 5-minute price
      tiers:                     # optional long-context cliffs: above the threshold, every
        - above_input_tokens: 200000   # token of the call is priced at the tier's prices
          input_mtok: 0.60             # (same keys and defaults as above)
          output_mtok: 2.40

    # Negotiated discount: multiply the list (or overridden) price by 1 - discount.
    - {provider: anthropic, model: "claude-", match: prefix, discount: 0.2}

``provider`` and ``model`` compare case-insensitively. Price entries and discount entries
are looked up independently; among matching entries of one kind, an exact entry beats
prefix entries and a longer prefix beats a shorter one. Any malformed entry, unknown key
or duplicate makes the whole file invalid (``ValueError``), so a typo cannot silently leave
list prices in place.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from otel_llmcost.pricing._rates import Band, Rates, make_band

T = TypeVar("T")

_TARGET_KEYS = frozenset({"provider", "model", "match"})
_PRICE_KEYS = ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok",
               "cache_write_1h_mtok")
_REQUIRED_PRICE_KEYS = _PRICE_KEYS[:2]
_ABOVE = "above_input_tokens"
_TIERS = "tiers"
_DISCOUNT = "discount"
_MATCH_MODES = {"exact": False, "prefix": True}
_YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class _Rule(Generic[T]):
    provider: str
    model: str
    prefix: bool
    value: T

    def matches(self, provider: str, model: str) -> bool:
        return self.provider == provider and (
            model.startswith(self.model) if self.prefix else model == self.model)

    def specificity(self) -> tuple[bool, int]:
        return not self.prefix, len(self.model)


class Overrides:
    """A parsed override file; consulted only when a model's rates are compiled."""

    def __init__(self, prices: list[_Rule[Rates]], discounts: list[_Rule[float]],
                 digest: str) -> None:
        self._prices = prices
        self._discounts = discounts
        self.digest = digest

    def rates(self, provider: str, model: str) -> Rates | None:
        """Overridden rates for the model, or None to use list prices."""
        rule = _best(self._prices, provider.lower(), model.lower())
        return None if rule is None else rule.value

    def factor(self, provider: str, model: str) -> float:
        """What the model's price is multiplied by (1 - negotiated discount)."""
        rule = _best(self._discounts, provider.lower(), model.lower())
        return 1.0 if rule is None else 1.0 - rule.value


def load(path: str) -> Overrides:
    """Read and validate an override file; raise ValueError saying what is wrong."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read price overrides {path!r}: {exc}") from exc
    prices: list[_Rule[Rates]] = []
    discounts: list[_Rule[float]] = []
    seen: set[tuple[bool, str, str, bool]] = set()
    data = _parse(path, raw)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of entries, got {type(data).__name__}")
    for index, entry in enumerate(data):
        where = f"{path}: entry {index}"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where}: expected a mapping, got {type(entry).__name__}")
        provider, model, prefix = _target(entry, where)
        is_discount = _DISCOUNT in entry
        if (is_discount, provider, model, prefix) in seen:
            raise ValueError(f"{where}: duplicate entry for {provider}/{model}")
        seen.add((is_discount, provider, model, prefix))
        if is_discount:
            _check_keys(entry, _TARGET_KEYS | {_DISCOUNT}, where)
            discount = _number(entry, _DISCOUNT, where)
            if discount > 1:
                raise ValueError(f"{where}: discount is a fraction in [0, 1], got {discount!r}")
            discounts.append(_Rule(provider, model, prefix, discount))
        else:
            _check_keys(entry, _TARGET_KEYS | {*_PRICE_KEYS, _TIERS}, where)
            rates = Rates(_band(provider, entry, where),
                          _tiers(provider, entry.get(_TIERS, []), where))
            prices.append(_Rule(provider, model, prefix, rates))
    return Overrides(prices, discounts, hashlib.sha256(raw).hexdigest()[:8])


def _best(rules: list[_Rule[T]], provider: str, model: str) -> _Rule[T] | None:
    return max((rule for rule in rules if rule.matches(provider, model)),
               key=_Rule.specificity, default=None)


def _parse(path: str, raw: bytes) -> Any:
    if not path.lower().endswith(_YAML_SUFFIXES):
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"{path}: invalid JSON: {exc}") from exc
    import yaml  # only when a YAML file is configured, to keep importing this package cheap

    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: invalid YAML: {exc}") from exc


def _target(entry: Mapping[str, Any], where: str) -> tuple[str, str, bool]:
    provider, model = entry.get("provider"), entry.get("model")
    if not isinstance(provider, str) or not provider or not isinstance(model, str) or not model:
        raise ValueError(f"{where}: 'provider' and 'model' must be non-empty strings")
    mode = entry.get("match", "exact")
    if mode not in _MATCH_MODES:
        raise ValueError(f"{where}: match must be one of {sorted(_MATCH_MODES)}, got {mode!r}")
    return provider.lower(), model.lower(), _MATCH_MODES[mode]


def _tiers(provider: str, tiers: Any, where: str) -> tuple[tuple[int, Band], ...]:
    if not isinstance(tiers, list):
        raise ValueError(f"{where}: tiers must be a list")
    parsed: dict[int, Band] = {}
    for index, tier in enumerate(tiers):
        tier_where = f"{where}: tier {index}"
        if not isinstance(tier, Mapping):
            raise ValueError(f"{tier_where}: expected a mapping")
        _check_keys(tier, {_ABOVE, *_PRICE_KEYS}, tier_where)
        above = tier.get(_ABOVE)
        if type(above) is not int or above < 0:
            raise ValueError(f"{tier_where}: {_ABOVE} must be a non-negative integer")
        if above in parsed:
            raise ValueError(f"{tier_where}: duplicate {_ABOVE} {above}")
        parsed[above] = _band(provider, tier, tier_where)
    return tuple(sorted(parsed.items(), reverse=True))


def _band(provider: str, prices: Mapping[str, Any], where: str) -> Band:
    missing = [key for key in _REQUIRED_PRICE_KEYS if key not in prices]
    if missing:
        raise ValueError(f"{where}: missing {', '.join(missing)} (or give a discount)")
    input_mtok, output_mtok = (_number(prices, key, where) for key in _REQUIRED_PRICE_KEYS)
    return make_band(provider, input_mtok, output_mtok,
                     *(_number(prices, key, where) if key in prices else None
                       for key in _PRICE_KEYS[len(_REQUIRED_PRICE_KEYS):]))


def _number(entry: Mapping[str, Any], key: str, where: str) -> float:
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            math.isfinite(value) and value >= 0):
        raise ValueError(f"{where}: {key} must be a non-negative number, got {value!r}")
    return float(value)


def _check_keys(entry: Mapping[str, Any], allowed: set[str] | frozenset[str], where: str) -> None:
    unknown = set(entry) - allowed
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(map(str, unknown))}")
