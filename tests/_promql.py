"""What the PromQL of the dashboards and the alert rules may name: the exported metrics,
with their own labels (and those Prometheus adds)."""

from __future__ import annotations

import re
from typing import Any, Iterator

import promql_parser

from otel_llmcost import semconv as sc
from otel_llmcost.semconv import MetricDef, prometheus_label

# Labels Prometheus adds to every scraped series, and histograms' bucket label.
SCRAPE_LABELS = frozenset({"job", "instance", "le"})


def _exported() -> dict[str, MetricDef]:
    """Every Prometheus sample name the instrumentation and the processor export."""
    names: dict[str, MetricDef] = {}
    for metric in (*sc.INSTRUMENTATION_METRICS, *sc.TELEMETRY_METRICS, *sc.BUDGET_METRICS,
                   *sc.ROLLUP_METRICS, *sc.SERVICE_METRICS):
        suffixes = ("_bucket", "_sum", "_count") if metric.kind == "histogram" else ("",)
        for suffix in suffixes:
            names[metric.prometheus + suffix] = metric
    return names


EXPORTED = _exported()


def selectors(node: Any) -> Iterator[Any]:
    """Every vector selector in a parsed expression."""
    if type(node).__name__ == "VectorSelector":
        yield node
        return
    for attribute in ("args", "expr", "param", "lhs", "rhs", "vector_selector"):
        child = getattr(node, attribute, None)
        if child is None:
            continue
        for item in (child if isinstance(child, list) else [child]):
            yield from selectors(item)


def assert_names_exported(where: str, expr: str, recorded: frozenset[str] = frozenset()
                          ) -> None:
    """``expr`` parses, and every metric, label matcher and grouping label it names is one
    the code exports (``recorded``: names of recording rules, also allowed)."""
    try:
        parsed = promql_parser.parse(expr)
    except ValueError as error:
        raise AssertionError(f"{where}: {expr}: {error}") from None
    found = list(selectors(parsed))
    assert found, where
    known_anywhere: set[str] = set(SCRAPE_LABELS)
    for selector in found:
        if selector.name in recorded:
            continue
        assert selector.name in EXPORTED, (where, selector.name)
        metric = EXPORTED[selector.name]
        known = {prometheus_label(a) for a in metric.attributes} | SCRAPE_LABELS
        known_anywhere |= known
        for matcher in selector.matchers.matchers:
            assert matcher.name in known | {"__name__"}, (where, selector.name, matcher.name)
    grouped = {label.strip() for group in re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", expr)
               for label in group.split(",") if label.strip()}
    assert grouped <= known_anywhere, (where, grouped - known_anywhere)
