"""The contract: every span attribute, metric, unit, env var and entry-point name.

Code, tests, docs and the dashboard builder import names from here so that a name is
spelled exactly once. GenAI names follow the OpenTelemetry GenAI semantic conventions
(development status); ``llmcost.*`` names are this project's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# --- GenAI semantic-convention span attributes -------------------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_STREAM: Final = "gen_ai.request.stream"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
GEN_AI_SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
ERROR_TYPE: Final = "error.type"

# Cost attributes proposed in semantic-conventions-genai PR #443.
GEN_AI_USAGE_COST_AMOUNT: Final = "gen_ai.usage.cost.amount"
GEN_AI_USAGE_COST_CURRENCY: Final = "gen_ai.usage.cost.currency"
GEN_AI_USAGE_COST_SOURCE: Final = "gen_ai.usage.cost.source"

# --- otel-llmcost span attributes --------------------------------------------------
LLMCOST_COST_INPUT: Final = "llmcost.cost.input"
LLMCOST_COST_CACHE_READ: Final = "llmcost.cost.cache_read"
LLMCOST_COST_CACHE_WRITE: Final = "llmcost.cost.cache_write"
LLMCOST_COST_OUTPUT: Final = "llmcost.cost.output"
LLMCOST_CACHE_SAVINGS: Final = "llmcost.cache.savings"
LLMCOST_PRICING_STATUS: Final = "llmcost.pricing.status"
LLMCOST_PRICING_VERSION: Final = "llmcost.pricing.version"
LLMCOST_SERVICE_TIER: Final = "llmcost.service_tier"
LLMCOST_RETRIES: Final = "llmcost.retries"
LLMCOST_CUSTOMER_ID: Final = "llmcost.customer.id"
LLMCOST_FEATURE: Final = "llmcost.feature"
LLMCOST_CUSTOMER_TIER: Final = "llmcost.customer.tier"  # the customer's plan, for budgets
# Set by the scale-out gateway (collector/gateway.yaml) and used as its routing key.
LLMCOST_ROUTE: Final = "llmcost.route"
LLMCOST_SAMPLING_ADJUSTED_COUNT: Final = "llmcost.sampling.adjusted_count"
LLMCOST_SAMPLING_RULE: Final = "llmcost.sampling.rule"
# Values of llmcost.sampling.rule: why an exported span was kept. A trace that a tail rule
# keeps has adjusted count 1 (it would be kept whatever its randomness); when several
# rules match, the first in SAMPLING_RULES names it.
SAMPLING_RULE_PROBABILITY: Final = "probability"
SAMPLING_RULE_COST: Final = "cost"
SAMPLING_RULE_TOP_PERCENT: Final = "top_percent"
SAMPLING_RULE_ERROR: Final = "error"
SAMPLING_RULE_SLOW: Final = "slow"
SAMPLING_RULES: Final = (SAMPLING_RULE_COST, SAMPLING_RULE_TOP_PERCENT, SAMPLING_RULE_ERROR,
                         SAMPLING_RULE_SLOW)
# Metric attribute of llmcost.telemetry.spans.dropped, and its values.
LLMCOST_SAMPLING_DROP_REASON: Final = "llmcost.sampling.drop_reason"
DROP_SAMPLED_OUT: Final = "sampled_out"  # no rule kept it and the head probability did not
DROP_RATE_LIMITED: Final = "rate_limited"  # a rule kept it, LLMCOST_KEEP_MAX_PER_SECOND did not
DROP_REASONS: Final = (DROP_SAMPLED_OUT, DROP_RATE_LIMITED)
# Content capture modes (LLMCOST_CAPTURE_CONTENT).
CAPTURE_OFF: Final = "off"
CAPTURE_KEPT: Final = "kept"  # only on traces kept by a tail rule
CAPTURE_ALL: Final = "all"

# Values
CURRENCY_USD: Final = "USD"
SOURCE_LOCAL: Final = "local"
SOURCE_PROVIDER: Final = "provider"
STATUS_EXACT: Final = "exact"
STATUS_ESTIMATED: Final = "estimated"
STATUS_UNKNOWN: Final = "unknown"
PROVIDER_OPENAI: Final = "openai"
PROVIDER_ANTHROPIC: Final = "anthropic"
OP_CHAT: Final = "chat"
OP_EMBEDDINGS: Final = "embeddings"

# Baggage keys read for attribution (same spelling as the span attributes).
BAGGAGE_KEYS: Final = (LLMCOST_CUSTOMER_ID, GEN_AI_CONVERSATION_ID, LLMCOST_FEATURE,
                       LLMCOST_CUSTOMER_TIER)

# --- Metrics: (name, unit) ---------------------------------------------------------
METRIC_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
UNIT_SECONDS: Final = "s"
METRIC_TOKEN_USAGE: Final = "gen_ai.client.token.usage"
UNIT_TOKEN: Final = "{token}"
METRIC_COST: Final = "llmcost.cost"
METRIC_REQUEST_COST: Final = "llmcost.request.cost"
UNIT_USD: Final = "USD"
METRIC_TOKENS: Final = "llmcost.tokens"
METRIC_CACHE_SAVINGS: Final = "llmcost.cache.savings"
METRIC_UNPRICED_CALLS: Final = "llmcost.unpriced.calls"
UNIT_CALL: Final = "{call}"

# The observability tax (sampling self-metrics). seen = exported + dropped + buffered.
METRIC_TELEMETRY_SPANS_SEEN: Final = "llmcost.telemetry.spans.seen"
METRIC_TELEMETRY_SPANS_EXPORTED: Final = "llmcost.telemetry.spans.exported"  # by rule
METRIC_TELEMETRY_SPANS_DROPPED: Final = "llmcost.telemetry.spans.dropped"  # by drop reason
METRIC_TELEMETRY_BYTES: Final = "llmcost.telemetry.bytes.exported"  # estimated OTLP size
METRIC_TELEMETRY_COST: Final = "llmcost.telemetry.cost"  # from the user's telemetry prices
UNIT_SPAN: Final = "{span}"
UNIT_BYTES: Final = "By"
UNIT_TRACE: Final = "{trace}"
METRIC_SAMPLING_BUFFERED_SPANS: Final = "llmcost.sampling.buffer.spans"  # gauge
METRIC_SAMPLING_OVERFLOWS: Final = "llmcost.sampling.buffer.overflows"  # decided early: full
METRIC_SAMPLING_TIMEOUTS: Final = "llmcost.sampling.buffer.timeouts"  # decided: root never ended
METRIC_SAMPLING_TOP_THRESHOLD: Final = "llmcost.sampling.top_percent.threshold"  # gauge, USD

# Metric attributes (low cardinality only: never customer or conversation ids).
LLMCOST_COST_COMPONENT: Final = "llmcost.cost.component"
LLMCOST_TOKEN_KIND: Final = "llmcost.token.kind"
COST_COMPONENTS: Final = ("input", "cache_read", "cache_write", "output")
TOKEN_KINDS: Final = ("input_uncached", "cache_read", "cache_write", "output")
# llmcost.cache.savings is a monotonic counter, so a call's net cache effect goes to
# "saving" when positive and to "premium" when negative: net = saving - premium.
LLMCOST_CACHE_EFFECT: Final = "llmcost.cache.effect"
CACHE_EFFECT_SAVING: Final = "saving"
CACHE_EFFECT_PREMIUM: Final = "premium"

# Bucket advisories. Token and duration buckets are the semantic-convention ones.
TOKEN_BUCKETS: Final = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576,
                        4194304, 16777216, 67108864)
DURATION_BUCKETS: Final = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12,
                           10.24, 20.48, 40.96, 81.92)
# Log-spaced USD buckets (1-2-5 per decade, 1e-6 … 100) so p99 of a cheap call is visible.
COST_BUCKETS: Final = tuple(
    float(f"{m}e{e}") for e in range(-6, 2) for m in (1, 2, 5)
) + (100.0,)

# --- The rollup processor's metrics (otel-llmcost-processor, Prometheus endpoint) ------
# One catalogue: the processor exports exactly these and the dashboards import them.
# Conversation and trace ids are never labels; customer ids only on top_cost (top K).


@dataclass(frozen=True, slots=True, eq=False)
class MetricDef:
    """A metric of the contract: name, instrument kind, unit, labels and buckets.

    Compared and hashed by identity (each is a module constant): the engine keys every
    series by its MetricDef, and a field-wise hash over the buckets costs microseconds.
    """

    name: str
    kind: str  # "counter", "gauge" or "histogram"
    unit: str
    description: str
    attributes: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()

    @property
    def prometheus(self) -> str:
        """The Prometheus name, as OpenTelemetry's Prometheus translation spells it."""
        return prometheus_name(self.name, self.unit, self.kind == "counter")


def prometheus_label(name: str) -> str:
    """``llmcost.turn.bucket`` → ``llmcost_turn_bucket``."""
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name)


def prometheus_name(name: str, unit: str, counter: bool = False) -> str:
    """``llmcost.trace.cost`` + ``USD`` → ``llmcost_trace_cost_USD``; counters get ``_total``.

    Dots become underscores; a unit in braces (``{call}``) adds nothing; ``s``, ``By`` and
    ``1`` become ``seconds``, ``bytes`` and ``ratio``; any other unit is appended as it is.
    """
    base = prometheus_label(name)
    suffix = {"s": "seconds", "By": "bytes", "1": "ratio"}.get(unit, unit)
    if suffix and not suffix.startswith("{") and not base.endswith("_" + suffix):
        base = f"{base}_{suffix}"
    return f"{base}_total" if counter else base


# --- The instrumentation's metrics (the app's process, every LLM call) ------------------
# Attributes of every call metric (feature only when the scope names one, error.type
# only on failed calls); never customer or conversation ids.
CALL_ATTRIBUTES: Final = (GEN_AI_OPERATION_NAME, GEN_AI_PROVIDER_NAME, GEN_AI_REQUEST_MODEL,
                          LLMCOST_FEATURE, ERROR_TYPE)
M_OPERATION_DURATION: Final = MetricDef(
    METRIC_OPERATION_DURATION, "histogram", UNIT_SECONDS,
    "Duration of GenAI client operations.", CALL_ATTRIBUTES, DURATION_BUCKETS)
M_TOKEN_USAGE: Final = MetricDef(
    METRIC_TOKEN_USAGE, "histogram", UNIT_TOKEN,
    "Input and output tokens per GenAI call (input includes cached).",
    CALL_ATTRIBUTES + (GEN_AI_TOKEN_TYPE,), TOKEN_BUCKETS)
M_COST: Final = MetricDef(
    METRIC_COST, "counter", UNIT_USD, "LLM spend, partitioned by cost component.",
    CALL_ATTRIBUTES + (LLMCOST_COST_COMPONENT,))
M_REQUEST_COST: Final = MetricDef(
    METRIC_REQUEST_COST, "histogram", UNIT_USD, "Cost of one priced LLM call.",
    CALL_ATTRIBUTES, COST_BUCKETS)
M_TOKENS: Final = MetricDef(
    METRIC_TOKENS, "counter", UNIT_TOKEN,
    "Tokens, partitioned by kind so that sums never double count.",
    CALL_ATTRIBUTES + (LLMCOST_TOKEN_KIND,))
M_CACHE_SAVINGS: Final = MetricDef(
    METRIC_CACHE_SAVINGS, "counter", UNIT_USD,
    "Net cache effect per call: saving minus premium is what caching saved.",
    CALL_ATTRIBUTES + (LLMCOST_CACHE_EFFECT,))
M_UNPRICED_CALLS: Final = MetricDef(
    METRIC_UNPRICED_CALLS, "counter", UNIT_CALL,
    "Calls whose model has no known price (their cost is not in llmcost.cost).",
    CALL_ATTRIBUTES)
INSTRUMENTATION_METRICS: Final = (M_OPERATION_DURATION, M_TOKEN_USAGE, M_COST, M_REQUEST_COST,
                                  M_TOKENS, M_CACHE_SAVINGS, M_UNPRICED_CALLS)

# The sampling stage's self-metrics (the app's process): the observability tax.
M_TELEMETRY_SPANS_SEEN: Final = MetricDef(
    METRIC_TELEMETRY_SPANS_SEEN, "counter", UNIT_SPAN,
    "Spans ended or dropped at start (exported + dropped + waiting to be decided).")
M_TELEMETRY_SPANS_EXPORTED: Final = MetricDef(
    METRIC_TELEMETRY_SPANS_EXPORTED, "counter", UNIT_SPAN,
    "Spans handed to the exporters, by the sampling rule that kept them.",
    (LLMCOST_SAMPLING_RULE,))
M_TELEMETRY_SPANS_DROPPED: Final = MetricDef(
    METRIC_TELEMETRY_SPANS_DROPPED, "counter", UNIT_SPAN, "Spans not exported, by reason.",
    (LLMCOST_SAMPLING_DROP_REASON,))
M_TELEMETRY_BYTES: Final = MetricDef(
    METRIC_TELEMETRY_BYTES, "counter", UNIT_BYTES,
    "Estimated OTLP/protobuf bytes of the exported spans.")
M_TELEMETRY_COST: Final = MetricDef(
    METRIC_TELEMETRY_COST, "counter", UNIT_USD,
    "What the exported telemetry costs at the configured backend prices.")
M_SAMPLING_OVERFLOWS: Final = MetricDef(
    METRIC_SAMPLING_OVERFLOWS, "counter", UNIT_TRACE,
    "Traces decided before they ended because the tail buffer was full.")
M_SAMPLING_TIMEOUTS: Final = MetricDef(
    METRIC_SAMPLING_TIMEOUTS, "counter", UNIT_TRACE,
    "Traces decided by timeout because their spans never all ended.")
M_SAMPLING_BUFFERED_SPANS: Final = MetricDef(
    METRIC_SAMPLING_BUFFERED_SPANS, "gauge", UNIT_SPAN,
    "Ended spans waiting for their trace's tail decision.")
M_SAMPLING_TOP_THRESHOLD: Final = MetricDef(
    METRIC_SAMPLING_TOP_THRESHOLD, "gauge", UNIT_USD,
    "The learned cost threshold of LLMCOST_KEEP_TOP_PERCENT.")
TELEMETRY_METRICS: Final = (M_TELEMETRY_SPANS_SEEN, M_TELEMETRY_SPANS_EXPORTED,
                            M_TELEMETRY_SPANS_DROPPED, M_TELEMETRY_BYTES, M_TELEMETRY_COST,
                            M_SAMPLING_OVERFLOWS, M_SAMPLING_TIMEOUTS,
                            M_SAMPLING_BUFFERED_SPANS, M_SAMPLING_TOP_THRESHOLD)

# Labels of processor metrics.
LLMCOST_TURN_BUCKET: Final = "llmcost.turn.bucket"  # turn index bucket
TURN_BUCKETS: Final = ((1, "1"), (2, "2"), (4, "3-4"), (8, "5-8"), (16, "9-16"),
                       (None, "17+"))  # (last index in the bucket, label)
LLMCOST_WINDOW: Final = "llmcost.window"  # "1h", "1d" or "1mo"
# Customer spend windows (UTC): label and length in seconds (None: the calendar month).
WINDOWS: Final = (("1h", 3600), ("1d", 86400), ("1mo", None))
LLMCOST_TOP_PERCENT: Final = "llmcost.top_percent"
SPEND_SHARE_PERCENTS: Final = (0.1, 1.0, 5.0, 10.0, 20.0, 50.0)
LLMCOST_HOUR_OF_DAY: Final = "llmcost.hour_of_day"  # UTC, "00" … "23"
LLMCOST_RUNAWAY_REASON: Final = "llmcost.runaway.reason"
RUNAWAY_LLM_CALLS: Final = "llm_calls"
RUNAWAY_COST: Final = "cost"
RUNAWAY_REASONS: Final = (RUNAWAY_LLM_CALLS, RUNAWAY_COST)
CUSTOMER_OTHER: Final = "__other__"  # everyone outside the top K, so the sum stays exact
CUSTOMER_UNATTRIBUTED: Final = "__unattributed__"  # spend of calls with no customer id
UNIT_TURN: Final = "{turn}"
UNIT_CUSTOMER: Final = "{customer}"
UNIT_RATIO: Final = "1"

# Entity totals can pass $100: buckets 1-2-5 per decade up to $10,000.
ROLLUP_COST_BUCKETS: Final = COST_BUCKETS[:-1] + tuple(
    float(f"{m}e{e}") for e in range(2, 4) for m in (1, 2, 5)) + (10000.0,)
COUNT_BUCKETS: Final = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 25, 32, 40, 50, 64, 100, 128,
                        256, 512, 1024)

M_CONVERSATION_COST: Final = MetricDef(
    "llmcost.conversation.cost", "histogram", UNIT_USD,
    "Total cost of a conversation, observed when it closes (idle timeout).",
    buckets=ROLLUP_COST_BUCKETS)
M_CONVERSATION_TURNS: Final = MetricDef(
    "llmcost.conversation.turns", "histogram", UNIT_TURN,
    "Turns (agent traces) of a conversation, observed when it closes.",
    buckets=COUNT_BUCKETS)
M_TURN_COST: Final = MetricDef(
    "llmcost.turn.cost", "histogram", UNIT_USD,
    "Cost of one turn, by the turn's index in its conversation (bucketed).",
    (LLMCOST_TURN_BUCKET,), ROLLUP_COST_BUCKETS)
M_TURN_INPUT_TOKENS: Final = MetricDef(
    "llmcost.turn.input_tokens", "histogram", UNIT_TOKEN,
    "Input tokens of a turn's first LLM call (the context it carries), by turn index.",
    (LLMCOST_TURN_BUCKET,), TOKEN_BUCKETS)
M_TRACE_COST: Final = MetricDef(
    "llmcost.trace.cost", "histogram", UNIT_USD,
    "LLM cost of one agent trace, observed when it closes.", buckets=ROLLUP_COST_BUCKETS)
M_TRACE_LLM_CALLS: Final = MetricDef(
    "llmcost.trace.llm_calls", "histogram", UNIT_CALL, "LLM calls in one agent trace.",
    buckets=COUNT_BUCKETS)
M_TRACE_TOOL_CALLS: Final = MetricDef(
    "llmcost.trace.tool_calls", "histogram", UNIT_CALL,
    "Tool calls (execute_tool spans) in one agent trace.", buckets=COUNT_BUCKETS)
M_TRACE_RETRIES: Final = MetricDef(
    "llmcost.trace.retries", "counter", UNIT_CALL,
    "SDK-internal retries of LLM calls, summed over closed traces.")
M_TRACE_DURATION: Final = MetricDef(
    "llmcost.trace.duration", "histogram", UNIT_SECONDS,
    "First span start to last span end of one agent trace.", buckets=DURATION_BUCKETS)
M_TRACE_DEPTH: Final = MetricDef(
    "llmcost.trace.depth", "histogram", "{span}", "Nesting depth of one agent trace.",
    buckets=COUNT_BUCKETS)
# Output tokens ÷ max_tokens: fine steps near 1, where answers get cut short.
RATIO_BUCKETS: Final = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95,
                        0.99, 1.0)
M_OUTPUT_MAX_TOKENS_RATIO: Final = MetricDef(
    "llmcost.output.max_tokens_ratio", "histogram", UNIT_RATIO,
    "Output tokens of an LLM call divided by its gen_ai.request.max_tokens (calls that set "
    "one and did not fail): near 1 answers are cut short; far below 1, max_tokens reserves "
    "budget that is never used.", buckets=RATIO_BUCKETS)
M_TRACE_RUNAWAY: Final = MetricDef(
    "llmcost.trace.runaway", "counter", UNIT_TRACE,
    "Agent traces past the runaway limits (LLM calls or cost); exemplars carry trace ids.",
    (LLMCOST_RUNAWAY_REASON,))
M_CUSTOMER_WINDOW_COST: Final = MetricDef(
    "llmcost.customer.window_cost", "histogram", UNIT_USD,
    "One customer's spend in one closed window (hourly or daily).",
    (LLMCOST_WINDOW,), ROLLUP_COST_BUCKETS)
M_CUSTOMER_SPEND_SHARE: Final = MetricDef(
    "llmcost.customer.spend_share", "gauge", UNIT_RATIO,
    "Share of the current window's spend by its top N % of customers (a Lorenz curve).",
    (LLMCOST_WINDOW, LLMCOST_TOP_PERCENT))
M_CUSTOMER_TOP_COST: Final = MetricDef(
    "llmcost.customer.top_cost", "gauge", UNIT_USD,
    "Spend so far in the current window of the top K customers, __other__ (everyone "
    "else) and __unattributed__; the series add up to the window's total.",
    (LLMCOST_WINDOW, LLMCOST_CUSTOMER_ID))
M_CUSTOMER_ACTIVE: Final = MetricDef(
    "llmcost.customer.active", "gauge", UNIT_CUSTOMER,
    "Distinct customers with spend in the current window.", (LLMCOST_WINDOW,))
M_CUSTOMER_COST_PER_ACTIVE: Final = MetricDef(
    "llmcost.customer.cost_per_active", "gauge", UNIT_USD,
    "Spend per active customer in the last closed hour with this UTC hour of day.",
    (LLMCOST_HOUR_OF_DAY,))
# Self-metrics of the processor.
LLMCOST_ENTITY: Final = "llmcost.entity"  # "trace", "conversation" or "customer"
ENTITIES: Final = ("trace", "conversation", "customer")
M_PROCESSOR_OPEN: Final = MetricDef(
    "llmcost.processor.open", "gauge", "{entity}",
    "Open agent traces, conversations and current-window customers held in state.",
    (LLMCOST_ENTITY,))
M_PROCESSOR_EVICTIONS: Final = MetricDef(
    "llmcost.processor.evictions", "counter", "{entity}",
    "Entities closed early because their cap was reached (what they had was emitted).",
    (LLMCOST_ENTITY,))
M_PROCESSOR_LATE_SPANS: Final = MetricDef(
    "llmcost.processor.late_spans", "counter", UNIT_SPAN,
    "Spans that came after their trace closed (entity trace: left out of its "
    "distributions) or their customer window closed (entity customer: their spend went "
    "to the newest window).", (LLMCOST_ENTITY,))
# Anomalies: spend rising faster than its baseline (global total, one customer), and
# agent traces past the runaway limits while still open.
LLMCOST_ANOMALY_KIND: Final = "llmcost.anomaly.kind"
ANOMALY_GLOBAL: Final = "global_spend"
ANOMALY_CUSTOMER: Final = "customer_spend"
ANOMALY_RUNAWAY_TRACE: Final = "runaway_trace"
ANOMALY_KINDS: Final = (ANOMALY_GLOBAL, ANOMALY_CUSTOMER, ANOMALY_RUNAWAY_TRACE)
LLMCOST_ANOMALY_SEVERITY: Final = "llmcost.anomaly.severity"
SEVERITY_WARNING: Final = "warning"
SEVERITY_CRITICAL: Final = "critical"  # 3× past its threshold; a runaway trace always
ANOMALY_SEVERITIES: Final = (SEVERITY_WARNING, SEVERITY_CRITICAL)
# The processor's OTLP log record of an anomaly that started or cleared: event name, and
# attributes beside kind, severity and llmcost.customer.id.
ANOMALY_EVENT: Final = "llmcost.anomaly"
LLMCOST_ANOMALY_STATE: Final = "llmcost.anomaly.state"
ANOMALY_STARTED: Final = "started"
ANOMALY_CLEARED: Final = "cleared"
LLMCOST_ANOMALY_TRACE_IDS: Final = "llmcost.anomaly.trace_ids"  # hex, costliest first
LLMCOST_ANOMALY_RATE: Final = "llmcost.anomaly.rate_usd_per_hour"  # spend kinds
LLMCOST_ANOMALY_BASELINE: Final = "llmcost.anomaly.baseline_usd_per_hour"
LLMCOST_ANOMALY_COST: Final = "llmcost.anomaly.trace_cost_usd"  # runaway traces
LLMCOST_ANOMALY_LLM_CALLS: Final = "llmcost.anomaly.trace_llm_calls"
M_ANOMALY: Final = MetricDef(
    "llmcost.anomaly", "gauge", "{anomaly}",
    "1 for each anomaly in progress (customer: the customer's id; the global total and "
    "traces without a customer: empty).",
    (LLMCOST_ANOMALY_KIND, LLMCOST_ANOMALY_SEVERITY, LLMCOST_CUSTOMER_ID))
M_ANOMALY_DETECTED: Final = MetricDef(
    "llmcost.anomaly.detected", "counter", "{anomaly}", "Anomalies started.",
    (LLMCOST_ANOMALY_KIND, LLMCOST_ANOMALY_SEVERITY))
LLMCOST_TRANSPORT: Final = "llmcost.transport"  # "http" or "grpc"
TRANSPORTS: Final = ("http", "grpc")
LLMCOST_REQUEST_OUTCOME: Final = "llmcost.request.outcome"
REQUEST_OUTCOMES: Final = ("accepted", "partial", "invalid", "too_large", "unauthenticated",
                           "throttled", "error")
UNIT_REQUEST: Final = "{request}"
M_PROCESSOR_RECEIVED_SPANS: Final = MetricDef(
    "llmcost.processor.received_spans", "counter", UNIT_SPAN,
    "Spans accepted by a receiver and queued for the engine.", (LLMCOST_TRANSPORT,))
M_PROCESSOR_REJECTED_SPANS: Final = MetricDef(
    "llmcost.processor.rejected_spans", "counter", UNIT_SPAN,
    "Spans refused by the decoder (bad ids, costs or weights): OTLP partial success.",
    (LLMCOST_TRANSPORT,))
M_PROCESSOR_REQUESTS: Final = MetricDef(
    "llmcost.processor.requests", "counter", UNIT_REQUEST, "Export requests, by outcome.",
    (LLMCOST_TRANSPORT, LLMCOST_REQUEST_OUTCOME))
M_PROCESSOR_QUEUE: Final = MetricDef(
    "llmcost.processor.queue", "gauge", UNIT_REQUEST,
    "Requests waiting for the engine (when full, clients are told to retry later).")
M_PROCESSOR_STATE_BYTES: Final = MetricDef(
    "llmcost.processor.state", "gauge", UNIT_BYTES,
    "Bytes the last checkpoint wrote (what changed since the one before, the open traces "
    "and the metrics).")
M_PROCESSOR_BUSY: Final = MetricDef(
    "llmcost.processor.busy", "counter", UNIT_SECONDS,
    "Time the engine thread spent rolling up: rate() of it is the engine's CPU share.")
M_PROCESSOR_CHECKPOINT: Final = MetricDef(
    "llmcost.processor.checkpoint", "counter", UNIT_SECONDS,
    "Time the engine thread spent writing checkpoints (the state's encoding under the "
    "engine lock, then the SQLite write): the price of durability.")
M_PROCESSOR_CHECKPOINT_TIME: Final = MetricDef(
    "llmcost.processor.checkpoint.time", "gauge", UNIT_SECONDS,
    "Unix time of the last checkpoint. With a state file, the rollups on the endpoint are "
    "the engine as of then (absent: none yet).")
LLMCOST_FORWARD_DROP_REASON: Final = "llmcost.forward.drop_reason"
FORWARD_DROP_REASONS: Final = ("queue_full", "retries_exhausted", "rejected", "shutdown")
M_PROCESSOR_FORWARDED: Final = MetricDef(
    "llmcost.processor.forwarded", "counter", UNIT_REQUEST,
    "OTLP trace export requests forwarded, unchanged, to the next hop.")
M_PROCESSOR_FORWARD_DROPPED: Final = MetricDef(
    "llmcost.processor.forward.dropped", "counter", UNIT_REQUEST,
    "Export requests not forwarded: queue_full, retries_exhausted, rejected (not "
    "retryable) or shutdown (still queued when the processor stopped).",
    (LLMCOST_FORWARD_DROP_REASON,))
M_PROCESSOR_FORWARD_RETRIES: Final = MetricDef(
    "llmcost.processor.forward.retries", "counter", "{attempt}",
    "Forwarding attempts retried because the next hop was unavailable or throttling.")
M_PROCESSOR_FORWARD_QUEUED: Final = MetricDef(
    "llmcost.processor.forward.queued", "gauge", UNIT_REQUEST,
    "Export requests waiting to be forwarded (the queue is bounded).")

# --- Budgets (the app's process): reservations before calls, actual cost after ----------
LLMCOST_BUDGET_NAME: Final = "llmcost.budget.name"
LLMCOST_BUDGET_ENFORCED: Final = "llmcost.budget.enforced"  # "true": refused; "false": recorded
LLMCOST_BUDGET_LIMIT: Final = "llmcost.budget.limit"  # which limit: soft or hard
BUDGET_LIMITS: Final = ("soft", "hard")
LLMCOST_BUDGET_THRESHOLD: Final = "llmcost.budget.threshold"  # of the soft limit: 0.8 or 1
BUDGET_THRESHOLDS: Final = (0.8, 1.0)
LLMCOST_BUDGET_UNACCOUNTED_REASON: Final = "llmcost.budget.unaccounted_reason"
UNACCOUNTED_STORE: Final = "store_unavailable"  # the store failed and the budget fails open
UNACCOUNTED_UNPRICED: Final = "unpriced"  # the model has no price: nothing to reserve
UNACCOUNTED_REASONS: Final = (UNACCOUNTED_STORE, UNACCOUNTED_UNPRICED)
# Per-customer budgets label their gauges with the customer id, for the top K only.
BUDGET_ATTRIBUTES: Final = (LLMCOST_BUDGET_NAME, LLMCOST_CUSTOMER_ID)
M_BUDGET_SPENT: Final = MetricDef(
    "llmcost.budget.spent", "gauge", UNIT_USD,
    "Actual spend of the budget's current period (per-customer budgets: the top K).",
    BUDGET_ATTRIBUTES)
M_BUDGET_RESERVED: Final = MetricDef(
    "llmcost.budget.reserved", "gauge", UNIT_USD,
    "Worst-case cost reserved by calls in flight, not yet replaced by their actual cost.",
    BUDGET_ATTRIBUTES)
M_BUDGET_LIMIT: Final = MetricDef(
    "llmcost.budget.limit", "gauge", UNIT_USD, "A budget's soft and hard limit per period.",
    (LLMCOST_BUDGET_NAME, LLMCOST_BUDGET_LIMIT))
M_BUDGET_REFUSED: Final = MetricDef(
    "llmcost.budget.refused", "counter", UNIT_CALL,
    "Calls whose worst case would cross a hard limit: refused, or only recorded when the "
    "budget is not enforced.", (LLMCOST_BUDGET_NAME, LLMCOST_BUDGET_ENFORCED))
M_BUDGET_NOTIFICATIONS: Final = MetricDef(
    "llmcost.budget.notifications", "counter", "{notification}",
    "Soft-limit thresholds crossed (each once per budget, subject and period).",
    (LLMCOST_BUDGET_NAME, LLMCOST_BUDGET_THRESHOLD))
M_BUDGET_UNACCOUNTED: Final = MetricDef(
    "llmcost.budget.unaccounted", "counter", UNIT_CALL,
    "Calls allowed without a reservation (store unavailable and failing open, or unpriced).",
    (LLMCOST_BUDGET_UNACCOUNTED_REASON,))
BUDGET_METRICS: Final = (M_BUDGET_SPENT, M_BUDGET_RESERVED, M_BUDGET_LIMIT, M_BUDGET_REFUSED,
                         M_BUDGET_NOTIFICATIONS, M_BUDGET_UNACCOUNTED)

ROLLUP_METRICS: Final = (
    M_CONVERSATION_COST, M_CONVERSATION_TURNS, M_TURN_COST, M_TURN_INPUT_TOKENS,
    M_TRACE_COST, M_TRACE_LLM_CALLS, M_TRACE_TOOL_CALLS, M_TRACE_RETRIES, M_TRACE_DURATION,
    M_TRACE_DEPTH, M_TRACE_RUNAWAY, M_OUTPUT_MAX_TOKENS_RATIO, M_CUSTOMER_WINDOW_COST,
    M_CUSTOMER_SPEND_SHARE, M_CUSTOMER_TOP_COST, M_CUSTOMER_ACTIVE, M_CUSTOMER_COST_PER_ACTIVE,
    M_PROCESSOR_OPEN, M_PROCESSOR_EVICTIONS, M_PROCESSOR_LATE_SPANS, M_ANOMALY,
    M_ANOMALY_DETECTED)
# The service's own metrics (receivers, queue, checkpoints, forwarding).
SERVICE_METRICS: Final = (
    M_PROCESSOR_RECEIVED_SPANS, M_PROCESSOR_REJECTED_SPANS, M_PROCESSOR_REQUESTS,
    M_PROCESSOR_QUEUE, M_PROCESSOR_STATE_BYTES, M_PROCESSOR_BUSY, M_PROCESSOR_CHECKPOINT,
    M_PROCESSOR_CHECKPOINT_TIME, M_PROCESSOR_FORWARDED, M_PROCESSOR_FORWARD_DROPPED, M_PROCESSOR_FORWARD_RETRIES,
    M_PROCESSOR_FORWARD_QUEUED)

# --- Environment variables ---------------------------------------------------------
ENV_PRICES_FILE: Final = "LLMCOST_PRICES_FILE"
ENV_STREAM_USAGE: Final = "LLMCOST_STREAM_USAGE"
ENV_SAMPLE_RATE: Final = "LLMCOST_SAMPLE_RATE"
ENV_KEEP_COST_USD: Final = "LLMCOST_KEEP_COST_USD"
ENV_KEEP_TOP_PERCENT: Final = "LLMCOST_KEEP_TOP_PERCENT"
ENV_KEEP_ERRORS: Final = "LLMCOST_KEEP_ERRORS"
ENV_KEEP_SLOW_MS: Final = "LLMCOST_KEEP_SLOW_MS"
ENV_KEEP_MAX_PER_SECOND: Final = "LLMCOST_KEEP_MAX_PER_SECOND"
ENV_TAIL_BUFFER_SPANS: Final = "LLMCOST_TAIL_BUFFER_SPANS"
ENV_TAIL_TIMEOUT_S: Final = "LLMCOST_TAIL_TIMEOUT_S"
ENV_CAPTURE_CONTENT: Final = "LLMCOST_CAPTURE_CONTENT"
ENV_CONTENT_MAX_CHARS: Final = "LLMCOST_CONTENT_MAX_CHARS"
ENV_OTEL_CAPTURE_CONTENT: Final = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
ENV_TELEMETRY_USD_PER_GB: Final = "LLMCOST_TELEMETRY_USD_PER_GB"
ENV_TELEMETRY_USD_PER_MILLION_SPANS: Final = "LLMCOST_TELEMETRY_USD_PER_MILLION_SPANS"
ENV_BUDGETS_FILE: Final = "LLMCOST_BUDGETS_FILE"  # YAML: budgets and their store

# The processor: every setting is LLMCOST_PROCESSOR_<NAME> (NAME = a field of
# processor.settings.Settings or processor.engine.Config, upper-cased), or <name> in the
# YAML file that LLMCOST_PROCESSOR_CONFIG names; the variable wins over the file.
ENV_PROCESSOR_PREFIX: Final = "LLMCOST_PROCESSOR_"
ENV_PROCESSOR_CONFIG: Final = "LLMCOST_PROCESSOR_CONFIG"
PROCESSOR_COMMAND: Final = "otel-llmcost-processor"

# --- Entry points ------------------------------------------------------------------
ENTRY_POINT_GROUP_INSTRUMENTOR: Final = "opentelemetry_instrumentor"
ENTRY_POINT_OPENAI: Final = "llmcost_openai"
ENTRY_POINT_ANTHROPIC: Final = "llmcost_anthropic"
ENTRY_POINT_SAMPLER: Final = "llmcost"
ENTRY_POINT_GROUP_POST_INSTRUMENT: Final = "opentelemetry_post_instrument"
ENTRY_POINT_TAIL: Final = "llmcost_tail"

INSTRUMENTATION_SCOPE: Final = "otel_llmcost"
