#!/usr/bin/env bash
# Sets up everything and runs the main job: `otel-llmcost demo`, a simulated day of LLM
# traffic played through the real openai/anthropic SDKs under `opentelemetry-instrument`
# into the rollup processor, ending with a summary of tail cost beside the ground truth.
# Arguments go to `otel-llmcost demo` (e.g. --duration 300 for a longer day).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
venv=".venv/demo"
if [ ! -x "$venv/bin/python" ]; then
    "$PYTHON" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[demo]'
exec "$venv/bin/otel-llmcost" demo "$@"
