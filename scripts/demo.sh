#!/usr/bin/env bash
# Sets up everything and runs the main job: an example app making real openai/anthropic
# SDK calls to a local stand-in provider under `opentelemetry-instrument`, printing the
# spans (with cost) and metrics, then a table of what each call cost.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
venv=".venv/demo"
if [ ! -x "$venv/bin/python" ]; then
    "$PYTHON" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[openai,anthropic]'
# anthropic 2.x also traces its own calls (a second span per call, without cost); the demo
# keeps only ours. Leave it unset in your app to see the warning that explains this.
export ANTHROPIC_OPEN_TELEMETRY=false
exec "$venv/bin/opentelemetry-instrument" --traces_exporter console --metrics_exporter console \
    --service_name llmcost-example "$venv/bin/python" -m otel_llmcost.demo.example
