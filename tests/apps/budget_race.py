"""Threads racing for the last dollars of a budget, run under ``opentelemetry-instrument``.

The budgets come from ``LLMCOST_BUDGETS_FILE`` (as in production). ``RACE_THREADS``
threads wait at a barrier, then each makes real ``openai`` calls to the stand-in provider
at ``RACE_PROVIDER_URL`` as customer ``RACE_CUSTOMER``. A refused call is retried while
other calls still hold reservations (they may free room when they settle at their smaller
actual cost) and ends the thread once nothing else is in flight. Prints one JSON line:
calls granted and refused, and the refusals that ended a thread.
"""

from __future__ import annotations

import json
import os
import threading
import time

import openai

import otel_llmcost
from otel_llmcost.demo.provider import Scenario

TEXT = "Summarise the quarterly report for the board in three short bullet points."
MAX_TOKENS = 1000
SCENARIO = Scenario(input_tokens=5, output_tokens=500)  # actual cost < worst case


def main() -> None:
    threads = int(os.environ["RACE_THREADS"])
    client = openai.OpenAI(base_url=os.environ["RACE_PROVIDER_URL"] + "/v1", api_key="test",
                           max_retries=0)
    barrier = threading.Barrier(threads)
    lock = threading.Lock()
    result = {"granted": 0, "refused": 0, "final": []}

    def worker() -> None:
        barrier.wait()
        with otel_llmcost.attributes(customer_id=os.environ["RACE_CUSTOMER"]):
            while True:
                try:
                    client.chat.completions.create(
                        model="gpt-4o-mini", max_tokens=MAX_TOKENS,
                        messages=[{"role": "user", "content": TEXT}],
                        extra_headers=SCENARIO.headers())
                except otel_llmcost.BudgetExceeded as refusal:
                    with lock:
                        result["refused"] += 1
                    if refusal.reserved == 0:
                        with lock:
                            result["final"].append(
                                {"spent": refusal.spent, "requested": refusal.requested,
                                 "limit": refusal.limit})
                        return
                    time.sleep(0.001)
                else:
                    with lock:
                        result["granted"] += 1

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
