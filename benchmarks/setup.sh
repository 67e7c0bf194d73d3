#!/usr/bin/env bash
# Creates the benchmark venv (default /work/venv-bench; override with BENCH_VENV) with
# openai, both anchors and otel-llmcost (editable). Needs valgrind for the primary figure.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${BENCH_VENV:-/work/venv-bench}"
python="${PYTHON:-python3}"

"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet -r "$here/requirements.txt" -e "$here/.."
# The anchors must import; a failure here is better than a silently empty column.
"$venv/bin/python" -c "import opentelemetry.instrumentation.openai_v2, opentelemetry.instrumentation.openai"
# The primary figure needs valgrind (its Debian package also ships the headers) and a C
# compiler for the helper that switches callgrind's instrumentation from Python.
if ! command -v valgrind >/dev/null || ! command -v gcc >/dev/null; then
  apt-get update -qq && apt-get install -y -qq valgrind gcc
fi
gcc -O2 -shared -fPIC -o "$venv/lib/callgrind_toggle.so" "$here/callgrind_toggle.c"
echo "venv ready: $venv"
