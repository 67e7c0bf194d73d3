#!/usr/bin/env bash
# Sets up everything and runs the whole test suite, on a fresh machine or a dev box.
# The suite runs twice: against the current SDK majors and against the previous ones.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"

# Debian packages the tests use: a real Prometheus (and promtool) scraping the processor
# and the demo, openssl for the receivers' TLS certificates, chromium to render the demo's
# HTML report, redis-server for the budgets' Redis store. The tests fail without them, so
# they are installed here.
missing=()
command -v prometheus >/dev/null || missing+=(prometheus)
command -v openssl >/dev/null || missing+=(openssl)
command -v chromium >/dev/null || missing+=(chromium)
command -v redis-server >/dev/null || missing+=(redis-server)
if [ "${#missing[@]}" -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

status=0
for sdk in current legacy; do
    venv=".venv/test-$sdk"
    if [ ! -x "$venv/bin/python" ]; then
        "$PYTHON" -m venv "$venv"
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        -r "tests/requirements/$sdk.txt" -e ".[demo]"
    echo "== tests with $(grep -E '^(openai|anthropic)==' "tests/requirements/$sdk.txt" | paste -sd' ')"
    "$venv/bin/python" -m pytest tests -q -p no:cacheprovider "$@" || status=$?
done
exit "$status"
