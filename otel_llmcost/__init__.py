"""otel-llmcost: exact LLM cost on OpenTelemetry spans and metrics.

Public API: `attributes` (attribute calls to a customer, tier, conversation and feature),
`budgets` (spend guardrails; `BudgetExceeded` is raised when a call is refused),
`Usage`, `Cost` and `price` (the pricing layer), and the instrumentors in
`otel_llmcost.instrumentation`.
"""

from otel_llmcost.attribution import attributes
from otel_llmcost.budgets import BudgetExceeded
from otel_llmcost.pricing import Cost, price
from otel_llmcost.usage import Usage
from otel_llmcost.version import __version__

__all__ = ["BudgetExceeded", "Cost", "Usage", "__version__", "attributes", "price"]
