"""The downstream half of a two-service trace, run under ``opentelemetry-instrument``.

Why: a tail rule sees only its own process's part of a trace, while the head decision
must agree across services. This HTTP service continues the caller's trace from the W3C
headers (``opentelemetry.propagate.extract``), makes one real ``openai`` SDK call to the
stand-in provider (``WORKLOAD_PROVIDER_URL``) and answers 500 when that call fails, so
the tests can check what each side exports. It prints ``LISTENING <port>`` once serving,
stops on ``POST /quit`` (so that the exporters flush as at any normal exit) and then
writes its ground truth (``WORKLOAD_TRUTH``): per handled trace, its id, kind and the
number of spans started here.
"""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import openai
from opentelemetry import metrics, propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_llmcost.demo.provider import Scenario

tracer = trace.get_tracer("tail_service")
client = openai.OpenAI(base_url=os.environ["WORKLOAD_PROVIDER_URL"] + "/v1", api_key="test",
                       max_retries=0, timeout=60)
SCENARIOS = {
    "cheap": ("gpt-4o-mini", Scenario(input_tokens=300, output_tokens=40)),
    "expensive": ("gpt-4o", Scenario(input_tokens=200_000, output_tokens=1000)),  # $0.51
    "failing": ("gpt-4o-mini", Scenario(error_status=500)),
}
handled: list[dict[str, Any]] = []


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        if self.path == "/quit":
            self._answer(200)
            threading.Thread(target=self.server.shutdown).start()
            return
        kind = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["kind"]
        carrier = {name.lower(): value for name, value in self.headers.items()}
        status = 200
        with tracer.start_as_current_span("backend.handle", context=propagate.extract(carrier),
                                          kind=SpanKind.SERVER) as span:
            model, scenario = SCENARIOS[kind]
            try:
                client.chat.completions.create(
                    model=model, extra_headers=scenario.headers(),
                    messages=[{"role": "user", "content": f"backend work: {kind}"}])
            except openai.APIStatusError:
                status = 500
                span.set_status(Status(StatusCode.ERROR, "the LLM call failed"))
            trace_id = format(span.get_span_context().trace_id, "032x")
        handled.append({"trace_id": trace_id, "kind": kind, "spans": 2})  # ours + the LLM's
        self._answer(status)

    def _answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    server = HTTPServer(("127.0.0.1", 0), Handler)
    print(f"LISTENING {server.server_address[1]}", flush=True)
    server.serve_forever(poll_interval=0.05)
    server.server_close()
    trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]
    metrics.get_meter_provider().force_flush()  # type: ignore[attr-defined]
    with open(os.environ["WORKLOAD_TRUTH"], "w", encoding="utf-8") as out:
        json.dump(handled, out)


if __name__ == "__main__":
    main()
