"""``otel-llmcost``: the project's command line (``otel-llmcost demo``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

_USAGE = """usage: otel-llmcost demo [options]

  demo    a simulated day of LLM traffic through the whole pipeline, on this machine
          (otel-llmcost demo --help for its options)
"""


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_USAGE, end="")
        return
    if args[0] == "demo":
        from otel_llmcost.demo.run import main_demo
        main_demo(args[1:])
        return
    raise SystemExit(f"otel-llmcost: unknown command {args[0]!r}\n{_USAGE}")
